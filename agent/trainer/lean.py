"""Keep optional packages that TensorFlow and Keras pull in on import out of the trainer.

``import tensorflow`` imports matplotlib (Keras' image-gallery plot helper) and scipy
(``tf.python.keras``'s sparse-input check), both behind ``try: ... except ImportError``
fallbacks, and the trainer never plots or feeds sparse matrices. Refusing them saves ~30 MB of
RSS (~25 MB of it anonymous) and ~1.5 s of import time on the dev machine, more on a board
(``benchmarks/trainer.py --imports``). Call :func:`skip_optional` before TensorFlow is imported.
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Iterable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

OPTIONAL = ("matplotlib", "scipy")


class _Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(
                f"{fullname} is not imported in the Orchard trainer (agent/trainer/lean.py)",
                name=fullname,
            )
        return None


def skip_optional(names: Iterable[str] = OPTIONAL) -> None:
    """Make ``names`` (top-level packages) fail to import in this process; idempotent."""
    if not any(isinstance(f, _Refuse) for f in sys.meta_path):
        sys.meta_path.insert(0, _Refuse(names))
