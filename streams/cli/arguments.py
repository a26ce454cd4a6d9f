"""Argument types whose errors read well, and the help layout every command shares.

argparse names a failed `type` by its function name ("invalid _positive value: 'abc'")
unless the type raises ArgumentTypeError, so each type here says what it wants instead.
"""

from __future__ import annotations

import argparse
import re
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and the environment section keep their line breaks; code-style
    backticks (the docstrings' Markdown) are not shown in a terminal."""

    def format_help(self) -> str:
        return super().format_help().replace("`", "")


def whole_number(low: int, high: int | None = None) -> Any:
    """A type accepting decimal integers from `low` to `high` (None: no upper bound)."""

    def convert(text: str) -> int:
        digits = text.strip()
        bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
        if not re.fullmatch(r"-?[0-9]{1,18}", digits):
            raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {text!r}")
        number = int(digits)
        if number < low or (high is not None and number > high):
            raise argparse.ArgumentTypeError(f"expected a whole number {bound}, got {number}")
        return number

    return convert


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def path(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("expected a file path, got an empty string")
    return text


positive = whole_number(1)
port = whole_number(1, 65535)
database = path


def reference(text: str) -> str:
    """An integrator reference (`--reference`): any non-empty text."""
    if not text:
        raise argparse.ArgumentTypeError("expected a non-empty reference")
    return text
