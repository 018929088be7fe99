"""Agent software releases: publish a signed wheelhouse, roll it out in batches.

docs/software-update.md has the whole path; agent/software/ is the board's side.
"""
