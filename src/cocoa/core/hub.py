"""Model folders by local path or by Hugging Face Hub id.

Wherever cocoa takes a model folder (``Embedder.from_pretrained``, recipes' ``model.path``,
``cocoa eval --model``, ``cocoa serve``, ``cocoa encode``), it also takes a Hub id ``org/name``,
pinned to a branch, tag or commit with ``org/name@revision``. The id is resolved by
``huggingface_hub.snapshot_download``: its cache (``HF_HOME`` / ``HF_HUB_CACHE``), resumable
downloads, and offline mode (``HF_HUB_OFFLINE=1`` reads the cache only) are the library's own.
A path that exists is always the local folder.
"""

from __future__ import annotations

import re
from pathlib import Path

from cocoa.core.errors import ConfigError

#: ``org/name`` or ``org/name@revision``, as the Hub spells repository ids.
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def is_hub_id(value: str | Path) -> bool:
    """Whether ``value`` is not an existing path but has the form of a Hub id."""
    return not Path(value).expanduser().exists() and bool(HUB_ID.match(str(value)))


def resolve_model(value: str | Path) -> Path:
    """The local folder of a model: ``value`` itself when it exists, else the snapshot of the Hub id
    ``value`` (downloaded into, or read from, the Hugging Face cache), or a :class:`ConfigError`."""
    local = Path(value).expanduser()
    if local.exists():
        return local
    text = str(value)
    if not HUB_ID.match(text):
        raise ConfigError(f"{text}: no such model folder (nor a Hub id of the form org/name[@revision])")
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, _, revision = text.partition("@")
    try:
        return Path(snapshot_download(repo, revision=revision or None))
    except LocalEntryNotFoundError as exc:
        mode = "offline mode is on (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE else "the Hub could not be reached"
        raise ConfigError(f"{text}: not a local folder, and not in the Hugging Face cache {constants.HF_HUB_CACHE} "
                          f"({mode})") from exc
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise ConfigError(f"{text}: not a local folder, and the Hub has no such model or revision") from exc
    except HfHubHTTPError as exc:
        raise ConfigError(f"{text}: download from the Hub failed: {exc}") from exc
