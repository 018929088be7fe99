"""The trainer's imports: TensorFlow and Keras without the optional packages it never uses."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from agent.trainer import lean
lean.skip_optional()
import agent.trainer.jobs  # TensorFlow, Keras, training and export
assert "tensorflow" in sys.modules and "keras" in sys.modules
print(sorted(m for m in ("matplotlib", "scipy") if m in sys.modules))
try:
    import matplotlib
except ModuleNotFoundError as exc:
    print(exc.name)
"""


def test_the_trainer_imports_tensorflow_without_matplotlib_or_scipy() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=240
    )
    assert out.stdout.split("\n")[:2] == ["[]", "matplotlib"], out.stdout
