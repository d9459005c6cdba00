"""MiniMMEB video sets: clips of one tinted Fashion-MNIST item that appears, disappears, moves or changes colour.

A clip is :data:`FRAMES` frames of a 2x2 (IND) or 3x3 (OOD) canvas: the first half shows one
state, the second half another. Every clip is saved as a frame folder (the MMEB-V2 layout); the
queries of ``Grid3x3VideoEvent`` are ``.mp4`` files written with PyAV beside their folders, so the
decoder is measured too.

Motion queries need time, not pixels: a clip's reverse (played backwards: the item moves back,
disappears instead of appearing, changes colour the other way) shows exactly the same frames in
the other order, and the builder checks that every motion query has its reverse's answer among
its candidates, with the same frames (:func:`check_reverse`): no single frame, nor the set of
frames, can tell the gold from it.

Sets (name, meta-task, split): ``VideoEvent`` (classification: what happens), ``VideoT2V`` and
``VideoV2T`` (retrieval between clips and their captions: the gold, its reverse and 48 more),
``VideoMoment`` (moment retrieval: which of four segments of a long clip shows the event a
caption names), ``VideoQA`` (which way the item moves, or whether it appears or disappears),
and the OOD ``Grid3x3VideoEvent`` and ``Grid3x3VideoT2V`` on the larger canvas. Training subsets
hold clips of training items only, with the reverse as the hard negative.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace

import numpy as np
from PIL import Image

from cocoa.core.errors import DataError
from cocoa.data.items import VIDEO_PLACEHOLDER
from cocoa.data.minimmeb.pools import COLOURS, FASHION_LABELS, Pools, item_image, tint
from cocoa.data.minimmeb.scenes import TILE, position_names, with_article
from cocoa.data.minimmeb.store import ImageStore
from cocoa.data.videos import write_video

#: Frames per clip (the video policy's default samples all of them).
FRAMES = 8
#: Frames of each of a moment clip's four segments.
SEGMENT_FRAMES = 4
#: Candidates per retrieval query: the gold, its reverse and clips (or captions) drawn from the set.
RETRIEVAL_POOL = 50
KINDS = ("appear", "disappear", "move", "recolour")
V = VIDEO_PLACEHOLDER
EVENT_QUERY = f"{V} What happens in the video?"
VIDEO_TARGET = f"{V} Understand the content of the provided video."
T2V_QUERY = "Find a video that shows: {}"
MOMENT_QUERY = f"{V} Find the clip in which {{}}"
QA_DIRECTION = f"{V} In which direction does the {{}} move?"
QA_PRESENCE = f"{V} Does the {{}} appear or disappear?"
DIRECTIONS = ("right", "left", "down", "up")


@dataclass(frozen=True)
class Clip:
    """One event: ``kind`` of the item (Fashion-MNIST ``index`` of ``split``) between cells and colours."""

    kind: str
    grid: int
    split: str
    index: int
    label: str
    cells: tuple[int, int]
    colours: tuple[str, str]

    def reverse(self) -> Clip:
        """The clip played backwards."""
        kind = {"appear": "disappear", "disappear": "appear"}.get(self.kind, self.kind)
        return replace(self, kind=kind, cells=self.cells[::-1], colours=self.colours[::-1])

    @property
    def item(self) -> str:
        return f"{self.colours[0]} {self.label}" if self.kind != "recolour" else self.label

    def caption(self) -> str:
        """What happens, naming the item, the cells and the colours."""
        names = position_names(self.grid)
        start, end = (names[c] for c in self.cells)
        if self.kind == "appear":
            return f"{with_article(self.item)} appears in the {start}."
        if self.kind == "disappear":
            return f"{with_article(self.item)} disappears from the {start}."
        if self.kind == "move":
            return f"{with_article(self.item)} moves from the {start} to the {end}."
        return f"{with_article(self.label)} in the {start} turns from {self.colours[0]} to {self.colours[1]}."

    def event(self) -> str:
        """The event class (what ``VideoEvent`` asks for)."""
        if self.kind == "move":
            return f"an item moves {self.direction()}"
        return {"appear": "an item appears", "disappear": "an item disappears",
                "recolour": "an item changes colour"}[self.kind]

    def direction(self) -> str:
        (r0, c0), (r1, c1) = (divmod(c, self.grid) for c in self.cells)
        return "right" if c1 > c0 else "left" if c1 < c0 else "down" if r1 > r0 else "up"

    def states(self, pools: Pools) -> tuple[Image.Image, Image.Image]:
        """The canvas before and after."""
        images, _ = pools.fashion_train if self.split == "train" else pools.fashion_eval
        grey = item_image(images[self.index])

        def canvas(cell: int | None, colour: str) -> Image.Image:
            image = Image.new("RGB", (TILE * self.grid, TILE * self.grid), "white")
            if cell is not None:
                image.paste(tint(grey, COLOURS[colour]), ((cell % self.grid) * TILE, (cell // self.grid) * TILE))
            return image

        first = None if self.kind == "appear" else self.cells[0]
        last = None if self.kind == "disappear" else self.cells[1]
        return canvas(first, self.colours[0]), canvas(last, self.colours[1])

    def frames(self, pools: Pools, count: int = FRAMES) -> list[Image.Image]:
        before, after = self.states(pools)
        return [before] * (count // 2) + [after] * (count - count // 2)


@dataclass
class VideoStore:
    """Writes clips as frame folders (and ``.mp4`` files) under the image store; each clip once."""

    images: ImageStore
    pools: Pools
    _saved: dict[str, list[str]] = field(default_factory=dict)

    def save(self, relative: str, frames: list[Image.Image]) -> str:
        """``relative`` as a folder of ``frame_<i>.png``; returns the folder."""
        if relative not in self._saved:
            self._saved[relative] = [frame_hash(f) for f in frames]
            for i, frame in enumerate(frames):
                self.images.save(f"{relative}/frame_{i + 1}.png", frame)
        return relative

    def clip(self, clip: Clip, mp4: bool = False) -> str:
        """The clip's frame folder, or with ``mp4`` its ``.mp4`` file (written beside the folder)."""
        frames = clip.frames(self.pools)
        folder = self.save(f"videos/{clip.split}{clip.grid}x{clip.grid}/{clip.kind}-{clip.index}-"
                           f"{clip.cells[0]}{clip.cells[1]}-{clip.colours[0]}-{clip.colours[1]}", frames)
        if not mp4:
            return folder
        write_video(self.images.root / f"{folder}.mp4", [np.asarray(f) for f in frames])
        return f"{folder}.mp4"

    def frames_of(self, relative: str) -> list[str]:
        return self._saved[relative]


def frame_hash(image: Image.Image) -> str:
    return hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()


def check_reverse(store: VideoStore, gold: str, other: str, what: str) -> None:
    """:class:`DataError` unless clips ``gold`` and ``other`` differ but hold the same frames (as a multiset)."""
    a, b = store.frames_of(gold), store.frames_of(other)
    if a == b or sorted(a) != sorted(b):
        raise DataError(f"{what}: the reverse clip {other} does not hold the frames of {gold} in another order")


def make_clips(pools: Pools, split: str, grid: int, count: int, rng: np.random.Generator,
               exclude: frozenset[str] = frozenset()) -> list[Clip]:
    """``count`` clips of ``split`` items with distinct captions, the four kinds in turn while each has
    captions left; moves go to a neighbouring cell. No clip, nor its reverse, has a caption in ``exclude``."""
    images, labels = pools.fashion_train if split == "train" else pools.fashion_eval
    colours = list(COLOURS)
    clips: list[Clip] = []
    seen = set(exclude)
    misses = dict.fromkeys(KINDS, 0)
    turn = 0
    while len(clips) < count:
        open_kinds = [k for k in KINDS if misses[k] < MAX_MISSES]
        if not open_kinds:
            raise DataError(f"cannot make {count} {grid}x{grid} clips with distinct captions (made {len(clips)})")
        kind = open_kinds[turn % len(open_kinds)]
        index = int(rng.integers(len(images)))
        start = int(rng.integers(grid * grid))
        row, col = divmod(start, grid)
        neighbours = [r * grid + c for r, c in ((row, col + 1), (row, col - 1), (row + 1, col), (row - 1, col))
                      if 0 <= r < grid and 0 <= c < grid]
        end = neighbours[int(rng.integers(len(neighbours)))] if kind == "move" else start
        first, second = rng.choice(len(colours), size=2, replace=False)
        pair = (colours[int(first)], colours[int(second) if kind == "recolour" else int(first)])
        clip = Clip(kind, grid, split, index, FASHION_LABELS[int(labels[index])], (start, end), pair)
        if clip.caption() in seen or clip.reverse().caption() in seen:
            misses[kind] += 1
            continue
        seen.update((clip.caption(), clip.reverse().caption()))
        clips.append(clip)
        misses[kind] = 0
        turn += 1
    return clips


#: Draws in a row that find no new caption of a kind before that kind counts as used up.
MAX_MISSES = 500


EVAL_COLUMNS = ("qry_text", "qry_img_path", "qry_video_path", "tgt_text", "tgt_img_path", "tgt_video_path")
TRAIN_COLUMNS = ("qry", "qry_image_path", "qry_video_path", "pos_text", "pos_image_path", "pos_video_path",
                 "neg_text", "neg_image_path", "neg_video_path")
Side = tuple[str, str]  # (text, video folder or "")


@dataclass
class VideoEvalTable:
    """One video eval set in MMEB-eval columns with video paths."""

    name: str
    meta_task: str
    split: str
    columns: dict[str, list] = field(default_factory=lambda: {c: [] for c in EVAL_COLUMNS})

    def add(self, query: Side, candidates: list[Side]) -> None:
        self.columns["qry_text"].append(query[0])
        self.columns["qry_img_path"].append("")
        self.columns["qry_video_path"].append(query[1])
        self.columns["tgt_text"].append([text for text, _ in candidates])
        self.columns["tgt_img_path"].append([""] * len(candidates))
        self.columns["tgt_video_path"].append([video for _, video in candidates])


@dataclass
class VideoTrainTable:
    """One video train subset in MMEB-train columns with video paths (hard negative: the reverse)."""

    name: str
    columns: dict[str, list] = field(default_factory=lambda: {c: [] for c in TRAIN_COLUMNS})

    def add(self, query: Side, positive: Side, negative: Side) -> None:
        for prefix, (text, video) in (("qry", query), ("pos", positive), ("neg", negative)):
            self.columns["qry" if prefix == "qry" else f"{prefix}_text"].append(text)
            self.columns[f"{prefix}_image_path"].append("")
            self.columns[f"{prefix}_video_path"].append(video)


class VideoTaskBuilder:
    """Fills the video eval sets and train subsets."""

    def __init__(self, pools: Pools, images: ImageStore, seed: int) -> None:
        self.pools, self.seed = pools, seed
        self.store = VideoStore(images, pools)

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 90, *key])

    def clips(self, split: str, grid: int, count: int, exclude: frozenset[str] = frozenset()) -> list[Clip]:
        return make_clips(self.pools, split, grid, count, self.rng(grid, int(split == "train")), exclude)

    def event(self, name: str, clips: list[Clip], split: str, train: bool,
              mp4: bool = False) -> VideoEvalTable | VideoTrainTable:
        """Clip -> what happens; the reverse's event is always a candidate (or the hard negative)."""
        events = sorted({c.event() for c in clips} | {c.reverse().event() for c in clips})
        table = VideoTrainTable(name) if train else VideoEvalTable(name, "video_classification", split)
        for clip in clips:
            query = (EVENT_QUERY, self.store.clip(clip, mp4))
            wrong = clip.reverse().event()
            if isinstance(table, VideoTrainTable):
                if wrong == clip.event():
                    wrong = next(e for e in events if e != clip.event())
                table.add(query, (clip.event(), ""), (wrong, ""))
            else:
                table.add(query, [(clip.event(), "")] + [(e, "") for e in events if e != clip.event()])
        return table

    def retrieval(self, name: str, clips: list[Clip], split: str, direction: str,
                  train: bool) -> VideoEvalTable | VideoTrainTable:
        """Caption -> clip (``t2v``) or clip -> caption (``v2t``) against the gold, its reverse and
        :data:`RETRIEVAL_POOL` - 2 other clips of the set (or their captions)."""
        everything = list(dict.fromkeys([*clips, *(c.reverse() for c in clips)]))
        videos = {c: self.store.clip(c) for c in everything}
        table = VideoTrainTable(name) if train else VideoEvalTable(name, "video_retrieval", split)
        rng = self.rng(len(name), int(train))
        for clip in clips:
            pair = (clip, clip.reverse())
            others = [c for c in everything if c not in pair]
            others = [others[int(i)] for i in rng.choice(len(others), size=min(RETRIEVAL_POOL - 2, len(others)),
                                                         replace=False)]
            gold, back = videos[clip], videos[clip.reverse()]
            check_reverse(self.store, gold, back, f"{name} {clip.caption()}")
            if direction == "t2v":
                query = (T2V_QUERY.format(clip.caption()), "")
                sides = [(VIDEO_TARGET, videos[c]) for c in [clip, clip.reverse()]]
                rest = [(VIDEO_TARGET, videos[c]) for c in others]
            else:
                query = (VIDEO_TARGET, gold)
                sides = [(clip.caption(), ""), (clip.reverse().caption(), "")]
                rest = [(c.caption(), "") for c in others]
            if isinstance(table, VideoTrainTable):
                table.add(query, sides[0], sides[1])
            else:
                table.add(query, sides + rest)
        return table

    def moment(self, name: str, clips: list[Clip], split: str, train: bool) -> VideoEvalTable | VideoTrainTable:
        """A long clip of four segments (four events) -> the segment a caption names (hard negative: the
        next segment)."""
        table = VideoTrainTable(name) if train else VideoEvalTable(name, "moment_retrieval", split)
        for start in range(0, len(clips) - 3, 4):
            group = clips[start:start + 4]
            segments = [c.frames(self.pools, SEGMENT_FRAMES) for c in group]
            folder = f"videos/moment/{group[0].split}{group[0].grid}x{group[0].grid}-{start}"
            whole = self.store.save(f"{folder}/query", [f for s in segments for f in s])
            parts = [self.store.save(f"{folder}/segment_{i}", s) for i, s in enumerate(segments)]
            for target, clip in enumerate(group):
                query = (MOMENT_QUERY.format(clip.caption()[0].lower() + clip.caption()[1:]), whole)
                if isinstance(table, VideoTrainTable):
                    table.add(query, (VIDEO_TARGET, parts[target]), (VIDEO_TARGET, parts[(target + 1) % 4]))
                else:
                    table.add(query, [(VIDEO_TARGET, parts[target])] + [(VIDEO_TARGET, p) for i, p in enumerate(parts)
                                                                        if i != target])
        return table

    def qa(self, name: str, clips: list[Clip], split: str, train: bool) -> VideoEvalTable | VideoTrainTable:
        """Which way the item moves (move clips), or whether it appears or disappears; the reverse's answer
        is always among the options."""
        table = VideoTrainTable(name) if train else VideoEvalTable(name, "video_qa", split)
        for clip in clips:
            if clip.kind == "recolour":
                continue
            video = self.store.clip(clip)
            if clip.kind == "move":
                query, gold = QA_DIRECTION.format(clip.item), clip.direction()
                options = [gold] + [d for d in DIRECTIONS if d != gold]
                wrong = clip.reverse().direction()
            else:
                query, gold = QA_PRESENCE.format(clip.item), f"it {clip.kind}s"
                options = [gold, f"it {clip.reverse().kind}s"]
                wrong = options[1]
            if isinstance(table, VideoTrainTable):
                table.add((query, video), (gold, ""), (wrong, ""))
            else:
                table.add((query, video), [(o, "") for o in options])
        return table


def video_tables(builder: VideoTaskBuilder, queries: int, train_size: int
                 ) -> tuple[list[VideoEvalTable], list[VideoTrainTable], dict[str, list]]:
    """The video eval sets, train subsets and stage-1 video captions."""
    ind, ood = builder.clips("eval", 2, queries), builder.clips("eval", 3, queries)
    held_out = frozenset(c.caption() for clip in (*ind, *ood) for c in (clip, clip.reverse()))
    train = builder.clips("train", 2, train_size, held_out)  # no eval caption is a training text
    evals = [builder.event("VideoEvent", ind, "IND", False), builder.retrieval("VideoT2V", ind, "IND", "t2v", False),
             builder.retrieval("VideoV2T", ind, "IND", "v2t", False), builder.moment("VideoMoment", ind, "IND", False),
             builder.qa("VideoQA", ind, "IND", False),
             builder.event("Grid3x3VideoEvent", ood, "OOD", False, mp4=True),
             builder.retrieval("Grid3x3VideoT2V", ood, "OOD", "t2v", False)]
    trains = [builder.event("VideoEvent", train, "IND", True), builder.retrieval("VideoT2V", train, "IND", "t2v", True),
              builder.retrieval("VideoV2T", train, "IND", "v2t", True), builder.qa("VideoQA", train, "IND", True),
              builder.moment("VideoMoment", train, "IND", True)]
    captions = {"image_path": [""] * len(train), "video_path": [builder.store.clip(c) for c in train],
                "caption": [c.caption() for c in train]}
    return evals, trains, captions
