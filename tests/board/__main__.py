"""``python -m tests.board build``: build (or find) the cached base image and say where it is.

The tests themselves run with pytest: ``scripts/board.sh`` (see docs/board.md).
"""

from __future__ import annotations

import argparse
import json
import sys

from tests.board import image


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.board")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="Build the base image unless it is cached.")
    sub.add_parser("info", help="Print the cached base image's facts (or nothing).")
    args = parser.parse_args(argv)
    recipe = image.Recipe()
    if args.command == "info":
        found = image.cached(recipe)
        print(
            json.dumps(found.facts if found else {"cached": False, "key": recipe.key()}, indent=2)
        )
        return 0
    found = image.cached(recipe)
    if found is None:
        print(
            f"building base image {recipe.key()} in {image.cache_dir()} "
            "(mmdebstrap, arm64 through qemu-user)...",
            file=sys.stderr,
        )
        try:
            found = image.ensure(recipe)
        except image.BuildError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"{found.path} (built in {found.build_seconds:.0f} s, {found.facts.get('kernel')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
