"""What the command-line tools share: their output options and their console log."""

from __future__ import annotations

import argparse
import sys
from typing import Callable

__all__ = ["add_output_options", "console_log"]


def add_output_options(p: argparse.ArgumentParser, json_help: str = "print the summary as JSON at the end",
                       progress: bool = True) -> None:
    """``--progress S`` (with ``progress``), ``--json`` and ``--quiet``."""
    if progress:
        p.add_argument("--progress", type=float, default=5.0, metavar="S",
                       help="print a progress line every S seconds (0: never; default: 5)")
    p.add_argument("--json", action="store_true", help=json_help)
    p.add_argument("--quiet", action="store_true", help="no progress lines")


def console_log(quiet: bool) -> Callable[[str], None]:
    """``log(line)``: lines starting with "warning" go to stderr always, the others to
    stdout unless ``quiet``."""

    def log(line: str) -> None:
        if line.startswith("warning"):
            print(line, file=sys.stderr, flush=True)
        elif not quiet:
            print(line, flush=True)

    return log
