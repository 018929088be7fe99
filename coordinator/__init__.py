"""Orchard coordinator."""
