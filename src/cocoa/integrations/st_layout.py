"""The files that make a cocoa checkpoint folder a sentence-transformers model (no import of it needed).

``modules.json`` names one module, :class:`cocoa.integrations.sentence_transformers.CocoaModule`,
stored in the folder's root; it reads the checkpoint (weights, tokenizer, image processor and
``cocoa.json``) as :meth:`cocoa.inference.batch_encoder.BatchEncoder.from_pretrained` does.
"""

from __future__ import annotations

import json
from pathlib import Path

#: The sentence-transformers release this layout is written and tested for (pinned in pyproject.toml).
SENTENCE_TRANSFORMERS_VERSION = "6.3.0"
MODULE_TYPE = "cocoa.integrations.sentence_transformers.CocoaModule"
MODULES_FILE = "modules.json"
CONFIG_FILE = "config_sentence_transformers.json"


def write_sentence_transformers_files(folder: str | Path) -> Path:
    """Add ``modules.json`` and ``config_sentence_transformers.json`` to a checkpoint folder."""
    folder = Path(folder)
    modules = [{"idx": 0, "name": "0", "path": "", "type": MODULE_TYPE}]
    config = {"model_type": "SentenceTransformer", "__version__": {"sentence_transformers":
                                                                   SENTENCE_TRANSFORMERS_VERSION},
              "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"}
    (folder / MODULES_FILE).write_text(json.dumps(modules, indent=2) + "\n")
    (folder / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return folder
