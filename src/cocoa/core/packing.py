"""The packed-rows setting ``pack_tokens``: its one check, its recipe type and its command-line form.

``pack_tokens`` is the most tokens a packed row holds (:class:`cocoa.model.packing.Packing` lays
batches out with it); ``None`` pads every sequence to its batch's longest. Light (no torch), so
recipes and the command line check it before any model loads.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from cocoa.core.errors import ConfigError


def check_pack_tokens(value: int | None) -> int | None:
    """``value`` when it is a packed row length (2 or more) or ``None`` (pad); else a :class:`ConfigError`.

    The one check of the setting, wherever it comes from (recipe, pipeline, command line, Python).
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 2):
        raise ConfigError(f"pack_tokens must be at least 2 tokens a row, or null to pad; got {value!r}")
    return value


#: ``pack_tokens`` in a recipe or pipeline section: ``null`` pads, N >= 2 packs.
PackTokens = Annotated[int | None, AfterValidator(check_pack_tokens)]


def pack_tokens_option(value: int | None) -> int | None:
    """``--pack-tokens N`` of every command, which cannot spell ``None``: 0 pads, N >= 2 packs rows of N tokens."""
    import typer

    try:
        return check_pack_tokens(value or None)
    except ConfigError as exc:
        raise typer.BadParameter(f"{value} is neither 0 (pad) nor a row of at least 2 tokens") from exc


#: The help of every command's ``--pack-tokens``.
PACK_TOKENS_HELP = ("Tokens per packed row: a batch's sequences share rows, so no compute goes to padding "
                    "(same embeddings to float rounding); 0 pads.")
