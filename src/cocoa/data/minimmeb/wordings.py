"""Instruction wordings of MiniMMEB queries: several for training, two held out.

Every query-side instruction of a task has a few training wordings (a train row draws one at
random) and two wordings that no training row uses. Eval queries use the first training
wording (as MMEB's eval sets use the instructions of MMEB-train). The reworded copy of the eval
sets uses the first held-out wording, which brings in a word or three that no training text
contains; the recombined copy uses the second, a new sentence made only of words the training
texts contain. A model trained from scratch has never seen an unseen word's tokens, so the
recombined copy measures whether it learned the task or one phrasing, and the reworded copy
adds unknown words on top. Target-side instructions keep one wording, as in MMEB.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cocoa.data.items import IMAGE_PLACEHOLDER as IMG

#: The eval copies in held-out wordings: folder name -> the :class:`Wordings` field it uses.
HELD_OUT_SETS = {"reworded": "held_out", "recombined": "recombined"}


@dataclass(frozen=True)
class Wordings:
    """The training wordings of one instruction and the two wordings held out for evaluation.

    Each wording is a format string with ``{img}`` for the image placeholder and ``{x}`` for the
    row's own text (a caption, a name, a question, a label), when the task has one.
    ``recombined`` uses only words of the training texts; ``held_out`` need not.
    """

    train: tuple[str, ...]
    held_out: str
    recombined: str

    def pick(self, rng: np.random.Generator) -> str:
        """A training wording, drawn with ``rng``."""
        return self.train[int(rng.integers(len(self.train)))]

    def format(self, wording: str, text: str = "") -> str:
        return wording.format(img=IMG, x=text)

    def for_train(self, rng: np.random.Generator, text: str = "") -> str:
        return self.format(self.pick(rng), text)

    def for_eval(self, text: str = "") -> str:
        """The eval query: the first training wording."""
        return self.format(self.train[0], text)

    def reword(self, query: str, wording: str | None = None) -> str:
        """An eval query (:meth:`for_eval`) in ``wording`` (default: :attr:`held_out`), its own text kept."""
        head, _, tail = self.train[0].format(img=IMG, x="\0").partition("\0")
        if not (query.startswith(head) and query.endswith(tail)):
            raise ValueError(f"not worded as {self.train[0]!r}: {query!r}")
        return self.format(self.held_out if wording is None else wording, query[len(head):len(query) - len(tail)])


CLASSIFY = Wordings(
    ("{img} Represent the given image for classification.\n",
     "{img} Classify the given image.\n",
     "{img} Which category does the given image belong to?\n",
     "{img} Represent the image by its category.\n"),
    "{img} What kind of object is shown in this image?\n",
    "{img} Find the category of this image.\n")
EMOJI_GROUP = Wordings(
    ("{img} Represent the given emoji for classification by its group.\n",
     "{img} Classify the given emoji by its group.\n",
     "{img} Which group does the given emoji belong to?\n"),
    "{img} Name the group of this emoji.\n",
    "{img} Find the group of this emoji.\n")
EMOJI_SUBGROUP = Wordings(
    ("{img} Represent the given emoji for classification by its subgroup.\n",
     "{img} Classify the given emoji by its subgroup.\n",
     "{img} Which subgroup does the given emoji belong to?\n"),
    "{img} Name the subgroup of this emoji.\n",
    "{img} Find the subgroup of this emoji.\n")
VQA = Wordings(
    ("{img} Represent the given image with the following question: {x}\n",
     "{img} Answer the question about the image: {x}\n",
     "{img} Look at the image and answer: {x}\n"),
    "{img} Given this picture, respond to the question: {x}\n",
    "{img} Look at this image and answer the question: {x}\n")
SCENE_T2I = Wordings(
    ("Find me an everyday image that matches the given caption: {x}\n",
     "Retrieve the image described by this caption: {x}\n",
     "Which picture fits this description? {x}\n"),
    "Search for the image that this text describes: {x}\n",
    "Find the picture described by the given caption: {x}\n")
SCENE_I2T = Wordings(
    ("{img} Find an image caption describing the given everyday image.\n",
     "{img} Describe the given image with a caption.\n",
     "{img} Retrieve a caption for this image.\n"),
    "{img} Write the caption that fits this picture.\n",
    "{img} Find a caption that fits this picture.\n")
GROUND = Wordings(
    ('{img} Select the portion of the image that isolates the object labeled as "{x}"\n',
     '{img} Crop the image to the object labeled as "{x}"\n',
     '{img} Find the region of the image showing the "{x}"\n'),
    '{img} Point to the part of the picture that contains the "{x}"\n',
    '{img} Select the region of the image that is showing the object labeled as "{x}"\n')

#: Target-side instructions (one wording each, as in MMEB).
TARGET_IMAGE = f"{IMG} Represent the given image.\n"
TARGET_CROP = f"{IMG} Represent the given cropped image of the object.\n"
