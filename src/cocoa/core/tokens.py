"""What a token position is: its role in a sequence, its modality, and the label that tells a loss to skip it."""

from __future__ import annotations

from enum import IntEnum

#: The label of positions no loss is computed on (the convention of ``torch.nn.functional.cross_entropy``).
IGNORE_INDEX = -100


class Role(IntEnum):
    """What a position is: padding, block A (the query), the embedding token (stage 2's bridge), or block B."""

    PAD = 0
    QUERY = 1
    EMBEDDING = 2
    TARGET = 3


class Modality(IntEnum):
    """What a position holds, as the upstream ``mm_token_type_ids`` count it: text, an image or a video token."""

    TEXT = 0
    IMAGE = 1
    VIDEO = 2
