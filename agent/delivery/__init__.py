"""Desired-state model delivery: the coordinator says which model a device should serve."""
