"""The first-boot installer (``/usr/local/lib/orchard/install.sh``), POSIX sh, idempotent.

It creates the ``orchard`` user (member of ``i2c``), installs the agent into
``/opt/orchard/venv`` (from the wheelhouse when provisioned with one, else from the package
index), applies the intended ownership and enables the units. A second run finds everything
in place and only says so. ``ORCHARD_ROOT`` runs it against another root (tests, chroots).
"""

from __future__ import annotations

import shlex

from provisioning import paths

_TEMPLATE = r"""#!/bin/sh
# Orchard installer, written by orchard-provision. Safe to run again: it changes only what
# is missing or out of date and says what it did.
set -eu

ROOT="${ORCHARD_ROOT:-}"
PACKAGE=@PACKAGE@
VENV=@VENV@
WHEELHOUSE=@WHEELHOUSE@
STATE_DIR=@STATE_DIR@
ORCHARD_USER=@USER@
UNITS=@UNITS@
PYTHON="${ORCHARD_PYTHON:-python3}"
STAMP="$ROOT$STATE_DIR/.installed"
changed=0

log() { echo "orchard-install: $*"; }

has_user() { grep -q "^$1:" "$ROOT/etc/passwd" 2>/dev/null; }
has_group() { grep -q "^$1:" "$ROOT/etc/group" 2>/dev/null; }
in_group() {
    grep "^$1:" "$ROOT/etc/group" 2>/dev/null | cut -d: -f4 | tr ',' '\n' | grep -qx "$2"
}

# 1. The user and its groups.
if ! has_group i2c; then
    groupadd --system ${ROOT:+"--root=$ROOT"} i2c
    log "created group i2c"; changed=1
fi
if ! has_user "$ORCHARD_USER"; then
    useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
        --shell /usr/sbin/nologin --comment "Orchard agent" ${ROOT:+"--root=$ROOT"} "$ORCHARD_USER"
    log "created user $ORCHARD_USER"; changed=1
fi
if ! in_group i2c "$ORCHARD_USER"; then
    usermod --append --groups i2c ${ROOT:+"--root=$ROOT"} "$ORCHARD_USER"
    log "added $ORCHARD_USER to i2c"; changed=1
fi

# 2. The agent's virtualenv, reinstalled only when what should be installed changed.
if [ -d "$ROOT$WHEELHOUSE" ]; then
    want="$PACKAGE"
    for wheel in "$ROOT$WHEELHOUSE"/*.whl; do want="$want ${wheel##*/}"; done
else
    want="$PACKAGE"
fi
have=""
if [ -f "$STAMP" ]; then have="$(cat "$STAMP")"; fi
if [ "$have" != "$want" ] || [ ! -x "$ROOT$VENV/bin/orchard-agent" ]; then
    if [ ! -x "$ROOT$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$ROOT$VENV"
        log "created $VENV"
    fi
    if [ -d "$ROOT$WHEELHOUSE" ]; then
        "$ROOT$VENV/bin/python" -m pip install --quiet --no-index \
            --find-links "$ROOT$WHEELHOUSE" --upgrade "$PACKAGE"
    else
        "$ROOT$VENV/bin/python" -m pip install --quiet --upgrade "$PACKAGE"
    fi
    mkdir -p "$ROOT$STATE_DIR"
    printf '%s' "$want" > "$STAMP"
    log "installed $PACKAGE into $VENV"; changed=1
fi

# 3. Ownership (tmpfiles.d holds the intended owners) and the units.
if [ -z "$ROOT" ]; then
    systemd-tmpfiles --create orchard.conf
    systemctl daemon-reload
else
    systemd-tmpfiles --create --root="$ROOT" orchard.conf
fi
for unit in $UNITS; do
    if ! systemctl ${ROOT:+"--root=$ROOT"} --quiet is-enabled "$unit" 2>/dev/null; then
        systemctl ${ROOT:+"--root=$ROOT"} enable "$unit"
        log "enabled $unit"; changed=1
    fi
done

# The socket could not start at boot before the user existed; start it now (live only).
if [ -z "$ROOT" ] && ! systemctl --quiet is-active orchard-trainer.socket; then
    systemctl start --no-block orchard-trainer.socket
fi

if [ "$changed" = 0 ]; then
    log "already installed; nothing changed"
fi
"""


def install_script(package: str, units: tuple[str, ...]) -> bytes:
    values = {
        "@PACKAGE@": shlex.quote(package),
        "@VENV@": shlex.quote(paths.VENV),
        "@WHEELHOUSE@": shlex.quote(paths.WHEELHOUSE),
        "@STATE_DIR@": shlex.quote(paths.STATE_DIR),
        "@USER@": shlex.quote(paths.USER),
        "@UNITS@": shlex.quote(" ".join(units)),
    }
    text = _TEMPLATE
    for key, value in values.items():
        text = text.replace(key, value)
    return text.encode()
