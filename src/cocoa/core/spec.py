"""How a checkpoint embeds (its protocol, token budget and Matryoshka dims) and how its last stage drew
its batches, saved as ``cocoa.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from cocoa.core.errors import ConfigError
from cocoa.core.hub import resolve_model
from cocoa.core.matryoshka import validate_dims
from cocoa.core.protocol import DEFAULT_PROTOCOL, PROTOCOLS, Protocol

SPEC_FILE = "cocoa.json"


@dataclass(frozen=True)
class EmbeddingSpec:
    """How a checkpoint embeds: its :class:`~cocoa.core.protocol.Protocol` and token budget.

    ``dims`` are the dims a multi-width InfoNCE trained (``None``: only the full one). ``training``
    records how the stage that wrote the checkpoint drew its batches and negatives (a mined plan's
    manifest, for one); it is provenance only, so it never enters equality or :meth:`embedding`.
    A ``cocoa.json`` written before protocols were recorded (``attention`` and no ``protocol``)
    loads as the ``cocoa`` protocol with that attention, which is what such a checkpoint did.
    """

    protocol: Protocol = PROTOCOLS[DEFAULT_PROTOCOL]
    max_len: int = 4096
    dims: tuple[int, ...] | None = None
    training: dict[str, Any] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.max_len < 2:
            raise ConfigError(f"max_len must be at least 2, got {self.max_len}")
        if self.dims is not None:
            object.__setattr__(self, "dims", validate_dims(self.dims, "dims"))

    @property
    def attention(self) -> str:
        """The attention the protocol embeds with."""
        return self.protocol.attention

    def with_protocol(self, protocol: Protocol) -> EmbeddingSpec:
        """The same budget and dims under another protocol."""
        return replace(self, protocol=protocol)

    def served_dims(self, hidden: int) -> tuple[int, ...]:
        """The embedding dims served, ascending: the trained Matryoshka dims and the full ``hidden``."""
        dims = validate_dims(self.dims or (hidden,), "dims", hidden)
        return tuple(sorted({*dims, hidden}))

    def embedding(self) -> dict[str, Any]:
        """The fields that decide an embedding (what a fingerprint hashes); ``dims`` only when set."""
        data: dict[str, Any] = {"protocol": self.protocol.to_dict(), "max_len": self.max_len}
        if self.dims is not None:
            data["dims"] = list(self.dims)
        return data

    def to_dict(self) -> dict[str, Any]:
        """The saved fields: :meth:`embedding`, and ``training`` when set."""
        return self.embedding() if self.training is None else {**self.embedding(), "training": self.training}

    def save(self, folder: str | Path) -> None:
        (Path(folder) / SPEC_FILE).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, folder: str | Path) -> EmbeddingSpec:
        """The spec in ``folder/cocoa.json`` (``folder`` may be a Hub id, :mod:`cocoa.core.hub`); a folder
        without one (another project's checkpoint) gets the default."""
        path = resolve_model(folder) / SPEC_FILE
        if not path.is_file():
            return cls()
        data = json.loads(path.read_text())
        unknown = set(data) - {"protocol", "attention", "max_len", "dims", "training"}
        if unknown:
            raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
        if "protocol" in data:
            if "attention" in data:
                raise ConfigError(f"{path}: give the attention inside protocol, not beside it")
            protocol = Protocol.from_dict(data["protocol"], f"{path}: protocol")
        else:
            protocol = PROTOCOLS[DEFAULT_PROTOCOL].replace(attention=data.get("attention", "bidirectional"))
        dims, training = data.get("dims"), data.get("training")
        if training is not None and not isinstance(training, dict):
            raise ConfigError(f"{path}: training must be a mapping, got {type(training).__name__}")
        return cls(protocol, int(data.get("max_len", 4096)), tuple(dims) if dims is not None else None, training)
