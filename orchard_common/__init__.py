"""What every Orchard process shares and no package owns: process plumbing (procs.py) and
the wording of config errors (expected.py).

Imports nothing of agent, coordinator, models or provisioning (tests/test_layers.py).
"""
