"""The `glucotwin` command line.

Each top-level package contributes its own commands through the ``glucotwin.commands`` entry-point group
(see ``pyproject.toml``): the entry point's name is the command, its value a ``register(subparsers)``
function that adds one sub-parser and sets ``handler`` on it. Only the command asked for is imported, so
``glucotwin status`` does not pay for the BLE stack, and the hub never imports the simulator by name.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import EntryPoint, entry_points

Handler = Callable[[argparse.Namespace], int | None]


def _commands() -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group="glucotwin.commands")}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; with ``command``, load only that command's entry point."""
    commands = _commands()
    parser = argparse.ArgumentParser(
        prog="glucotwin",
        description="GlucoTwin: a digital twin of a person with type 1 diabetes.",
        epilog="Run 'glucotwin COMMAND --help' for a command's options. Commands: " + ", ".join(sorted(commands)),
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in sorted(commands):
        if command == name:
            commands[name].load()(subparsers)
        else:
            subparsers.add_parser(name, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith("-")), None)
    parser = build_parser(command)
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
