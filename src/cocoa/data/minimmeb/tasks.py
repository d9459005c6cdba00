"""MiniMMEB task builders: eval datasets and train subsets as MMEB-schema column dicts.

Train rows word their instruction with one of the task's training wordings, eval queries with
the wording held out from training (:mod:`cocoa.data.minimmeb.wordings`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from cocoa.data.minimmeb import wordings as w
from cocoa.data.minimmeb.pools import (
    COLOURS,
    COUNT_CATEGORIES,
    FASHION_LABELS,
    Pools,
)
from cocoa.data.minimmeb.scenes import Tile, caption, compose, crop, position_names, with_article
from cocoa.data.minimmeb.sources import Emoji
from cocoa.data.minimmeb.store import ImageStore

Pair = tuple[str, str]  # (text, relative image path or "")


@dataclass
class EvalTable:
    """One eval dataset in MMEB-eval columns, with its meta-task, IND/OOD split and query wording."""

    name: str
    meta_task: str
    split: str
    wording: w.Wordings
    columns: dict[str, list] = field(default_factory=lambda: {
        "qry_text": [], "qry_img_path": [], "tgt_text": [], "tgt_img_path": []})

    def reworded(self, wording: str | None = None) -> EvalTable:
        """The same dataset with every query in ``wording`` (default: the first held-out one)."""
        columns = {**self.columns,
                   "qry_text": [self.wording.reword(text, wording) for text in self.columns["qry_text"]]}
        return EvalTable(self.name, self.meta_task, self.split, self.wording, columns)

    def add(self, query: Pair, candidates: list[Pair]) -> None:
        self.columns["qry_text"].append(query[0])
        self.columns["qry_img_path"].append(query[1])
        self.columns["tgt_text"].append([text for text, _ in candidates])
        self.columns["tgt_img_path"].append([image for _, image in candidates])


@dataclass
class TrainTable:
    """One train subset in MMEB-train columns (with hard negatives)."""

    name: str
    columns: dict[str, list] = field(default_factory=lambda: {
        "qry": [], "qry_image_path": [], "pos_text": [], "pos_image_path": [],
        "neg_text": [], "neg_image_path": []})

    def add(self, query: Pair, positive: Pair, negative: Pair) -> None:
        for prefix, (text, image) in (("qry", query), ("pos", positive), ("neg", negative)):
            self.columns["qry" if prefix == "qry" else f"{prefix}_text"].append(text)
            self.columns[f"{prefix}_image_path"].append(image)


def with_gold_first(gold: str, options: list[str]) -> list[str]:
    return [gold, *(option for option in options if option != gold)]


@dataclass
class Scene:
    grid: int
    tiles: list[Tile]
    path: str
    caption: str
    image: Image.Image

    @property
    def labels(self) -> list[str]:
        return [tile.label for tile in self.tiles]


class TaskBuilder:
    """Writes images through ``store`` and fills eval/train tables."""

    def __init__(self, pools: Pools, store: ImageStore, seed: int) -> None:
        self.pools, self.store, self.seed = pools, store, seed

    def rng(self, *key: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *key])

    # -- single images -------------------------------------------------------------------------
    def fashion_path(self, split: str, index: int) -> str:
        tile = self.pools.fashion_tile(split, index)
        return self.store.save(f"fashion/{split}/{index:05d}.png", tile.image)

    def emoji_path(self, emoji: Emoji) -> str:
        return self.store.save(f"emoji/{_slug(emoji)}.png", self.pools.emoji_images[emoji.chars])

    # -- scenes --------------------------------------------------------------------------------
    def scenes(self, split: str, grid: int, count: int, exclude: set[tuple[str, ...]]) -> list[Scene]:
        """``count`` scenes of tinted items with distinct layouts, none of whose layouts is in ``exclude``."""
        rng = self.rng(2, grid, 0 if split == "train" else 1)
        images, _ = self.pools.fashion_train if split == "train" else self.pools.fashion_eval
        colours = list(COLOURS)
        seen = set(exclude)
        scenes: list[Scene] = []
        while len(scenes) < count:
            tiles = [self.pools.fashion_tile(split, int(rng.integers(len(images))),
                                             colours[int(rng.integers(len(colours)))])
                     for _ in range(grid * grid)]
            layout = tuple(tile.label for tile in tiles)
            if layout in seen:
                continue
            seen.add(layout)
            image = compose(tiles, grid)
            path = self.store.save(f"scenes/{split}{grid}x{grid}/{len(scenes):05d}.png", image)
            scenes.append(Scene(grid, tiles, path, caption(list(layout), grid), image))
        return scenes

    def crop_path(self, scene: Scene, index: int) -> str:
        relative = scene.path.replace("scenes/", "crops/").replace(".png", f"_{index}.png")
        if not self.store.has(relative):
            self.store.save(relative, crop(scene.image, index, scene.grid))
        return relative

    # -- classification ------------------------------------------------------------------------
    def fashion_classification(self, count: int, train: bool) -> EvalTable | TrainTable:
        """Fashion-MNIST items (grey) -> their label."""
        split = "train" if train else "eval"
        rng, words = self.rng(3, int(train)), self.rng(20, 3)
        images, labels = self.pools.fashion_train if train else self.pools.fashion_eval
        table = TrainTable("FashionMNIST") if train else EvalTable("FashionMNIST", "classification", "IND", w.CLASSIFY)
        for index in rng.choice(len(images), size=min(count, len(images)), replace=False):
            gold = FASHION_LABELS[int(labels[index])]
            instruction = w.CLASSIFY.for_train(words) if train else w.CLASSIFY.for_eval()
            self._add_label_row(table, (instruction, self.fashion_path(split, int(index))), gold,
                                list(FASHION_LABELS), rng)
        return table

    def tinted_fashion_classification(self, count: int) -> EvalTable:
        """OOD: eval items tinted in a random colour (classification training sees grey items only)."""
        rng = self.rng(5)
        images, labels = self.pools.fashion_eval
        colours = list(COLOURS)
        table = EvalTable("FashionTinted", "classification", "OOD", w.CLASSIFY)
        for index in rng.choice(len(images), size=min(count, len(images)), replace=False):
            tile = self.pools.fashion_tile("eval", int(index), colours[int(rng.integers(len(colours)))])
            path = self.store.save(f"fashion/tinted/{int(index):05d}.png", tile.image)
            gold = FASHION_LABELS[int(labels[index])]
            table.add((w.CLASSIFY.for_eval(), path), [(label, "") for label in with_gold_first(gold, list(FASHION_LABELS))])
        return table

    def emoji_classification(self, name: str, emojis: list[Emoji], attribute: str, split: str,
                             count: int, train: bool, labels: list[str] | None = None) -> EvalTable | TrainTable:
        """Emoji -> its group or subgroup; candidates are ``labels`` (default: those of ``emojis``)."""
        rng, words = self.rng(4, len(name), int(train)), self.rng(20, 4, len(name))
        wording = w.EMOJI_GROUP if attribute == "group" else w.EMOJI_SUBGROUP
        labels = labels or sorted({getattr(emoji, attribute) for emoji in emojis})
        table = TrainTable(name) if train else EvalTable(name, "classification", split, wording)
        for index in rng.permutation(len(emojis))[:count]:
            emoji = emojis[int(index)]
            instruction = wording.for_train(words) if train else wording.for_eval()
            self._add_label_row(table, (instruction, self.emoji_path(emoji)), getattr(emoji, attribute), labels, rng)
        return table

    @staticmethod
    def _add_label_row(table: EvalTable | TrainTable, query: Pair, gold: str, labels: list[str],
                       rng: np.random.Generator) -> None:
        if isinstance(table, EvalTable):
            table.add(query, [(label, "") for label in with_gold_first(gold, labels)])
        else:
            wrong = [label for label in labels if label != gold]
            table.add(query, (gold, ""), (wrong[int(rng.integers(len(wrong)))], ""))

    # -- retrieval -----------------------------------------------------------------------------
    def item_retrieval(self, name: str, count: int, train: bool) -> EvalTable | TrainTable:
        """One tinted item -> its caption ("a red sneaker").

        Eval candidates are the captions of every (colour, label), gold first. Train negatives share
        the colour or the label with the positive.
        """
        split = "train" if train else "eval"
        rng, words = self.rng(6, int(train)), self.rng(20, 6)
        images, _ = self.pools.fashion_train if train else self.pools.fashion_eval
        colours = list(COLOURS)
        captions = [with_article(f"{colour} {label}") for colour in colours for label in FASHION_LABELS]
        table = TrainTable(name) if train else EvalTable(name, "retrieval", "IND", w.SCENE_I2T)
        for index in rng.choice(len(images), size=min(count, len(images)), replace=False):
            tile = self.pools.fashion_tile(split, int(index), colours[int(rng.integers(len(colours)))])
            path = self.store.save(f"items/{split}/{int(index):05d}.png", tile.image)
            gold = with_article(tile.label)
            if not train:
                table.add((w.SCENE_I2T.for_eval(), path), [(text, "") for text in with_gold_first(gold, captions)])
                continue
            colour, label = tile.label.split(" ", 1)
            if rng.random() < 0.5:
                colour = [c for c in colours if c != colour][int(rng.integers(len(colours) - 1))]
            else:
                label = [x for x in FASHION_LABELS if x != label][int(rng.integers(len(FASHION_LABELS) - 1))]
            table.add((w.SCENE_I2T.for_train(words), path), (gold, ""), (with_article(f"{colour} {label}"), ""))
        return table

    def scene_retrieval(self, name: str, scenes: list[Scene], split: str, direction: str, count: int,
                        pool: int, train: bool) -> EvalTable | TrainTable:
        words = self.rng(20, 7, int(direction == "t2i"), scenes[0].grid)
        pairs = []
        for scene in scenes:
            if direction == "t2i":
                text = w.SCENE_T2I.for_train(words, scene.caption) if train else w.SCENE_T2I.for_eval(scene.caption)
                pairs.append(((text, ""), (w.TARGET_IMAGE, scene.path)))
            else:
                text = w.SCENE_I2T.for_train(words) if train else w.SCENE_I2T.for_eval()
                pairs.append(((text, scene.path), (scene.caption, "")))
        if train:
            rng = self.rng(7, int(direction == "t2i"))
            table = TrainTable(name)
            for index, (query, positive) in enumerate(pairs[:count]):
                other = (index + 1 + int(rng.integers(len(pairs) - 1))) % len(pairs)
                table.add(query, positive, pairs[other][1])
            return table
        wording = w.SCENE_T2I if direction == "t2i" else w.SCENE_I2T
        return self._retrieval_eval(EvalTable(name, "retrieval", split, wording), pairs, count, pool)

    @staticmethod
    def _retrieval_eval(table: EvalTable, pairs: list[tuple[Pair, Pair]], count: int, pool: int) -> EvalTable:
        targets = [target for _, target in pairs[:pool]]
        for index, (query, gold) in enumerate(pairs[:count]):
            table.add(query, [gold, *(target for j, target in enumerate(targets) if j != index)][:pool])
        return table

    # -- VQA -----------------------------------------------------------------------------------
    def scene_vqa(self, name: str, scenes: list[Scene], split: str, count: int, train: bool) -> EvalTable | TrainTable:
        rng, words = self.rng(8, scenes[0].grid, int(train)), self.rng(20, 8, scenes[0].grid)
        questions = [self._question(scene, rng) for scene in scenes[:count]]
        if train:
            table = TrainTable(name)
            for scene, (question, gold, wrong) in zip(scenes, questions, strict=False):
                table.add((w.VQA.for_train(words, question), scene.path), (gold, ""), (wrong, ""))
            return table
        grid = scenes[0].grid
        answers = sorted({label for scene in scenes[:count] for label in scene.labels}
                         | {str(n) for n in range(grid * grid + 1)} | set(position_names(grid)) | set(COLOURS))
        table = EvalTable(name, "vqa", split, w.VQA)
        for scene, (question, gold, _) in zip(scenes, questions, strict=False):
            table.add((w.VQA.for_eval(question), scene.path), [(a, "") for a in with_gold_first(gold, answers)])
        return table

    @staticmethod
    def _question(scene: Scene, rng: np.random.Generator) -> tuple[str, str, str]:
        """(question, answer, a wrong answer of the same kind)."""
        positions = position_names(scene.grid)
        where = "corner" if scene.grid == 2 else "cell"
        counts = Counter(label for label in scene.labels)
        unique = [i for i, label in enumerate(scene.labels) if counts[label] == 1]
        kind = int(rng.integers(4))
        if kind == 0:
            index = int(rng.integers(len(positions)))
            gold = scene.labels[index]
            others = sorted({label for label in scene.labels if label != gold}) or [
                label for label in FASHION_LABELS if label != gold]
            wrong = others[int(rng.integers(len(others)))]
            return f"What is in the {positions[index]} {where}?", gold, wrong
        if kind == 1 and unique:
            index = unique[int(rng.integers(len(unique)))]
            wrong = positions[(index + 1 + int(rng.integers(len(positions) - 1))) % len(positions)]
            return f"Where is the {scene.labels[index]}?", positions[index], wrong
        if kind == 3:
            index = int(rng.integers(len(positions)))
            gold = scene.labels[index].split(" ", 1)[0]
            wrong = [colour for colour in COLOURS if colour != gold][int(rng.integers(len(COLOURS) - 1))]
            return f"What colour is the item in the {positions[index]} {where}?", gold, wrong
        category = COUNT_CATEGORIES[int(rng.integers(len(COUNT_CATEGORIES)))]
        number = sum(category in tile.categories for tile in scene.tiles)
        wrong = number + 1 if number == 0 or rng.random() < 0.5 else number - 1
        return f"How many {category} are there?", str(number), str(wrong)

    # -- grounding -----------------------------------------------------------------------------
    def grounding(self, name: str, scenes: list[Scene], split: str, count: int, candidates: int,
                  train: bool) -> EvalTable | TrainTable:
        """Scene + a label that is unique in it -> the crop of that item.

        Eval distractors are the scene's other crops, then crops of other scenes showing a
        different item, so the gold is the only candidate that matches the label.
        """
        rng, words = self.rng(9, scenes[0].grid, int(train)), self.rng(20, 9, scenes[0].grid)
        chosen = []
        for scene in scenes[:count]:
            counts = Counter(scene.labels)
            unique = [i for i, label in enumerate(scene.labels) if counts[label] == 1]
            if unique:
                chosen.append((scene, unique[int(rng.integers(len(unique)))]))
        if train:
            table = TrainTable(name)
            for scene, index in chosen:
                other = (index + 1 + int(rng.integers(len(scene.tiles) - 1))) % len(scene.tiles)
                table.add((w.GROUND.for_train(words, scene.labels[index]), scene.path),
                          (w.TARGET_CROP, self.crop_path(scene, index)),
                          (w.TARGET_CROP, self.crop_path(scene, other)))
            return table
        size = len(scenes[0].tiles)
        all_crops = [(self.crop_path(scene, i), scene.labels[i]) for scene, _ in chosen for i in range(size)]
        table = EvalTable(name, "grounding", split, w.GROUND)
        for row, (scene, index) in enumerate(chosen):
            own = [path for path, _ in all_crops[row * size:(row + 1) * size]]
            label = scene.labels[index]
            others = [path for j, (path, other) in enumerate(all_crops)
                      if other != label and not row * size <= j < (row + 1) * size]
            picks = rng.choice(len(others), size=min(len(others), max(0, candidates - size)), replace=False)
            distractors = [others[int(i)] for i in np.sort(picks)]
            paths = [own[index], *(p for i, p in enumerate(own) if i != index), *distractors]
            table.add((w.GROUND.for_eval(label), scene.path), [(w.TARGET_CROP, p) for p in paths])
        return table


def _slug(emoji: Emoji) -> str:
    return "-".join(f"{ord(char):x}" for char in emoji.chars)
