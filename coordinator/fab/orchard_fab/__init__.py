"""Orchard's Flower app entry points (thin)."""
