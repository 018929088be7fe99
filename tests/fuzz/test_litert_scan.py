"""LiteRT on damaged flatbuffers whose manifest agrees with them (see litert_scan.py).

Hundreds of seeded truncations and bit flips, each loaded by ``Predictor.load`` in a forked
child under an address-space limit: none may kill the process with a signal (LiteRT verifies
the flatbuffer before it builds the interpreter). Each is refused with a ``ModelError`` or
loads and reproduces its golden samples (the flip hit something inert, such as a name).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from models.errors import ModelError
from models.runtime import Predictor
from tests.agent.serve.bundles import Bundles
from tests.fuzz import corpus

REPO = Path(__file__).resolve().parents[2]


def scan(bundle: Path, count: int, seed: int) -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.litert_scan", str(bundle), str(count), str(seed)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result: dict[str, dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
@pytest.mark.parametrize("quantization", ["float32", "int8"])
def test_litert_never_crashes_on_damaged_flatbuffers(bundles: Bundles, quantization: str) -> None:
    result = scan(bundles("mlp", "classify", quantization, "1"), count=250, seed=20260607)
    outcomes = result["outcomes"]
    crashes = {k: result["examples"][k] for k in outcomes if k.startswith(("signal", "exit"))}
    assert not crashes, crashes
    assert outcomes.get("refused", 0) > 100 and sum(outcomes.values()) == 290, outcomes
    print(f"{quantization}: {outcomes}; untyped: {result['errors']}")


@pytest.mark.parametrize("damage", [corpus.rename_input, corpus.drop_weights])
def test_every_refusal_is_a_model_error(bundles: Bundles, tmp_path: Path, damage: object) -> None:
    bundle = tmp_path / "bundle"
    shutil.copytree(bundles("mlp", "classify", "float32", "1"), bundle)
    model = bundle / "model.tflite"
    model.write_bytes(damage(model.read_bytes()))  # type: ignore[operator]
    corpus.sync(bundle)
    try:
        Predictor.load(bundle)
    except ModelError:
        return
    except Exception as exc:
        raise AssertionError(f"untyped: {type(exc).__name__}: {exc}") from exc
    raise AssertionError("the damaged model loaded")
