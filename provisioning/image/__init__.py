"""Editing a Raspberry Pi OS ``.img`` offline, without root: partition table, FAT boot files."""
