"""Images that a camera job drops into a folder, one reading per image.

Options:

    path        the folder to watch (required)
    height, width   size the image is resized to, each in 8..100 (default 28 x 28)
    label_from  "auto" (default: the subfolder name when the file is in one), "subdir",
                "prefix" (filename up to the first "_"), or "none"
    after       "move" (default: into ``<path>/.processed/``, keeping the subfolder) or
                "remember" (leave the file, remember it for this process's life)
    min_age_s   skip files modified less than this long ago on the clock, default 1.0
                (a camera job still writing); 0 disables the check

Each ``read()`` takes the oldest pending PNG/PGM/JPEG, reads it as grayscale, resizes it to
``height x width`` and returns the pixels flattened row by row as ``px_0 .. px_{h*w-1}`` in
[0, 1]. A file Pillow cannot read is counted as ``bad_image`` and set aside like the others,
so each file is read once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from agent.errors import SensorError
from agent.options import Options
from agent.sensors.base import Clock, DriverBase, Feature
from agent.types import Reading

logger = logging.getLogger(__name__)

EXTENSIONS = frozenset({".png", ".pgm", ".jpg", ".jpeg"})
PROCESSED_DIR = ".processed"


def load_gray(path: Path, height: int, width: int) -> np.ndarray:
    """Pixels in [0, 1] as float32 of shape (height, width); raises OSError/ValueError."""
    with Image.open(path) as img:
        img.load()
        if img.mode.startswith(("I", "F")):  # 16/32-bit grayscale PGM or PNG
            pixels = np.asarray(img, dtype=np.float32)
            peak = float(pixels.max(initial=0.0))
            scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        else:
            pixels = np.asarray(img.convert("L"), dtype=np.float32)
            scale = 255.0
    gray = Image.fromarray(pixels / scale)
    resized = gray.resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


class ImageDirDriver(DriverBase):
    """Turns each new image in a folder into one reading of flattened grayscale pixels."""

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        path: Path,
        height: int,
        width: int,
        label_from: str,
        after: str,
        min_age_s: float,
    ) -> None:
        features = [Feature(f"px_{i}", "", 0.0, 1.0) for i in range(height * width)]
        super().__init__(name, features, clock)
        self._path, self._height, self._width = path, height, width
        self._label_from, self._after, self._min_age = label_from, after, min_age_s
        self._seen: set[tuple[str, float, int]] = set()

    @classmethod
    def from_config(cls, name: str, options: Mapping[str, Any], *, clock: Clock) -> ImageDirDriver:
        opts = Options(f"sensors.{name}", options)
        path = opts.get_path("path", kind="directory")
        height = opts.get_int("height", 28, low=8, high=100)
        width = opts.get_int("width", 28, low=8, high=100)
        label_from = opts.get_str(
            "label_from", "auto", choices=("auto", "subdir", "prefix", "none")
        )
        after = opts.get_str("after", "move", choices=("move", "remember"))
        min_age_s = opts.get_float("min_age_s", 1.0, low=0.0)
        opts.done()
        return cls(
            name,
            clock=clock,
            path=path,
            height=height,
            width=width,
            label_from=label_from,
            after=after,
            min_age_s=min_age_s,
        )

    def read(self) -> list[Reading]:
        try:
            candidate = self._oldest_pending()
            if candidate is None:
                return []
            try:
                pixels = load_gray(candidate, self._height, self._width)
            except (OSError, ValueError, UnidentifiedImageError, Image.DecompressionBombError):
                logger.warning("sensor %s: cannot read image %s", self.name, candidate)
                self._reject("bad_image")
                self._set_aside(candidate)
                return []
            label = self._label(candidate)
            self._set_aside(candidate)
        except OSError as exc:
            raise SensorError(f"sensor {self.name}: folder {self._path}: {exc}") from exc
        values = {f"px_{i}": float(v) for i, v in enumerate(pixels.ravel())}
        return [self._reading(values, label=label)]

    def _oldest_pending(self) -> Path | None:
        now = self._clock()
        best: tuple[float, str, Path] | None = None
        for file in self._path.rglob("*"):
            rel = file.relative_to(self._path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if file.suffix.lower() not in EXTENSIONS or not file.is_file():
                continue
            stat = file.stat()
            if self._key(file, stat.st_mtime, stat.st_size) in self._seen:
                continue
            if self._min_age > 0 and now - stat.st_mtime < self._min_age:
                continue
            if best is None or (stat.st_mtime, str(rel)) < best[:2]:
                best = (stat.st_mtime, str(rel), file)
        return None if best is None else best[2]

    @staticmethod
    def _key(file: Path, mtime: float, size: int) -> tuple[str, float, int]:
        return (str(file), mtime, size)

    def _label(self, file: Path) -> str | None:
        rel = file.relative_to(self._path)
        if self._label_from in ("auto", "subdir") and len(rel.parts) > 1:
            return rel.parts[0]
        if self._label_from == "prefix" and "_" in file.stem:
            return file.stem.split("_", 1)[0] or None
        return None

    def _set_aside(self, file: Path) -> None:
        if self._after == "remember":
            stat = file.stat()
            self._seen.add(self._key(file, stat.st_mtime, stat.st_size))
            return
        target = self._path / PROCESSED_DIR / file.relative_to(self._path)
        target.parent.mkdir(parents=True, exist_ok=True)
        file.replace(target)
