"""cocoa.data.minimmeb.wordings: training wordings, held-out and recombined copies, rewording."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import pyarrow.parquet as pq
import pytest

from cocoa.data.items import IMAGE_PLACEHOLDER
from cocoa.data.minimmeb import wordings
from cocoa.data.minimmeb.wordings import HELD_OUT_SETS
from cocoa.evaluate.registry import VIDEO_META_TASKS
from cocoa.pipeline.train_stage import tokenizer_texts

_QUERY_WORDINGS = {
    "FashionMNIST": wordings.CLASSIFY, "EmojiGroup": wordings.EMOJI_GROUP, "EmojiSubgroup": wordings.EMOJI_SUBGROUP,
    "SceneVQA": wordings.VQA, "ItemI2T": wordings.SCENE_I2T,
    "SceneT2I": wordings.SCENE_T2I, "SceneI2T": wordings.SCENE_I2T, "SceneGrounding": wordings.GROUND}


def _wording_of(text: str, choices: Sequence[str]) -> str | None:
    """The wording (format string) that produced ``text``, if any."""
    for wording in choices:
        head, _, tail = wording.format(img=IMAGE_PLACEHOLDER, x="\0").partition("\0")
        if text.startswith(head) and text.endswith(tail) and len(text) >= len(head) + len(tail):
            return wording
    return None


@pytest.mark.parametrize(("folder", "attribute"), sorted(HELD_OUT_SETS.items()))
def test_eval_uses_a_training_wording_and_each_held_out_copy_one_no_training_row_uses(mini, folder, attribute):
    out, manifest = mini
    for name, wording in _QUERY_WORDINGS.items():
        train = pq.read_table(out / "train" / f"{name}.parquet").column("qry").to_pylist()
        used = [_wording_of(text, wording.train) for text in train]
        assert None not in used, name
        assert len(set(used)) > 1, f"{name}: one training wording only"
        assert not any(_wording_of(text, [getattr(wording, attribute)]) for text in train), name
        evals = pq.read_table(out / "eval" / f"{name}.parquet").column("qry_text").to_pylist()
        assert all(_wording_of(text, [wording.train[0]]) for text in evals), name
    held_out = [getattr(w, attribute) for w in _QUERY_WORDINGS.values()]
    for info in (d for d in manifest.datasets if d.meta_task not in VIDEO_META_TASKS):
        original = pq.read_table(out / "eval" / f"{info.name}.parquet")
        reworded = pq.read_table(out / folder / f"{info.name}.parquet")
        assert reworded.drop(["qry_text"]).equals(original.drop(["qry_text"])), info.name
        texts = reworded.column("qry_text").to_pylist()
        assert all(_wording_of(text, held_out) for text in texts), info.name
        assert all(a != b for a, b in zip(texts, original.column("qry_text").to_pylist(), strict=True))
        card = json.loads((out / folder / f"{info.name}.card.json").read_text())
        assert card == {"meta_task": info.meta_task, "split": info.split}


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z]+", text.replace("{img}", " ").replace("{x}", " ").lower()))


def test_recombined_wordings_use_only_training_words_and_reworded_ones_bring_new_words(mini):
    out, _ = mini
    seen: set[str] = set()
    for text in tokenizer_texts(out):
        seen |= _words(text)
    for name, wording in _QUERY_WORDINGS.items():
        assert _words(wording.recombined) <= seen, (name, _words(wording.recombined) - seen)
        assert _words(wording.held_out) - seen, name
        assert wording.recombined not in (*wording.train, wording.held_out), name


def test_reword_keeps_the_row_text():
    query = wordings.SCENE_T2I.for_eval("A 2x2 grid with a red bag.")
    assert wordings.SCENE_T2I.reword(query) == wordings.SCENE_T2I.format(wordings.SCENE_T2I.held_out,
                                                                          "A 2x2 grid with a red bag.")
    assert wordings.CLASSIFY.reword(wordings.CLASSIFY.for_eval()) == wordings.CLASSIFY.format(
        wordings.CLASSIFY.held_out)
    assert wordings.GROUND.reword(wordings.GROUND.for_eval("bag"), wordings.GROUND.recombined) == (
        wordings.GROUND.format(wordings.GROUND.recombined, "bag"))
    with pytest.raises(ValueError, match="not worded as"):
        wordings.VQA.reword("What is this?")
