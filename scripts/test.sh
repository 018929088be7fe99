#!/usr/bin/env bash
# Lint, type-check and run the whole test suite (slow end-to-end tests included).
# Extra arguments go to pytest, e.g. scripts/test.sh -m "not slow" -x  (-n 0: no workers)
# Two pytest-xdist workers: tests marked `fleet` (SuperLink, trainers) run one at a time on one
# of them, the rest of the suite spreads over both. ~10 min on 2 cores (~14 min serially).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest -n "${ORCHARD_TEST_WORKERS:-2}" --dist loadgroup "$@"
