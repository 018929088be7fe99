"""Remote operations: signed commands from the coordinator (configuration patches)."""
