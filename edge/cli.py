"""The `glucotwin` command line.

Each top-level package contributes its own sub-commands through the ``glucotwin.commands`` entry-point
group (see ``pyproject.toml``): an entry point is a ``register(subparsers)`` function that adds a
sub-parser and sets ``handler`` on it. The hub therefore never imports the simulator by name, and a
package that is not installed simply contributes no commands.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

Handler = Callable[[argparse.Namespace], int | None]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glucotwin",
        description="GlucoTwin: a digital twin of a person with type 1 diabetes.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for entry in sorted(entry_points(group="glucotwin.commands"), key=lambda e: e.name):
        register = entry.load()
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    try:
        result = handler(args)
    except KeyboardInterrupt:
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
