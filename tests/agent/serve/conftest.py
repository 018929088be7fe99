"""Fixtures of the serving tests: exported bundles (see bundles.py)."""

from tests.agent.serve.bundles import bundles

__all__ = ["bundles"]
