"""``python -m cocoa`` runs the ``cocoa`` command."""

from cocoa.cli import app

app(prog_name="cocoa")
