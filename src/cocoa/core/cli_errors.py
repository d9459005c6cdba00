"""The one error handler of every ``cocoa`` command: a :class:`CocoaError` is a red line and exit 1."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer

from cocoa.core.console import make_console
from cocoa.core.errors import CocoaError

P = ParamSpec("P")
R = TypeVar("R")
console = make_console(stderr=True)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Wrap a CLI command so that errors raised on purpose end it with their message, not a traceback."""

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except CocoaError as exc:
            console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
            raise typer.Exit(1) from None

    return run
