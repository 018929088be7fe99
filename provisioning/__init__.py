"""Orchard provisioning."""
