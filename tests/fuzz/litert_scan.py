"""Offer many damaged copies of a bundle to ``Predictor.load``, each in a forked child.

    python -m tests.fuzz.litert_scan BUNDLE COUNT SEED

Each variant (truncations at 40 points, then COUNT seeded flips of 1 to 16 bits) gets a
manifest whose sha256 and size agree with it, so LiteRT itself has to judge the bytes. A child
runs under an address-space limit (a variant may ask for gigabytes) and exits with a code per
outcome; the parent prints one JSON object: ``{"outcomes": {outcome: count}, "examples":
{outcome: [variant, ...]}, "errors": {variant: message}}``. Outcomes: ``served`` (loaded and
reproduced its golden samples), ``refused`` (a ``models.errors.ModelError``), ``untyped``
(another exception: a translation gap), ``signal-N`` (LiteRT crashed the process).

A separate process because forking the pytest process, which has TensorFlow's threads, is
unsafe, and because a crash must not take the test runner with it.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import sys
import tempfile
from pathlib import Path

CHILD_ADDRESS_SPACE = 1536 << 20
CODES = {0: "served", 2: "refused", 3: "untyped"}


def variants(model: bytes, count: int, seed: int) -> list[tuple[str, bytes]]:
    out = [(f"truncated-{k}of40", model[: len(model) * k // 40]) for k in range(40)]
    rng = random.Random(seed)
    for i in range(count):
        data = bytearray(model)
        for _ in range(rng.choice((1, 1, 2, 4, 16))):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        out.append((f"flipped-{i}", bytes(data)))
    return out


def _child(bundle: Path, name: str, errors_dir: Path) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))
    from models.errors import ModelError
    from models.runtime import Predictor

    try:
        Predictor.load(bundle)
    except ModelError:
        os._exit(2)
    except Exception as exc:  # what the scan is looking for: exceptions left untranslated
        (errors_dir / name).write_text(f"{type(exc).__name__}: {exc}"[:300])
        os._exit(3)
    os._exit(0)


def scan(source: Path, count: int, seed: int) -> dict[str, object]:
    from models.manifest import MANIFEST_FILE, MODEL_FILE, sha256_file
    from models.runtime import backend

    backend()  # import LiteRT once, before forking
    manifest = json.loads((source / MANIFEST_FILE).read_text())
    outcomes: dict[str, int] = {}
    examples: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work, errors_dir = Path(tmp) / "bundle", Path(tmp) / "errors"
        errors_dir.mkdir()
        shutil.copytree(source, work)
        for name, data in variants((source / MODEL_FILE).read_bytes(), count, seed):
            (work / MODEL_FILE).write_bytes(data)
            manifest["file"]["sha256"] = sha256_file(work / MODEL_FILE)
            manifest["file"]["size_bytes"] = len(data)
            (work / MANIFEST_FILE).write_text(json.dumps(manifest))
            pid = os.fork()
            if pid == 0:
                _child(work, name, errors_dir)
            _, status = os.waitpid(pid, 0)
            if os.WIFSIGNALED(status):
                outcome = f"signal-{os.WTERMSIG(status)}"
            else:
                outcome = CODES.get(os.WEXITSTATUS(status), f"exit-{os.WEXITSTATUS(status)}")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            examples.setdefault(outcome, []).append(name)
        errors = {p.name: p.read_text() for p in errors_dir.iterdir()}
    return {"outcomes": outcomes, "examples": examples, "errors": errors}


if __name__ == "__main__":
    result = scan(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
    sys.stdout.write(json.dumps(result) + "\n")
