"""The instruction-split MMEB-eval variant: ``qry_inst`` / ``tgt_inst`` put back in front of the texts.

The variant (Hugging Face ``ziyjiang/MMEB_Test_Instruct``, read by MMEB-V2's image tasks) stores
each instruction apart from its text. The texts to embed are rebuilt exactly as the ``data_prepare``
function of the matching parser in ``src/data/eval_dataset/image_*.py`` of
github.com/TIGER-AI-Lab/VLM2Vec does it (through ``process_input_text``, which puts the image
token and a space in front), with MMEB's ``<|image_1|>`` as the image token:

* ``image_cls`` and ``image_i2t``: query ``"<|image_1|> " + inst + " " + text`` (the instruction
  without ``<|image_1|>``), ``" \\n"`` turned into ``"\\n"``, then ``"\\n"`` added at the end; the query image is
  kept; candidates are ``tgt_text`` verbatim, text only (``tgt_inst`` and ``tgt_img_path`` unused).
* ``image_qa``: as ``image_cls`` with the instruction stripped and prefixed with ``"\\n"``.
* ``image_t2i``: query ``qry_inst + " " + qry_text + "\\n"`` (one more ``"\\n"`` for VisDial), text
  only; each candidate ``"<|image_1|> " + tgt_inst + " " + caption`` when the row's first caption is
  not blank, else ``"<|image_1|> " + tgt_inst``, ``" \\n"`` turned into ``"\\n"``, ``"\\n"`` added at the end;
  candidate images kept.
* ``image_i2i_vg``: query as ``image_qa``; candidates as ``image_t2i``, except that the
  instruction-only candidate text gets no ``"\\n"`` at the end.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cocoa.data.columns import CODED_STRING, Strings, entry_rows, list_lengths
from cocoa.data.items import IMAGE_PLACEHOLDER

FORMATS = ("image_cls", "image_qa", "image_i2t", "image_t2i", "image_i2i_vg")
INSTRUCTION_FIELDS = ("qry_inst", "tgt_inst")

#: The parser of each MMEB image task (``dataset_parser`` in ``experiments/public/eval/image.yaml``).
REFERENCE_FORMATS: dict[str, str] = {
    name: parser
    for parser, names in (
        ("image_cls", "ImageNet-1K N24News HatefulMemes VOC2007 SUN397 Place365 ImageNet-A ImageNet-R ObjectNet "
                      "Country211"),
        ("image_qa", "OK-VQA A-OKVQA DocVQA InfographicsVQA ChartQA Visual7W ScienceQA VizWiz GQA TextVQA"),
        ("image_i2t", "MSCOCO_i2t VisualNews_i2t"),
        ("image_t2i", "VisDial MSCOCO_t2i VisualNews_t2i WebQA EDIS Wiki-SS-NQ"),
        ("image_i2i_vg", "CIRR NIGHTS OVEN FashionIQ MSCOCO RefCOCO RefCOCO-Matching Visual7W-Pointing"),
    )
    for name in names.split()
}

Columns = dict[str, pa.ChunkedArray]


def _with_image_token(instruction: str, text: str = "") -> str:
    """``process_input_text(instruction, text=text, add_image_token=True)`` of the reference."""
    prompt = instruction + (" " + text if text else "")
    return f"{IMAGE_PLACEHOLDER} {prompt}"


def _query_inst(fmt: str, inst: str) -> str:
    inst = inst.replace(IMAGE_PLACEHOLDER, "")
    return "\n" + inst.strip() if fmt in ("image_qa", "image_i2i_vg") else inst


def _image_query(fmt: str) -> Callable[[str, str], str]:
    def build(inst: str, text: str) -> str:
        return _with_image_token(_query_inst(fmt, inst), text).replace(" \n", "\n") + "\n"

    return build


def _text_query(dataset_name: str) -> Callable[[str, str], str]:
    extra = "\n" if dataset_name == "VisDial" else ""

    def build(inst: str, text: str) -> str:
        return inst + " " + text + "\n" + extra

    return build


def _coded(codes: np.ndarray, values: list[str]) -> pa.ChunkedArray:
    return pa.chunked_array([pa.DictionaryArray.from_arrays(pa.array(codes, pa.int32()), pa.array(values,
                                                                                                 pa.string()))])


def _lists(lengths: np.ndarray, values: pa.Array) -> pa.ChunkedArray:
    """A list column with ``lengths[i]`` entries in row ``i`` (null where ``-1``) taken from ``values``."""
    offsets = pa.array(np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))]).astype(np.int32))
    return pa.chunked_array([pa.ListArray.from_arrays(offsets, values, mask=pa.array(lengths < 0))])


def _instructed_candidates(fmt: str, tgt_inst: Strings, captions: Strings, lengths: np.ndarray) -> Strings:
    """Candidate texts of ``image_t2i`` / ``image_i2i_vg`` rows, each distinct (instruction, caption) built once."""
    owner = entry_rows(lengths)
    starts = np.cumsum(np.maximum(lengths, 0)) - np.maximum(lengths, 0)
    blank = np.array([not value.strip() for value in captions.values], dtype=bool)
    has_rows = lengths > 0
    captioned = np.zeros(len(lengths), dtype=bool)
    captioned[has_rows] = ~blank[captions.codes[starts[has_rows]]]
    base = len(captions.values) + 1
    keys = tgt_inst.codes[owner] * base + np.where(captioned[owner], captions.codes + 1, 0)
    unique, inverse = np.unique(keys, return_inverse=True)
    tail = "\n" if fmt == "image_t2i" else ""
    texts = []
    for key in unique.tolist():
        inst = tgt_inst.values[key // base].replace(IMAGE_PLACEHOLDER, "")
        caption = key % base
        if caption:
            text = _with_image_token(inst + " " + captions.values[caption - 1]).replace(" \n", "\n") + "\n"
        else:
            text = _with_image_token(inst).replace(" \n", "\n") + tail
        texts.append(text)
    return Strings(inverse.astype(np.int64), texts)


def apply_format(columns: Columns, fmt: str, dataset_name: str) -> Columns:
    """The four MMEB-eval fields (``qry_text``, ``qry_img_path``, ``tgt_text``, ``tgt_img_path``) of
    instruction-split ``columns`` (the six fields, strings coded, lists of coded strings) in format ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown instruction format {fmt!r}; known: {', '.join(FORMATS)}")
    image_query = fmt != "image_t2i"
    build = _image_query(fmt) if image_query else _text_query(dataset_name)
    inst, text = Strings.of(columns["qry_inst"]), Strings.of(columns["qry_text"])
    pairs, inverse = np.unique(np.stack([inst.codes, text.codes], axis=1), axis=0, return_inverse=True)
    queries = [build(inst.values[i], text.values[t]) for i, t in pairs.tolist()]
    rows = len(inst)
    query_image = columns["qry_img_path"] if image_query else _coded(np.zeros(rows, np.int64), [""])
    lengths = list_lengths(columns["tgt_text"])
    captions = Strings.of(pc.list_flatten(columns["tgt_text"]))
    if fmt in ("image_t2i", "image_i2i_vg"):
        candidate_text = _instructed_candidates(fmt, Strings.of(columns["tgt_inst"]), captions, lengths)
        candidate_image = columns["tgt_img_path"]
    else:
        candidate_text = captions
        blanks = pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(captions), np.int32)), pa.array([""]))
        candidate_image = _lists(lengths, blanks)
    candidate_values = pa.DictionaryArray.from_arrays(pa.array(candidate_text.codes.astype(np.int32)),
                                                      pa.array(candidate_text.values, pa.string()))
    return {"qry_text": _coded(inverse.reshape(-1), queries), "qry_img_path": query_image,
            "tgt_text": _lists(lengths, candidate_values), "tgt_img_path": candidate_image.cast(pa.list_(CODED_STRING))}
