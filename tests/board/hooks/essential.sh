#!/bin/sh
# mmdebstrap --essential-hook for the board-in-a-box base image (tests/board/image.py).
# $1: the root directory. @ID@ (disk id) and @HOSTNAME@ are filled in from the recipe.
set -eu
R="$1"
mkdir -p "$R/boot/firmware"
cat > "$R/etc/fstab" <<EOF
proc            /proc           proc    defaults          0       0
PARTUUID=@ID@-01  /boot/firmware  vfat    defaults          0       2
PARTUUID=@ID@-02  /               ext4    defaults,noatime  0       1
EOF
