#!/usr/bin/env bash
# The board in a box (docs/board.md): a Debian Bookworm arm64 image laid out like Raspberry Pi
# OS, provisioned with `orchard-provision image` and booted in QEMU (TCG) with real systemd.
#
#   scripts/board.sh build        # only the base image (cached in ~/.cache/orchard/board)
#   scripts/board.sh              # the board tests: first boot, power cut (~see docs/board.md)
#   scripts/board.sh -k power_cut # extra arguments go to pytest
#   scripts/board.sh --train      # also the slow variant: TensorFlow on the board, one round
#
# Needs qemu-system-arm, mtools, fdisk, mosquitto; building the base image also needs root,
# mmdebstrap and qemu-user-static with binfmt_misc. Figures and console logs of each run are
# kept in ~/.cache/orchard/board/runs/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || scripts/setup.sh
export ORCHARD_BOARD=1  # the board tests skip without it (the default test run)
if [ "${1:-}" = build ] || [ "${1:-}" = info ]; then
    exec .venv/bin/python -m tests.board "$@"
fi
if [ "${1:-}" = --train ]; then
    shift
    export ORCHARD_BOARD_TRAIN=1
fi
exec .venv/bin/python -m pytest -n 0 -m board -rs tests/board "$@"
