"""Readers of the 18 MMEB-V2 video tasks, built as VLM2Vec-V2's loaders build them.

Layout: a task folder holds a snapshot of the task's Hugging Face repo (parquet, JSON or JSON
Lines; the files of the config and split VLM2Vec-V2 reads, :mod:`cocoa.data.mmeb_v2` says which
and where the folder may be), and the frames are where VLM2Vec-V2's
``experiments/public/eval/video.yaml`` puts them under its data folder:
``<video root>/video-tasks/frames/<group>/<task>/<video id>/`` (the video root is ``DATA``), or
nested deeper as the frame archives unpack (:func:`frame_root`), one folder of pre-extracted
frames per video (``frame_0001.jpg`` or ``0001.jpeg``, in natural order). Frames are sampled by
the protocol's video policy (8 by default, as VLM2Vec-V2).

Each task keeps the reference's prompts, candidate sets and gold (``src/data/eval_dataset/*.py``
of github.com/TIGER-AI-Lab/VLM2Vec; ``VIDEO_TASKS`` below names the reader of each):

* classification: the query is the video with the task's instruction; HMDB51, UCF101, K700 and
  Breakfast rank all labels (*global*: the labels of the rows plus VLM2Vec-V2's built-in list of
  the task, :func:`cocoa.data.mmeb_v2.video_labels`), SmthSmthV2 each row's own ``neg_text`` list, first 1000 rows;
* retrieval (MSR-VTT, MSVD, DiDeMo, YouCook2, VATEX): a text query against every video of the task;
* moment retrieval: QVHighlight and Charades-STA rank the clip folders of the query's video
  (gold: the one named ``positive*``), MomentSeeker its positive and negative clips (every
  positive counts as a hit); the query is a video, an image or a text; MomentSeeker's videos are read
  whole (every saved frame, as its loader's ``load_frames``), the others sampled by the protocol;
* QA (Video-MME, NExTQA, EgoSchema, MVBench, ActivityNetQA): video and question against the row's
  options as bare text.

Global tasks are read as a :class:`~cocoa.data.visdoc.CorpusDataset` (every query ranked against
one corpus), local ones as an :class:`~cocoa.data.eval_sets.LoadedEvalDataset` with the gold
candidates first (``golds`` per row: 0 where the reference's gold is not among its candidates).
All are scored by hit@1.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cocoa.core.errors import DataError
from cocoa.data.eval_sets import LoadedEvalDataset
from cocoa.data.hub_files import fields, iter_rows
from cocoa.data.items import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, EveryFrame, Item, ItemTable
from cocoa.data.mmeb_v2 import PUBLISHED, locate_in, video_labels
from cocoa.data.paths import outside_problem
from cocoa.data.rows import log_skipped, skip_row
from cocoa.data.videos import video_problem
from cocoa.data.visdoc import CorpusDataset

V = VIDEO_PLACEHOLDER
#: The candidate prompt of retrieval videos and moment clips.
VIDEO_TARGET = "Understand the content of the provided video."
#: The question prompt of every QA task (it ends in a space, so the query has two before the question).
QA_PROMPT = ("Given a video and a question, select the most accurate answer from the provided candidates. "
             "Return only the exact text of your chosen answer. Question: ")


@dataclass(frozen=True)
class VideoTask:
    """One MMEB-V2 video task: its reader, frame folder, Hugging Face subset and split, and prompt."""

    name: str
    reader: str
    frames: str
    split: str = "test"
    subset: str | None = None
    instruction: str = ""
    limit: int | None = None


def _task(name: str, reader: str, group: str, folder: str, **kw: Any) -> VideoTask:
    return VideoTask(name, reader, f"video-tasks/frames/{group}/{folder}", **kw)


#: The 18 tasks by MMEB-V2 name (``experiments/public/eval/video.yaml``, ``src/constant/dataset_hf_path.py``).
VIDEO_TASKS: dict[str, VideoTask] = {t.name: t for t in (
    _task("K700", "classification", "video_cls", "K700",
          instruction="Recognize the category of the video content."),
    _task("SmthSmthV2", "ssv2", "video_cls", "SSv2", limit=1000,
          instruction="What actions or object interactions are being performed by the person in the video?"),
    _task("HMDB51", "classification", "video_cls", "HMDB51",
          instruction="What actions or objects interactions are the person in the video doing?"),
    _task("UCF101", "classification", "video_cls", "UCF101",
          instruction="What activities or sports are being performed by the person in the video?"),
    _task("Breakfast", "classification", "video_cls", "Breakfast",
          instruction="Recognize the breakfast type that the person is cooking in the video. "),
    _task("MVBench", "mvbench", "video_qa", "MVBench", split="train"),
    _task("Video-MME", "videomme", "video_qa", "Video-MME"),
    _task("NExTQA", "nextqa", "video_qa", "NExTQA", subset="MC"),
    _task("EgoSchema", "egoschema", "video_qa", "EgoSchema", subset="Subset"),
    _task("ActivityNetQA", "activitynetqa", "video_qa", "ActivityNetQA"),
    _task("DiDeMo", "retrieval", "video_ret", "DiDeMo",
          instruction="Find a video that includes the following described scenes:"),
    _task("MSR-VTT", "retrieval", "video_ret", "MSR-VTT", subset="test_1k",
          instruction="Find a video that contains the following visual content:"),
    _task("MSVD", "retrieval", "video_ret", "MSVD",
          instruction="Find the video snippet that corresponds to the given summary:"),
    _task("VATEX", "retrieval", "video_ret", "VATEX", instruction="Select a video that fits the description provided:"),
    _task("YouCook2", "retrieval", "video_ret", "YouCook2", split="val",
          instruction="Find a video that demonstrates the following action while making a recipe:"),
    _task("QVHighlight", "moment", "video_mret", "QVHighlight",
          instruction="Find the clip that corresponds to the described scene in the given video:"),
    _task("Charades-STA", "moment", "video_mret", "Charades_STA",
          instruction="Find the clip that corresponds to the described scene in the given video:"),
    _task("MomentSeeker", "momentseeker", "video_mret", "MomentSeeker"),
)}

#: Retrieval columns: (video id column, caption column); ids of DiDeMo are file names.
RETRIEVAL_COLUMNS = {"MSR-VTT": ("video_id", "caption"), "MSVD": ("video_id", "caption"),
                     "DiDeMo": ("video", "caption"), "YouCook2": ("id", "sentence"), "VATEX": ("videoID", "enCap")}
#: How deep below its group folder (``video-tasks/frames/video_ret``) a task's frame folder may sit.
FRAME_SEARCH_DEPTH = 5


def frame_root(video_root: Path, task: VideoTask) -> Path:
    """The folder of ``task``'s frame folders under ``video_root``.

    First where VLM2Vec-V2's yaml puts it (``video-tasks/frames/<group>/<folder>``); else the first
    folder named after the task (``<folder>`` or the task's name) below the group folder, breadth
    first, and its ``frames/`` folder when it has one, as ``video_ret.tar.gz`` unpacks
    (``video_ret/data/ziyan/video_retrieval/<task>/frames/<id>/``). Task folders of other tasks are
    not entered. When nothing is found, the yaml's place (each video is then reported missing).
    """
    direct = Path(video_root) / task.frames
    if direct.is_dir():
        return direct
    wanted = {direct.name, task.name}
    known = {Path(t.frames).name for t in VIDEO_TASKS.values()} | set(VIDEO_TASKS)
    level = [direct.parent]
    for _ in range(FRAME_SEARCH_DEPTH):
        below: list[Path] = []
        for folder in level:
            try:
                children = sorted(p for p in folder.iterdir() if p.is_dir())
            except OSError:
                continue
            for child in children:
                if child.name in wanted:
                    return child / "frames" if (child / "frames").is_dir() else child
                if child.name not in known:
                    below.append(child)
        level = below
    return direct


def _parts(folder: Path, task: VideoTask) -> dict[str, list[Path]]:
    """The row files of ``task`` in its annotation folder, by config (see :mod:`cocoa.data.mmeb_v2`)."""
    return locate_in(Path(folder), PUBLISHED[task.name]).parts


class _Rows:
    """The rows of a task read in order, each with the file, row number and the config it came from."""

    def __init__(self, parts: dict[str, list[Path]], task: VideoTask, required: tuple[str, ...]) -> None:
        self.parts, self.task, self.required = parts, task, required

    def __iter__(self) -> Iterator[tuple[str, int, str, dict]]:
        for config, files in self.parts.items():
            for file in files:
                names = set(fields(file))
                for field in self.required:
                    if field not in names:
                        raise DataError(f"missing field of {self.task.name} (wrong schema?)", file=str(file),
                                        field=field)
                for index, row in enumerate(iter_rows(file)):
                    yield str(file), index, config, row


class _Builder:
    """Items interned by key, rows of local candidates or a global corpus, skipped bad rows."""

    def __init__(self, task: VideoTask, video_root: Path, skip_bad: bool, allow_outside: bool = False) -> None:
        self.task, self.skip_bad, self.allow_outside = task, skip_bad, allow_outside
        self.frames = frame_root(video_root, task)
        self.table = ItemTable()
        self.problems: dict[str, str | None] = {}
        self.skipped = 0
        self.queries: list[int] = []
        self.candidates: list[list[int]] = []
        self.golds: list[int] = []

    @property
    def items(self) -> list[Item]:
        return self.table.items

    def item(self, item: Item) -> int:
        return self.table.add(item)

    def video(self, relative: str, *, file: str, row: int, field: str) -> str:
        """The absolute frame folder of ``relative`` (under the task's frame root), checked once."""
        path = str(self.frames / relative)
        if path not in self.problems:
            outside = None if self.allow_outside else outside_problem(self.frames, relative)
            self.problems[path] = outside or video_problem(path)
        if (problem := self.problems[path]) is not None:
            raise DataError(problem, file=file, row=row, field=field)
        return path

    def row(self, file: str, index: int, make: Callable[[], tuple[Item, list[Item], int]]) -> None:
        """Add the row ``make`` builds (query, candidates with the golds first, gold count), or skip it."""
        try:
            query, candidates, golds = make()
        except DataError as exc:
            self.skipped += skip_row(exc, self.skip_bad)
            return
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
            self.skipped += skip_row(DataError(f"unexpected value: {exc!r}", file=file, row=index), self.skip_bad)
            return
        self.queries.append(self.item(query))
        self.candidates.append([self.item(c) for c in candidates])
        self.golds.append(golds)

    def local(self, source: str, files: tuple[str, ...]) -> LoadedEvalDataset:
        self._check(source)
        width = max(len(c) for c in self.candidates)
        table = np.full((len(self.candidates), width), -1, dtype=np.int64)
        for i, ids in enumerate(self.candidates):
            table[i, :len(ids)] = ids
        return LoadedEvalDataset(self.task.name, tuple(self.items), np.array(self.queries, dtype=np.int64), table,
                                 source, skipped=self.skipped, files=files,
                                 golds=np.array(self.golds, dtype=np.int64))

    def corpus(self, source: str, extra: Sequence[Item] = ()) -> CorpusDataset:
        """Every query against the union of the candidates (first seen first), its gold relevant."""
        self._check(source)
        order: dict[int, int] = {}
        for ids in self.candidates:
            for i in ids:
                order.setdefault(i, len(order))
        for item in extra:
            order.setdefault(self.item(item), len(order))
        gold = [order[ids[0]] for ids in self.candidates]
        corpus = np.array(list(order), dtype=np.int64)
        names = tuple(_describe(self.items[i]) for i in corpus)
        return CorpusDataset(self.task.name, tuple(self.items), np.array(self.queries, dtype=np.int64), corpus,
                             np.arange(len(gold) + 1, dtype=np.int64), np.array(gold, dtype=np.int64),
                             np.ones(len(gold)), names, source, self.skipped)

    def _check(self, source: str) -> None:
        log_skipped(source, self.skipped)
        if not self.queries:
            raise DataError(f"no usable row of {self.task.name}", file=source)


def _describe(item: Item) -> str:
    if item.video is not None:
        return os.path.basename(str(item.video))
    return item.text


def _first(value: Any) -> str:
    """A caption column's text: the first of a list, or the string itself."""
    text = value[0] if isinstance(value, list | tuple | np.ndarray) else value
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"caption {value!r} is not text")
    return text


def _option_text(option: str) -> str:
    """An option's text as Video-MME's and EgoSchema's loaders keep it: ``o[o.find('. '):].strip('. ')``."""
    return option[option.find(". "):].strip(". ")


def qa_options(question: str, candidates: list[str], answer: object) -> tuple[str, list[str], int]:
    """``question`` followed by its ``(A) ...`` options, the lettered options and the answer's index
    (``-1`` when ``answer`` is none of them), as VLM2Vec-V2's ``qa_template``."""
    lettered = [f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(candidates)]
    text = f"{question}\nOptions:\n" + "".join(f"{o}\n" for o in lettered)
    return text.rstrip(), lettered, next((i for i, c in enumerate(candidates) if c == answer), -1)


def _gold_first(candidates: list[str], gold: int) -> tuple[list[Item], int]:
    """Candidate items with the gold (index ``gold``, ``-1``: none) moved first, and the gold count."""
    if gold < 0:
        return [Item(c) for c in candidates], 0
    return [Item(candidates[gold])] + [Item(c) for i, c in enumerate(candidates) if i != gold], 1


def _qa_query(question: str) -> str:
    return f"{V} {QA_PROMPT} {question}"


def read_video_task(folder: Path, task: VideoTask, video_root: Path, *, skip_bad: bool = False,
                    parts: dict[str, list[Path]] | None = None, allow_outside_paths: bool = False,
                    ) -> LoadedEvalDataset | CorpusDataset:
    """Read MMEB-V2 video task ``task`` from ``folder`` with frames under ``video_root`` (module docstring).

    ``parts`` gives the row files by config when they are known already (:func:`cocoa.data.mmeb_v2.locate`).
    """
    build = _Builder(task, video_root, skip_bad, allow_outside_paths)
    parts = parts if parts is not None else _parts(folder, task)
    files = tuple(str(f) for fs in parts.values() for f in fs)
    source = str(folder)
    reader = task.reader
    if reader == "classification":
        for file, index, _, row in _Rows(parts, task, ("video_id", "pos_text")):
            def make(file: str = file, index: int = index, row: dict = row) -> tuple[Item, list[Item], int]:
                video = build.video(str(row["video_id"]), file=file, row=index, field="video_id")
                return Item(f"{V} {task.instruction}", video=video), [Item(str(row["pos_text"]))], 1
            build.row(file, index, make)
        return build.corpus(source, [Item(label) for label in video_labels().get(task.name, ())])
    if reader == "retrieval":
        id_field, caption_field = RETRIEVAL_COLUMNS[task.name]
        for file, index, _, row in _Rows(parts, task, (id_field, caption_field)):
            def make(file: str = file, index: int = index, row: dict = row) -> tuple[Item, list[Item], int]:
                name = os.path.splitext(os.path.basename(str(row[id_field])))[0] if task.name == "DiDeMo" else str(
                    row[id_field])
                video = build.video(name, file=file, row=index, field=id_field)
                return (Item(f"{task.instruction} {_first(row[caption_field])}"),
                        [Item(f"{V} {VIDEO_TARGET}", video=video)], 1)
            build.row(file, index, make)
        return build.corpus(source)
    rows = _Rows(parts, task, REQUIRED[reader])
    for n, (file, index, config, row) in enumerate(rows):
        if task.limit is not None and n >= task.limit:
            break
        build.row(file, index, lambda file=file, index=index, config=config, row=row: LOCAL[reader](
            build, task, row, file, index, config))
    return build.local(source, files)


def _ssv2(build: _Builder, task: VideoTask, row: dict, file: str, index: int, _: str) -> tuple[Item, list[Item], int]:
    video = build.video(str(row["video_id"]), file=file, row=index, field="video_id")
    options = [str(c) for c in row["neg_text"]]
    gold = options.index(row["pos_text"]) if row["pos_text"] in options else -1
    candidates, golds = _gold_first(options, gold)
    return Item(f"{V} {task.instruction}", video=video), candidates, golds


def _moment(build: _Builder, task: VideoTask, row: dict, file: str, index: int, _: str
            ) -> tuple[Item, list[Item], int]:
    name = os.path.splitext(os.path.basename(str(row["video_path"])))[0]
    query = build.video(f"{name}/query", file=file, row=index, field="video_path")
    clips = sorted(p.name for p in (build.frames / name).iterdir() if p.is_dir() and p.name != "query")
    positive = [c for c in clips if c.startswith("positive")]
    if not positive:
        raise DataError(f"no clip folder named positive* in {build.frames / name}", file=file, row=index,
                        field="video_path")
    ordered = positive[-1:] + [c for c in clips if c != positive[-1]]
    candidates = [Item(f"{V} {VIDEO_TARGET}", video=build.video(f"{name}/{c}", file=file, row=index,
                                                                 field="video_path")) for c in ordered]
    return Item(f"{V} {task.instruction} {row['query']}", video=query), candidates, 1


MOMENTSEEKER_TARGET = "Understand the content of the provided video clip."


def _momentseeker(build: _Builder, task: VideoTask, row: dict, file: str, index: int, _: str
                  ) -> tuple[Item, list[Item], int]:
    given, text = str(row["input_frames"] or ""), str(row["query"])
    if given.endswith(".mp4"):
        video = EveryFrame(build.video(f"video_frames/{given.split('.mp4')[0].replace('/', '_')}", file=file,
                                       row=index, field="input_frames"))
        query = Item(f"{V} Find the clip that corresponds to the given sentence and video segment: {text}",
                     video=video)
    elif given.endswith(".jpg"):
        image = build.frames / f"query_{given}"
        if not image.is_file():
            raise DataError(f"image file not found: {image}", file=file, row=index, field="input_frames")
        query = Item(f"{IMAGE_PLACEHOLDER} Select the video clip that aligns with the given text and image: {text}",
                     str(image))
    else:
        query = Item(f"Find the clip that corresponds to the given text: {text}")

    def clips(entries: Any, field: str) -> list[Item]:
        return [Item(f"{V} {MOMENTSEEKER_TARGET}", video=EveryFrame(build.video(
            f"video_frames/{str(e['output_path']).replace('/', '_').split('.mp4')[0]}", file=file, row=index,
            field=field))) for e in entries]

    positives = clips(row["positive_frames"], "positive_frames")
    return query, positives + clips(row["negative_frames"], "negative_frames"), len(positives)


def _videomme(build: _Builder, task: VideoTask, row: dict, file: str, index: int, _: str
              ) -> tuple[Item, list[Item], int]:
    video = build.video(str(row["videoID"]), file=file, row=index, field="videoID")
    options = [str(o) for o in row["options"]]
    query = _qa_query(str(row["question"]) + "\n" + "\n".join(options))
    candidates, golds = _gold_first([_option_text(o) for o in options], "ABCD".index(str(row["answer"])))
    return Item(query, video=video), candidates, golds


def _nextqa(build: _Builder, task: VideoTask, row: dict, file: str, index: int, _: str
            ) -> tuple[Item, list[Item], int]:
    video = build.video(str(row["video"]), file=file, row=index, field="video")
    options = [str(row[f"a{i}"]) for i in range(5)]
    query, _, _ = qa_options(_qa_query(str(row["question"])), options, row["answer"])
    candidates, golds = _gold_first(options, int(row["answer"]))
    return Item(query, video=video), candidates, golds


def _egoschema(build: _Builder, task: VideoTask, row: dict, file: str, index: int, _: str
               ) -> tuple[Item, list[Item], int]:
    video = build.video(str(row["video_idx"]), file=file, row=index, field="video_idx")
    options = [str(o) for o in row["option"]]
    candidates, golds = _gold_first([_option_text(o) for o in options], int(row["answer"]))
    return Item(_qa_query(str(row["question"]) + " ".join(options)), video=video), candidates, golds


def _mvbench(build: _Builder, task: VideoTask, row: dict, file: str, index: int, config: str
             ) -> tuple[Item, list[Item], int]:
    subset = str(row.get("subset") or config)
    video = build.video(f"{subset}/{row['video']}", file=file, row=index, field="video")
    query, lettered, gold = qa_options(_qa_query(str(row["question"])), [str(c) for c in row["candidates"]],
                                       row["answer"])
    candidates, golds = _gold_first(lettered, gold)
    return Item(query, video=video), candidates, golds


def _activitynetqa(build: _Builder, task: VideoTask, row: dict, file: str, index: int, _: str
                   ) -> tuple[Item, list[Item], int]:
    if row["answer"] not in ("yes", "no"):
        raise DataError(f"answer {row['answer']!r} is neither yes nor no", file=file, row=index, field="answer")
    video = build.video(f"v_{row['video_name']}", file=file, row=index, field="video_name")
    candidates, golds = _gold_first(["yes", "no"], ["yes", "no"].index(row["answer"]))
    return Item(_qa_query(f"{row['question']}? (A) yes; (B) no."), video=video), candidates, golds


LocalReader = Callable[[_Builder, VideoTask, dict, str, int, str], tuple[Item, list[Item], int]]
LOCAL: dict[str, LocalReader] = {"ssv2": _ssv2, "moment": _moment, "momentseeker": _momentseeker,
                                 "videomme": _videomme, "nextqa": _nextqa, "egoschema": _egoschema,
                                 "mvbench": _mvbench, "activitynetqa": _activitynetqa}
REQUIRED: dict[str, tuple[str, ...]] = {
    "ssv2": ("video_id", "pos_text", "neg_text"), "moment": ("query", "video_path"),
    "momentseeker": ("query", "positive_frames", "negative_frames", "input_frames"),
    "videomme": ("question", "videoID", "options", "answer"),
    "nextqa": ("video", "question", "answer", "a0", "a1", "a2", "a3", "a4"),
    "egoschema": ("video_idx", "question", "answer", "option"),
    "mvbench": ("question", "video", "candidates", "answer"),
    "activitynetqa": ("video_name", "question", "answer")}
