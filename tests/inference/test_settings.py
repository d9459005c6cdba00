"""cocoa.inference.settings: the server's settings and their one set of defaults."""

from __future__ import annotations

import pytest

from cocoa.core.errors import ConfigError
from cocoa.inference import server
from cocoa.inference.embedder import Embedder
from cocoa.inference.server import create_app
from tests.helpers import SERVED_MODEL as MODEL


def test_server_settings_have_one_set_of_defaults(embedder: Embedder) -> None:
    from cocoa.inference.settings import DEFAULTS, ServerSettings

    assert server.server_settings() == DEFAULTS == ServerSettings()
    assert server.server_settings(max_batch=3).max_batch == 3
    with pytest.raises(ConfigError, match=r"unknown server settings \['max_bach'\]"):
        create_app(embedder, model_name=MODEL, max_bach=3)
