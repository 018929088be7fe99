"""The FAT boot partition, edited in place inside the image file.

:class:`BootFs` is what the image target needs; :class:`MtoolsFs` implements it with GNU
mtools (``mtype``/``mcopy``/``mmd``/``mdir`` on ``image@@offset``), which edits FAT12/16/32
without mounting and without root.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Protocol

from provisioning.errors import ImageError


class BootFs(Protocol):
    def read(self, path: str) -> bytes | None:
        """The file's bytes, or None when it does not exist."""
        ...

    def write(self, path: str, data: bytes) -> None:
        """Create or replace a file, creating parent directories."""
        ...

    def delete(self, path: str) -> None: ...

    def free_bytes(self) -> int:
        """Free space on the partition."""
        ...

    def size_of(self, path: str) -> int:
        """The file's size, 0 when it does not exist."""
        ...


_FREE = re.compile(r"(\d[\d ,.]*) bytes free")
_TOTAL = re.compile(r"\d+ files?\s+(\d[\d ,.]*) bytes")


class MtoolsFs:
    def __init__(self, image: Path, offset: int) -> None:
        missing = [t for t in ("mtype", "mcopy", "mmd", "mdel") if shutil.which(t) is None]
        if missing:
            raise ImageError(
                f"mtools is needed to edit the FAT boot partition ({', '.join(missing)} not "
                "found); install it: apt-get install mtools / brew install mtools"
            )
        self.drive = f"{image}@@{offset}"
        self.env = {**os.environ, "MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull}

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        try:
            done = subprocess.run(argv, capture_output=True, env=self.env, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ImageError(f"{argv[0]} failed: {exc}") from exc
        if check and done.returncode != 0:
            raise ImageError(
                f"{' '.join(argv[:2])} on the boot partition failed: "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return done

    def _exists(self, path: str) -> bool:
        return self._run("mdir", "-b", "-i", self.drive, f"::{path}", check=False).returncode == 0

    def read(self, path: str) -> bytes | None:
        if not self._exists(path):
            return None
        return self._run("mtype", "-i", self.drive, f"::{path}").stdout

    def write(self, path: str, data: bytes) -> None:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            folder = "/" + "/".join(parts[:depth])
            if not self._exists(folder):
                self._run("mmd", "-i", self.drive, f"::{folder}")
        with tempfile.TemporaryDirectory(prefix="orchard-fat-") as tmp:
            local = Path(tmp) / parts[-1]
            local.write_bytes(data)
            self._run("mcopy", "-o", "-i", self.drive, str(local), f"::{path}")

    def delete(self, path: str) -> None:
        if self._exists(path):
            self._run("mdel", "-i", self.drive, f"::{path}")

    def free_bytes(self) -> int:
        listing = self._run("mdir", "-i", self.drive, "::/").stdout.decode(errors="replace")
        found = _FREE.search(listing)
        if found is None:
            raise ImageError(f"mdir did not say how much space the boot partition has: {listing}")
        return int(re.sub(r"[ ,.]", "", found.group(1)))

    def size_of(self, path: str) -> int:
        if not self._exists(path):
            return 0
        listing = self._run("mdir", "-i", self.drive, f"::{path}").stdout.decode(errors="replace")
        found = _TOTAL.search(listing)
        return int(re.sub(r"[ ,.]", "", found.group(1))) if found else 0
