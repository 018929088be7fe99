"""What every Orchard process shares and no package owns: process plumbing (procs.py).

Imports nothing of agent, coordinator, models or provisioning (tests/test_layers.py).
"""
