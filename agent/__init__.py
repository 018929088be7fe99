"""Orchard agent."""
