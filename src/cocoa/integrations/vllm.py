"""Export a cocoa checkpoint for vLLM's pooling runner, and the prompt that reproduces cocoa's sequence.

vLLM serves the checkpoint's ``Qwen2VLForConditionalGeneration`` / ``Qwen2_5_VLForConditionalGeneration``
converted to an embedding model (``--runner pooling --convert embed``), pooling the last
token's final post-norm state and L2-normalising it. Its language model always attends
causally. So:

* a ``causal`` checkpoint with last-token pooling and grid positions (``contrastive.attention:
  causal``, or a VLM2Vec-style protocol) computes cocoa's embedding there when the prompt is
  cocoa's sequence (:func:`vllm_prompt`): the last token is then the embedding token (or the
  last real one) and LAST pooling is cocoa's pooling;
* a ``bidirectional`` checkpoint (CoCoA's default) cannot be served exactly: vLLM would
  run it causally and return different vectors from the ones cocoa trained and evaluated.
  :func:`export_vllm` refuses it unless asked to export anyway.

None of this was run against vLLM here (no GPU, vLLM not installed); the flags follow
vLLM's pooling documentation (0.11 and later; older releases spell the pooler option
``--override-pooler-config``).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from transformers import AutoConfig, PreTrainedTokenizerBase

from cocoa.core.errors import ConfigError
from cocoa.core.protocol import DEFAULT_PROTOCOL, PROTOCOLS, Protocol
from cocoa.core.spec import SPEC_FILE, EmbeddingSpec
from cocoa.data.items import IMAGE_PLACEHOLDER, Item
from cocoa.integrations.st_layout import CONFIG_FILE, MODULES_FILE
from cocoa.model.backbone import TokenIds

#: cocoa-only files left out of the export (vLLM would try to read ``modules.json`` as a pooling config).
COCOA_FILES = frozenset({SPEC_FILE, MODULES_FILE, CONFIG_FILE})
POOLER_CONFIG = {"pooling_type": "LAST", "normalize": True}
SERVE_SCRIPT, NOTES_FILE = "serve_vllm.sh", "cocoa_vllm.json"


def vllm_prompt(item: Item, tokenizer: PreTrainedTokenizerBase, protocol: Protocol | None = None) -> str:
    """The prompt whose tokens (one ``<|image_pad|>`` that vLLM expands per image) are cocoa's sequence.

    As in cocoa's preprocessor the image goes at the placeholder (or first), between vision
    start/end tokens unless the protocol lays them out bare, and the protocol's embedding
    token ends it; cocoa's ``max_len`` truncation of long texts and its image policy are not applied
    (vLLM sizes images with the folder's image processor).
    """
    protocol = protocol or PROTOCOLS[DEFAULT_PROTOCOL]
    ids = TokenIds.from_tokenizer(tokenizer)
    end_token = protocol.embedding_token or ""
    text = item.text or ""
    if item.image is None:
        return f"{text}{end_token}"
    before, after = text.split(IMAGE_PLACEHOLDER, 1) if IMAGE_PLACEHOLDER in text else ("", text)
    start, pad, end = tokenizer.convert_ids_to_tokens([ids.vision_start, ids.image, ids.vision_end])
    image = f"{start}{pad}{end}" if protocol.image_tokens == "vision_block" else pad
    return f"{before}{image}{after.replace(IMAGE_PLACEHOLDER, '')}{end_token}"


@dataclass(frozen=True)
class VllmExport:
    """Where the export went and whether vLLM computes cocoa's vectors from it."""

    folder: Path
    attention: str
    exact: bool
    args: list[str]


def vllm_args(spec: EmbeddingSpec, hidden: int) -> list[str]:
    """``vllm serve`` arguments: pooling runner, LAST pooling with normalisation, Matryoshka dims if trained."""
    args = ["--runner", "pooling", "--convert", "embed", "--pooler-config", json.dumps(POOLER_CONFIG)]
    if spec.dims is not None:
        args += ["--hf-overrides", json.dumps({"is_matryoshka": True,
                                               "matryoshka_dimensions": list(spec.served_dims(hidden))})]
    return args


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def export_vllm(model_dir: str | Path, out: str | Path, *, allow_causal_mismatch: bool = False) -> VllmExport:
    """Write a vLLM-ready folder (hard links to the weights where possible), a serve script and notes."""
    model_dir, out = Path(model_dir), Path(out)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ConfigError(f"{model_dir} is not a model folder: {config_path} is missing")
    spec = EmbeddingSpec.load(model_dir)
    exact = spec.attention == "causal" and spec.protocol.pooling == "last" and spec.protocol.positions == "grid"
    if not exact and not allow_causal_mismatch:
        raise ConfigError(f"{model_dir} embeds with {spec.attention} attention, but vLLM runs Qwen2-VL's language "
                          "model causally, so it would return different vectors; serve it with `cocoa serve`, "
                          "export a causal checkpoint (contrastive.attention: causal), or pass "
                          "--allow-causal-mismatch to export it knowing the vectors will differ")
    if out.exists():
        raise ConfigError(f"{out} already exists; choose a new folder")
    hidden = int(AutoConfig.from_pretrained(model_dir).text_config.hidden_size)
    out.mkdir(parents=True)
    for source in sorted(model_dir.iterdir()):
        if source.is_file() and source.name not in COCOA_FILES:
            _link_or_copy(source, out / source.name)
    args = vllm_args(spec, hidden)
    script = out / SERVE_SCRIPT
    script.write_text("#!/usr/bin/env bash\n# Serve this folder with vLLM's pooling runner (written by "
                      "`cocoa export vllm`).\nexec vllm serve \"$(dirname \"$0\")\" "
                      + " ".join(f"'{a}'" for a in args) + " \"$@\"\n")
    script.chmod(0o755)
    notes = {"source": str(model_dir.resolve()), "cocoa_attention": spec.attention, "vllm_attention": "causal",
             "exact": exact, "vllm_args": args, "prompt": "text + EOS; images as <|vision_start|><|image_pad|>"
             "<|vision_end|> at the <|image_1|> placeholder (or first): cocoa.integrations.vllm.vllm_prompt"}
    (out / NOTES_FILE).write_text(json.dumps(notes, indent=2) + "\n")
    return VllmExport(out, spec.attention, exact, args)
