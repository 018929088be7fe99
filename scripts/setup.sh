#!/usr/bin/env bash
# Create ./.venv and install Orchard with every extra (agent, train, coordinator, test).
# Safe to re-run. Needs Python 3.11+; on Debian/Ubuntu it installs pythonX.Y-venv when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "error: Orchard needs Python >= 3.11; '$PY' is $("$PY" -V 2>&1 || echo missing)." >&2
    echo "       Set PYTHON=/path/to/python3.11 and run again." >&2
    exit 1
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x .venv/bin/python ]; then
    if ! "$PY" -m venv .venv >/dev/null 2>&1; then
        # Debian and Ubuntu ship ensurepip separately, as pythonX.Y-venv.
        ver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
        echo "python venv support missing; installing python${ver}-venv" >&2
        as_root apt-get update -qq
        as_root apt-get install -y -qq "python${ver}-venv"
        rm -rf .venv
        "$PY" -m venv .venv
    fi
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all]'
# The embedded MQTT broker. --no-deps: amqtt's metadata pins typer==0.15.4 for its own CLI
# scripts, which would break flwr's CLI; its runtime dependencies come with the coordinator extra.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps 'amqtt==0.11.4'
echo "Orchard installed in $(pwd)/.venv"
