"""The first-boot installer (``/usr/local/lib/orchard/install.sh``), POSIX sh, idempotent.

It creates the ``orchard`` user (member of ``i2c``), installs the agent into
``/opt/orchard/venv`` offline from the wheelhouse (``pip install --no-index --find-links``;
it refuses when the wheelhouse is missing or built for another Python) or, only when
provisioned with ``from_index``, from a package index; then it applies the intended ownership
and enables the units. A second run finds everything in place and only says so.
``ORCHARD_ROOT`` runs it against another root (tests, chroots).
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
SOURCE=@SOURCE@
INDEX_URL=@INDEX_URL@
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
# Offline from the wheelhouse unless provisioned with --from-index.
if [ "$SOURCE" = wheelhouse ]; then
    if ! ls "$ROOT$WHEELHOUSE"/*.whl >/dev/null 2>&1; then
        log "no wheels in $WHEELHOUSE; provision again with a wheelhouse (or --from-index)" >&2
        exit 1
    fi
    manifest="$ROOT$WHEELHOUSE/wheelhouse.json"
    if [ -f "$manifest" ] && ! "$PYTHON" - "$manifest" <<'EOF'
import json, sys
want = json.load(open(sys.argv[1]))["target"]["python"]
have = "%d.%d" % sys.version_info[:2]
if want != have:
    sys.exit("orchard-install: the wheelhouse is for Python %s; this board has %s. Build one "
             "with: orchard-provision wheelhouse --python %s" % (want, have, have))
EOF
    then
        exit 1
    fi
    want="$PACKAGE"
    for wheel in "$ROOT$WHEELHOUSE"/*.whl; do want="$want ${wheel##*/}"; done
else
    want="$PACKAGE from ${INDEX_URL:-the configured index}"
fi
have=""
if [ -f "$STAMP" ]; then have="$(cat "$STAMP")"; fi
if [ "$have" != "$want" ] || [ ! -x "$ROOT$VENV/bin/orchard-agent" ]; then
    if [ ! -x "$ROOT$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$ROOT$VENV"
        log "created $VENV"
    fi
    if [ "$SOURCE" = wheelhouse ]; then
        "$ROOT$VENV/bin/python" -m pip install --quiet --no-index \
            --find-links "$ROOT$WHEELHOUSE" --upgrade "$PACKAGE"
    else
        "$ROOT$VENV/bin/python" -m pip install --quiet ${INDEX_URL:+--index-url "$INDEX_URL"} \
            --upgrade "$PACKAGE"
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


def install_script(
    package: str, units: tuple[str, ...], *, from_index: bool = False, index_url: str | None = None
) -> bytes:
    """The installer; offline from ``paths.WHEELHOUSE`` unless ``from_index``."""
    values = {
        "@PACKAGE@": shlex.quote(package),
        "@SOURCE@": "index" if from_index else "wheelhouse",
        "@INDEX_URL@": shlex.quote(index_url or ""),
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
