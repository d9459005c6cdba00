"""MiniMMEB task builders: eval datasets and train subsets as MMEB-schema column dicts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from cocoa.data.items import IMAGE_PLACEHOLDER as IMG
from cocoa.data.mini_io import ImageStore
from cocoa.data.minipools import COUNT_CATEGORIES, DIGIT_NAMES, FASHION_LABELS, Pools, item_image
from cocoa.data.scenes import Tile, caption, compose, crop, position_names
from cocoa.data.sources import Emoji

CLASSIFY = f"{IMG} Represent the given image for classification.\n"
EMOJI_GROUP = f"{IMG} Represent the given emoji for classification by its group.\n"
EMOJI_SUBGROUP = f"{IMG} Represent the given emoji for classification by its subgroup.\n"
VQA = f"{IMG} Represent the given image with the following question: "
T2I = "Find me an everyday image that matches the given caption: "
I2T = f"{IMG} Find an image caption describing the given everyday image.\n"
EMOJI_T2I = "Find me an emoji that matches the given name: "
EMOJI_I2T = f"{IMG} Find the name of the given emoji.\n"
TARGET_IMAGE = f"{IMG} Represent the given image.\n"
GROUND = f"{IMG} Select the portion of the image that isolates the object labeled as "
TARGET_CROP = f"{IMG} Represent the given cropped image of the object.\n"

Pair = tuple[str, str]  # (text, relative image path or "")


@dataclass
class EvalTable:
    """One eval dataset in MMEB-eval columns, with its meta-task and IND/OOD split."""

    name: str
    meta_task: str
    split: str
    columns: dict[str, list] = field(default_factory=lambda: {
        "qry_text": [], "qry_img_path": [], "tgt_text": [], "tgt_img_path": []})

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
        slug = "-".join(f"{ord(char):x}" for char in emoji.chars)
        return self.store.save(f"emoji/{slug}.png", self.pools.emoji_images[emoji.chars])

    # -- scenes --------------------------------------------------------------------------------
    def scenes(self, split: str, grid: int, count: int, exclude: set[tuple[str, ...]]) -> list[Scene]:
        """``count`` scenes with distinct layouts, none of whose layouts is in ``exclude``."""
        rng = self.rng(2, grid, 0 if split == "train" else 1)
        images, _ = self.pools.fashion_train if split == "train" else self.pools.fashion_eval
        emoji_pool = [e for e in (self.pools.emoji.train if split == "train" else self.pools.emoji.eval)
                      if e.group in ("Animals & Nature", "Food & Drink")]
        seen = set(exclude)
        scenes: list[Scene] = []
        while len(scenes) < count:
            tiles = [self.pools.emoji_tile(emoji_pool[int(rng.integers(len(emoji_pool)))])
                     if rng.random() < 0.3 else self.pools.fashion_tile(split, int(rng.integers(len(images))))
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
        split = "train" if train else "eval"
        rng = self.rng(3, int(train))
        images, labels = self.pools.fashion_train if train else self.pools.fashion_eval
        table = TrainTable("FashionMNIST") if train else EvalTable("FashionMNIST", "classification", "IND")
        for index in rng.choice(len(images), size=min(count, len(images)), replace=False):
            gold = FASHION_LABELS[int(labels[index])]
            query = (CLASSIFY, self.fashion_path(split, int(index)))
            self._add_label_row(table, query, gold, list(FASHION_LABELS), rng)
        return table

    def emoji_classification(self, name: str, emojis: list[Emoji], attribute: str, split: str,
                             count: int, train: bool) -> EvalTable | TrainTable:
        rng = self.rng(4, len(name), int(train))
        instruction = EMOJI_GROUP if attribute == "group" else EMOJI_SUBGROUP
        labels = sorted({getattr(emoji, attribute) for emoji in emojis})
        table = TrainTable(name) if train else EvalTable(name, "classification", split)
        for index in rng.permutation(len(emojis))[:count]:
            emoji = emojis[int(index)]
            self._add_label_row(table, (instruction, self.emoji_path(emoji)), getattr(emoji, attribute), labels, rng)
        return table

    def digits_classification(self, count: int) -> EvalTable:
        rng = self.rng(5)
        images, labels = self.pools.digits
        table = EvalTable("Digits", "classification", "OOD")
        for index in rng.choice(len(images), size=min(count, len(images)), replace=False):
            path = self.store.save(f"digits/{int(index):04d}.png", item_image(images[index]))
            table.add((CLASSIFY, path), [(label, "") for label in
                                         with_gold_first(DIGIT_NAMES[int(labels[index])], list(DIGIT_NAMES))])
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
    def emoji_retrieval(self, name: str, emojis: list[Emoji], split: str, direction: str, count: int,
                        pool: int, train: bool) -> EvalTable | TrainTable:
        rng = self.rng(6, len(name), int(train))
        order = [emojis[int(i)] for i in rng.permutation(len(emojis))]
        pairs = [((EMOJI_T2I + e.name + "\n", ""), (TARGET_IMAGE, self.emoji_path(e))) if direction == "t2i"
                 else ((EMOJI_I2T, self.emoji_path(e)), (e.name, "")) for e in order]
        if train:
            table = TrainTable(name)
            for index, (query, positive) in enumerate(pairs[:count]):
                same = [j for j, other in enumerate(order) if other.subgroup == order[index].subgroup and j != index]
                negative = pairs[same[int(rng.integers(len(same)))] if same else (index + 1) % len(pairs)][1]
                table.add(query, positive, negative)
            return table
        return self._retrieval_eval(EvalTable(name, "retrieval", split), pairs, count, pool)

    def scene_retrieval(self, name: str, scenes: list[Scene], split: str, direction: str, count: int,
                        pool: int, train: bool) -> EvalTable | TrainTable:
        pairs = [((T2I + scene.caption + "\n", ""), (TARGET_IMAGE, scene.path)) if direction == "t2i"
                 else ((I2T, scene.path), (scene.caption, "")) for scene in scenes]
        if train:
            rng = self.rng(7, int(direction == "t2i"))
            table = TrainTable(name)
            for index, (query, positive) in enumerate(pairs[:count]):
                other = (index + 1 + int(rng.integers(len(pairs) - 1))) % len(pairs)
                table.add(query, positive, pairs[other][1])
            return table
        return self._retrieval_eval(EvalTable(name, "retrieval", split), pairs, count, pool)

    @staticmethod
    def _retrieval_eval(table: EvalTable, pairs: list[tuple[Pair, Pair]], count: int, pool: int) -> EvalTable:
        targets = [target for _, target in pairs[:pool]]
        for index, (query, gold) in enumerate(pairs[:count]):
            table.add(query, [gold, *(target for j, target in enumerate(targets) if j != index)][:pool])
        return table

    # -- VQA -----------------------------------------------------------------------------------
    def scene_vqa(self, name: str, scenes: list[Scene], split: str, count: int, train: bool) -> EvalTable | TrainTable:
        rng = self.rng(8, scenes[0].grid, int(train))
        questions = [self._question(scene, rng) for scene in scenes[:count]]
        if train:
            table = TrainTable(name)
            for scene, (question, gold, wrong) in zip(scenes, questions, strict=False):
                table.add((VQA + question + "\n", scene.path), (gold, ""), (wrong, ""))
            return table
        grid = scenes[0].grid
        answers = sorted({label for scene in scenes[:count] for label in scene.labels}
                         | {str(n) for n in range(grid * grid + 1)} | set(position_names(grid)))
        table = EvalTable(name, "vqa", split)
        for scene, (question, gold, _) in zip(scenes, questions, strict=False):
            table.add((VQA + question + "\n", scene.path), [(a, "") for a in with_gold_first(gold, answers)])
        return table

    @staticmethod
    def _question(scene: Scene, rng: np.random.Generator) -> tuple[str, str, str]:
        """(question, answer, a wrong answer of the same kind)."""
        positions = position_names(scene.grid)
        where = "corner" if scene.grid == 2 else "cell"
        counts = Counter(label for label in scene.labels)
        unique = [i for i, label in enumerate(scene.labels) if counts[label] == 1]
        kind = int(rng.integers(3))
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
        category = COUNT_CATEGORIES[int(rng.integers(len(COUNT_CATEGORIES)))]
        number = sum(category in tile.categories for tile in scene.tiles)
        wrong = number + 1 if number == 0 or rng.random() < 0.5 else number - 1
        return f"How many {category} are there?", str(number), str(wrong)

    # -- grounding -----------------------------------------------------------------------------
    def grounding(self, name: str, scenes: list[Scene], split: str, count: int, candidates: int,
                  train: bool) -> EvalTable | TrainTable:
        rng = self.rng(9, scenes[0].grid, int(train))
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
                table.add((GROUND + f'"{scene.labels[index]}"\n', scene.path),
                          (TARGET_CROP, self.crop_path(scene, index)), (TARGET_CROP, self.crop_path(scene, other)))
            return table
        size = len(scenes[0].tiles)
        all_crops = [self.crop_path(scene, i) for scene, _ in chosen for i in range(size)]
        table = EvalTable(name, "grounding", split)
        for row, (scene, index) in enumerate(chosen):
            own = all_crops[row * size:(row + 1) * size]
            others = len(all_crops) - size
            picks = rng.choice(others, size=min(others, max(0, candidates - size)), replace=False)
            distractors = [all_crops[int(i) + size if i >= row * size else int(i)] for i in np.sort(picks)]
            paths = [own[index], *(p for i, p in enumerate(own) if i != index), *distractors]
            table.add((GROUND + f'"{scene.labels[index]}"\n', scene.path), [(TARGET_CROP, p) for p in paths])
        return table
