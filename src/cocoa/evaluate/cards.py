"""Dataset cards: the meta-task, split, metric and instruction format of a dataset no registry knows.

A card is a small YAML or JSON mapping kept beside the data: ``card.yaml`` (``card.yml``,
``card.json``) inside the dataset's folder, or ``<name>.card.yaml`` (``.yml``, ``.json``) next to
a single-file dataset ``<name>.parquet``. Keys (unknown keys are errors)::

    meta_task: vqa              # one of registry.META_TASKS; required
    split: OOD                  # IND or OOD; optional
    metric: hit@1               # hit@1 or ndcg@5; optional, default by layout (see runner)
    instruction_format: qa      # instruction-split files only: one of data.instruct.FORMATS

``cocoa eval --dataset-info NAME=META_TASK[:SPLIT]`` gives the same for one dataset without a file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

from cocoa.core.errors import ConfigError, DataError
from cocoa.data.instruct import FORMATS
from cocoa.evaluate.registry import META_TASKS, METRICS, SPLITS

CARD_KEYS = ("meta_task", "split", "metric", "instruction_format")
_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Card:
    """What a card (or ``--dataset-info``) says about one dataset; ``None``: not said."""

    meta_task: str
    split: str | None = None
    metric: str | None = None
    instruction_format: str | None = None


def card_file(data_dir: Path, name: str) -> Path | None:
    """The card of dataset ``name`` under ``data_dir``, or ``None`` when it has none."""
    root = Path(data_dir)
    for base in (root, root / "eval"):
        candidates = [base / name / f"card{suffix}" for suffix in _SUFFIXES]
        candidates += [base / f"{name}.card{suffix}" for suffix in _SUFFIXES]
        for path in candidates:
            if path.is_file():
                return path
    return None


def read_card(path: Path) -> Card:
    """Parse and check one card file."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
        raw = json.loads(text) if Path(path).suffix == ".json" else yaml.safe_load(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise DataError(f"cannot read dataset card: {exc}", file=file) from exc
    if not isinstance(raw, dict):
        raise DataError("a dataset card must be a mapping", file=file)
    for key in raw:
        if key not in CARD_KEYS:
            raise DataError(f"unknown key (expected {', '.join(CARD_KEYS)})", file=file, field=str(key))
    if raw.get("meta_task") is None:
        raise DataError("a dataset card needs a meta_task", file=file, field="meta_task")
    try:
        return make_card(**{key: None if value is None else str(value) for key, value in raw.items()})
    except ConfigError as exc:
        raise DataError(str(exc), file=file) from exc


def make_card(meta_task: str, split: str | None = None, metric: str | None = None,
              instruction_format: str | None = None) -> Card:
    """A checked :class:`Card` (meta-task lower-cased, split upper-cased)."""
    meta_task = meta_task.strip().lower()
    split = split.strip().upper() if split else None
    if meta_task not in META_TASKS:
        raise ConfigError(f"meta_task must be one of {', '.join(META_TASKS)}, got {meta_task!r}")
    if split is not None and split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if metric is not None and metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if instruction_format is not None and instruction_format not in FORMATS:
        raise ConfigError(f"instruction_format must be one of {', '.join(FORMATS)}, got {instruction_format!r}")
    return Card(meta_task, split, metric, instruction_format)


def parse_dataset_info(option: str) -> tuple[str, Card]:
    """``"NAME=META_TASK[:SPLIT]"`` (the ``--dataset-info`` option) as ``(name, card)``."""
    name, sep, rest = option.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise ConfigError(f"--dataset-info takes NAME=META_TASK[:SPLIT], got {option!r}")
    meta_task, _, split = rest.partition(":")
    try:
        return name.strip(), make_card(meta_task, split or None)
    except ConfigError as exc:
        raise ConfigError(f"--dataset-info {option!r}: {exc}") from exc
