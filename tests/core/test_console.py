"""Consoles print plain lines off a terminal, so logs read by tools and tests never wrap."""

from __future__ import annotations

import io
import sys

import pytest

from cocoa.core.console import make_console


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.mark.parametrize("stderr", [False, True])
def test_a_long_line_stays_one_line_off_a_terminal(monkeypatch: pytest.MonkeyPatch, stderr: bool) -> None:
    stream = _Stream(tty=False)
    monkeypatch.setattr(sys, "stderr" if stderr else "stdout", stream)
    line = "wrote 30 embeddings in 30 shards to /tmp/" + "x" * 150 + " (this rank: 15 encoded)"
    make_console(stderr=stderr).print(line)
    assert stream.getvalue() == line + "\n"


def test_a_terminal_still_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = _Stream(tty=True)
    monkeypatch.setattr(sys, "stdout", stream)
    monkeypatch.setenv("COLUMNS", "40")
    make_console().print("word " * 30)
    assert max(len(line) for line in stream.getvalue().splitlines()) <= 40
    assert len(stream.getvalue().splitlines()) > 1
