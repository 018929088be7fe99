"""Flower's floor: a numpy-only Flower app measuring what the Deployment Engine costs per round."""
