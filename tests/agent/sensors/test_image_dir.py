"""Image folder driver: real PNG/PGM files written with Pillow in a temp dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from agent.errors import ConfigError
from agent.sensors.image_dir import ImageDirDriver

from .conftest import FakeClock


def save(path: Path, pixels: np.ndarray, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    os.utime(path, (mtime, mtime))
    return path


def make(folder: Path, clock: FakeClock, **options: Any) -> ImageDirDriver:
    options = {"path": str(folder), "height": 8, "width": 10, "min_age_s": 0, **options}
    return ImageDirDriver.from_config("cam", options, clock=clock)


def test_reads_oldest_first_resized_gray_with_subdir_label(
    tmp_path: Path, clock: FakeClock
) -> None:
    gradient = np.tile(np.linspace(0, 255, 40), (32, 1))
    save(tmp_path / "cat" / "a.png", gradient, mtime=1000)
    save(tmp_path / "b.pgm", np.full((16, 16), 255), mtime=2000)
    driver = make(tmp_path, clock)
    assert len(driver.features) == 80 and driver.features[79].name == "px_79"

    [first] = driver.read()
    assert first.label == "cat" and len(first.values) == 80
    row = [first.values[f"px_{i}"] for i in range(10)]
    assert row == sorted(row) and row[0] < 0.1 and row[-1] > 0.9
    assert (tmp_path / ".processed" / "cat" / "a.png").exists()
    assert not (tmp_path / "cat" / "a.png").exists()

    [second] = driver.read()
    assert second.label is None and set(second.values.values()) == {1.0}
    assert driver.read() == []


def test_remember_mode_leaves_files_and_reads_each_once(tmp_path: Path, clock: FakeClock) -> None:
    save(tmp_path / "dog_001.png", np.zeros((8, 8)), mtime=1000)
    driver = make(tmp_path, clock, after="remember", label_from="prefix")
    [reading] = driver.read()
    assert reading.label == "dog"
    assert driver.read() == []
    assert (tmp_path / "dog_001.png").exists()


def test_rgb_is_converted_and_young_files_wait(tmp_path: Path, clock: FakeClock) -> None:
    rgb = np.zeros((12, 12, 3))
    rgb[..., 1] = 255
    save(tmp_path / "g.png", rgb, mtime=clock.now - 0.5)
    driver = make(tmp_path, clock, min_age_s=2.0)
    assert driver.read() == []
    clock.advance(2)
    [reading] = driver.read()
    assert reading.values["px_0"] == pytest.approx(0.587, abs=0.01)  # ITU-R 601 luma of green


def test_unreadable_image_is_counted_and_set_aside(tmp_path: Path, clock: FakeClock) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    os.utime(tmp_path / "broken.png", (1000, 1000))
    driver = make(tmp_path, clock)
    assert driver.read() == []
    assert driver.rejected() == {"bad_image": 1}
    assert driver.read() == []
    assert (tmp_path / ".processed" / "broken.png").exists()


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"height": 7}, "sensors.cam.height"),
        ({"width": 101}, "sensors.cam.width"),
        ({"after": "delete"}, "sensors.cam.after"),
        ({"path": "/nonexistent/dir"}, "sensors.cam.path"),
    ],
)
def test_bad_options(tmp_path: Path, clock: FakeClock, options: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        make(tmp_path, clock, **options)
    assert info.value.key == key
