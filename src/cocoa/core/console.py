"""The one way cocoa makes a rich console.

On a terminal, output wraps at the terminal's width as usual. Written to a file or a pipe
(logs, CI, a test reading stderr), a printed line stays one line: rich's 80-column default
would otherwise break lines at a point that moves with the lengths of the paths they name.
"""

from __future__ import annotations

import sys

from rich.console import Console


def make_console(*, stderr: bool = False, width: int | None = None) -> Console:
    """A rich console on stdout (or stderr) that wraps only on a terminal.

    Args:
        stderr: write to standard error instead of standard output.
        width: a fixed width for tables; ``None`` takes the terminal's (80 off a terminal).

    Returns:
        A :class:`rich.console.Console` with ``soft_wrap`` on unless the stream is a terminal.
    """
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=width, soft_wrap=not stream.isatty())
