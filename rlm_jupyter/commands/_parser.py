"""One argument parser class for every subcommand of both front ends.

argparse prints a usage block and exits on a mistake; a notebook cell must instead fail with one
line, and ``rlm`` should print one line too. :class:`CommandParser` turns every parse error into
a :class:`~rlm_jupyter.errors.CommandError` whose message ends with the usage, and ``-h`` into
:class:`HelpShown` (the help was printed; nothing else to do).
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from rlm_jupyter.commands import messages
from rlm_jupyter.errors import CommandError


class HelpShown(Exception):
    """``-h``/``--help`` printed the help: the front end stops there, successfully."""


class CommandParser(argparse.ArgumentParser):
    """``ArgumentParser`` whose errors are one-line :class:`CommandError`s."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exit_on_error", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            message = messages.UNEXPECTED.format(words=message[len(prefix):])
        usage = " ".join(self.format_usage().split()).removeprefix("usage: ")
        raise CommandError(f"{message.rstrip('.')}. Usage: `{usage}`.")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status == 0:
            raise HelpShown()
        self.error(message or "invalid arguments")

    def parse_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        try:
            return super().parse_args(args, namespace)
        except argparse.ArgumentError as exc:  # exit_on_error=False raises some directly
            self.error(str(exc))


def count(text: str) -> int:
    """``-n N``: a non-negative integer, with the one-line message both front ends show."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(messages.BAD_COUNT.format(text=text)) from None
    if value < 0:
        raise argparse.ArgumentTypeError(messages.BAD_COUNT.format(text=text))
    return value
