"""cocoa.integrations.vllm: a prompt with cocoa's exact tokens, an honest verdict on attention."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cocoa.core.errors import ConfigError
from cocoa.core.protocol import PROTOCOLS
from cocoa.core.spec import SPEC_FILE, EmbeddingSpec
from cocoa.data.collate import Preprocessor
from cocoa.data.items import IMAGE_PLACEHOLDER, Item
from cocoa.inference.embedder import with_instruction
from cocoa.integrations.st_layout import MODULES_FILE
from cocoa.integrations.vllm import NOTES_FILE, SERVE_SCRIPT, export_vllm, vllm_prompt
from cocoa.model.backbone import Backbone
from tests.helpers import checkpoint_with_spec as checkpoint


def vllm_tokens(prompt: str, item: Item, backbone: Backbone, pre: Preprocessor) -> list[int]:
    """The prompt's tokens with the one image pad expanded to the image's merged-patch count (as vLLM does)."""
    ids = backbone.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if item.image is None:
        return list(ids)
    count = pre.image_block(item.image).num_image_tokens()
    at = ids.index(backbone.ids.image)
    return [*ids[:at], *[backbone.ids.image] * count, *ids[at + 1:]]


def test_prompt_reproduces_cocoa_tokens(tiny_backbone: Backbone, image_dir: Path) -> None:
    pre = Preprocessor(tiny_backbone, 4096)
    image = str(image_dir / "c.png")
    items = [Item("a red dress on a white background"), Item("", image), Item("what is this? a boot", image),
             Item(f"Look: {IMAGE_PLACEHOLDER} and answer", image),
             Item(with_instruction("a sneaker", "Represent the given image.", IMAGE_PLACEHOLDER), image)]
    for item in items:
        assert vllm_tokens(vllm_prompt(item, tiny_backbone.tokenizer), item, tiny_backbone, pre) == \
            pre.embedding_sequence(item).ids, item.text


def test_bidirectional_is_refused_unless_asked(model_dir: Path, tmp_path: Path) -> None:
    folder = checkpoint(model_dir, tmp_path, EmbeddingSpec())
    with pytest.raises(ConfigError, match="vLLM runs Qwen2-VL's language model causally"):
        export_vllm(folder, tmp_path / "out")
    result = export_vllm(folder, tmp_path / "out", allow_causal_mismatch=True)
    assert not result.exact and json.loads((tmp_path / "out" / NOTES_FILE).read_text())["exact"] is False


def test_causal_export(model_dir: Path, tmp_path: Path) -> None:
    folder = checkpoint(model_dir, tmp_path, EmbeddingSpec(PROTOCOLS["cocoa"].replace(attention="causal"), dims=(32,)))
    result = export_vllm(folder, tmp_path / "out")
    assert result.exact and result.attention == "causal"
    names = {p.name for p in (tmp_path / "out").iterdir()}
    assert "config.json" in names and SPEC_FILE not in names and MODULES_FILE not in names
    assert any(name.endswith(".safetensors") for name in names)
    script = (tmp_path / "out" / SERVE_SCRIPT).read_text()
    assert "'--runner' 'pooling' '--convert' 'embed'" in script and '"pooling_type": "LAST"' in script
    assert '"matryoshka_dimensions": [32, 96]' in script
    with pytest.raises(ConfigError, match="already exists"):
        export_vllm(folder, tmp_path / "out")
