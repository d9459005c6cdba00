"""Packed rows: a batch's sequences share rows, so the language model computes no padding.

The padded batch's real tokens (padded on either side), their M-RoPE positions, roles and image
slots move into rows of at most ``pack_tokens`` tokens, several sequences a row (best-fit
decreasing, so short text sequences fill the rows that long image sequences leave). A segment
mask keeps each sequence to itself and each attention mode holds inside its segment
(:func:`cocoa.model.attention.allowed`), and positions are each sequence's own, so every state
equals the padded batch's up to float rounding. The vision tower runs once per batch as before;
its features are scattered before packing, and DeepStack features follow their slots' new order.

:class:`Packing` owns the setting ``pack_tokens`` (``None``: pad) and chooses the path.
:meth:`Packing.hidden_states` returns the states in the padded layout, so every objective (MNTP
labels, MAE patches, EOS pooling, hard negatives) reads them as it reads padded ones;
:meth:`Packing.embed` gathers only the pooled states (stage 3, evaluation, ``cocoa encode``, the
server).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cocoa.core.batch import Batch
from cocoa.core.packing import check_pack_tokens
from cocoa.core.protocol import Positions, Protocol
from cocoa.core.tokens import Role
from cocoa.model.attention import AttentionMode, additive_mask
from cocoa.model.forward import (
    ImageFeatures,
    ImageTransform,
    deepstack_kwargs,
    embed_padded,
    hidden_states,
    input_embeddings,
    position_ids,
    vl_model,
)


def _best_fit_rows(lengths: list[int], capacity: int) -> list[int]:
    """Best-fit decreasing: longest first, each into the fullest row it fits (a new row if none)."""
    rows = [0] * len(lengths)
    free: list[tuple[int, int]] = []  # (room left, row), sorted
    opened = 0
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        at = bisect.bisect_left(free, (lengths[i], -1))
        if at < len(free):
            room, row = free.pop(at)
        else:
            room, row, opened = capacity, opened, opened + 1
        rows[i] = row
        bisect.insort(free, (room - lengths[i], row))
    return rows


def _computed(lengths: list[int], rows: list[int]) -> int:
    fill = [0] * (max(rows) + 1)
    for length, row in zip(lengths, rows, strict=True):
        fill[row] += length
    return len(fill) * max(fill)


def _fewest_tokens(lengths: list[int], capacity: int, count: int) -> list[int]:
    """Best-fit rows of the shortest length (at most ``capacity``) that needs no more than ``count`` rows."""
    low = min(max(max(lengths), -(-sum(lengths) // count)), capacity)
    high = capacity
    while low < high:
        middle = (low + high) // 2
        if max(_best_fit_rows(lengths, middle)) + 1 <= count:
            high = middle
        else:
            low = middle + 1
    return _best_fit_rows(lengths, high)


#: Row counts past the fewest that :func:`pack_rows` tries.
MORE_ROWS_TRIED = 8


def pack_rows(lengths: list[int], capacity: int) -> list[int]:
    """The packed row of each sequence, so that ``rows x longest row`` (the tokens the language model
    computes) is small: best-fit decreasing into rows of at most ``capacity`` tokens, trying the
    fewest row counts (up to :data:`MORE_ROWS_TRIED` more) with the shortest row length that fits.

    Rows are numbered by their first sequence; a sequence longer than ``capacity`` gets a row of its own.
    """
    if not lengths:
        return []
    best = _best_fit_rows(lengths, capacity)
    best_tokens, total, longest = _computed(lengths, best), sum(lengths), max(lengths)
    fewest = max(best) + 1
    for count in range(fewest, min(len(lengths), fewest + MORE_ROWS_TRIED) + 1):
        if count * max(longest, -(-total // count)) >= best_tokens:
            break
        rows = _fewest_tokens(lengths, capacity, count)
        tokens = _computed(lengths, rows)
        if tokens < best_tokens:
            best, best_tokens = rows, tokens
    first = {row: i for i, row in reversed(list(enumerate(best)))}
    order = {row: n for n, row in enumerate(sorted(first, key=first.__getitem__))}
    return [order[row] for row in best]


def token_chunks(lengths: list[int], budget: int, pack_tokens: int | None = None) -> list[list[int]]:
    """Sequence indices cut into chunks whose computed tokens stay within ``budget`` (GradCache
    chunks of bounded memory when lengths vary).

    Longest first, so each chunk holds sequences of like length: padded, a chunk costs
    ``sequences x longest``; with ``pack_tokens`` the batch is packed first and a chunk is whole
    rows, costing ``rows x fullest row``. A sequence over the budget is a chunk of its own.
    """
    if pack_tokens is None:
        units = [([i], n) for i, n in enumerate(lengths)]
    else:
        rows = pack_rows(lengths, pack_tokens)
        members: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            members.setdefault(row, []).append(i)
        units = [(m, sum(lengths[i] for i in m)) for m in members.values()]
    units.sort(key=lambda unit: -unit[1])
    chunks: list[list[int]] = []
    count = widest = 0
    for indices, tokens in units:
        if not chunks or (count + 1) * max(widest, tokens) > budget:
            chunks.append([])
            count = widest = 0
        chunks[-1] += indices
        count, widest = count + 1, max(widest, tokens)
    return chunks


def packed_rows(batch: Batch, pack_tokens: int | None) -> list[int] | None:
    """Each sequence's row in rows of ``pack_tokens`` tokens (:func:`pack_rows`), or ``None`` when
    that would not hold the batch's sequences in fewer rows than it has (or ``pack_tokens`` is ``None``)."""
    if pack_tokens is None or batch.input_ids.shape[0] < 2:
        return None
    rows = pack_rows((batch.roles != Role.PAD).sum(1).tolist(), pack_tokens)
    return rows if max(rows) + 1 < len(rows) else None


@dataclass(frozen=True)
class Layout:
    """Where each real token of a padded batch goes in the packed rows.

    ``seq, col`` index the real tokens of the padded batch; ``dest_row, dest_col`` are their places
    in the packed rows. ``rows[i]`` and ``offsets[i]`` are sequence ``i``'s row and start in it,
    ``within[i, j]`` the index of padded position ``j`` inside sequence ``i``.
    """

    rows: Tensor
    offsets: Tensor
    within: Tensor
    seq: Tensor
    col: Tensor
    dest_row: Tensor
    dest_col: Tensor
    shape: tuple[int, int]

    @classmethod
    def of(cls, batch: Batch, row_of: list[int]) -> Layout:
        """The layout of ``batch`` with sequence ``i`` in packed row ``row_of[i]`` (:func:`packed_rows`)."""
        valid = batch.roles != Role.PAD
        lengths = valid.sum(1)
        rows = torch.tensor(row_of, device=lengths.device)
        count = max(row_of) + 1
        in_row = F.one_hot(rows, count) * lengths[:, None]
        offsets = (in_row.cumsum(0) - in_row).gather(1, rows[:, None])[:, 0]  # tokens of earlier sequences in the row
        within = valid.cumsum(1) - 1
        seq, col = valid.nonzero(as_tuple=True)
        return cls(rows, offsets, within, seq, col, rows[seq], offsets[seq] + within[seq, col],
                   (count, int((offsets + lengths).max())))

    def pack(self, values: Tensor, fill: float | int = 0, dim: int = 0) -> Tensor:
        """``values`` ``(..., batch, len, ...)`` with batch at ``dim``, moved into ``(..., rows, row_len, ...)``."""
        shape = (*values.shape[:dim], *self.shape, *values.shape[dim + 2:])
        out = values.new_full(shape, fill)
        index = (slice(None),) * dim
        out[(*index, self.dest_row, self.dest_col)] = values[(*index, self.seq, self.col)]
        return out

    def deepstack_order(self, feats: ImageFeatures | None, slots: Tensor) -> ImageFeatures | None:
        """``feats`` with their DeepStack features (one per ``slots`` position, in padded row-major
        order) put in the packed rows' order; the tokens themselves are already in place."""
        if feats is None or not feats.deepstack:
            return feats
        at = slots[self.seq, self.col]
        order = (self.dest_row[at] * self.shape[1] + self.dest_col[at]).argsort()
        return ImageFeatures(feats.tokens, tuple(d[order] for d in feats.deepstack))

    def unpack(self, packed: Tensor, length: int) -> Tensor:
        """Packed ``(rows, row_len, hidden)`` states back in the padded layout ``(batch, length, hidden)``,
        zero at padding."""
        out = packed.new_zeros(len(self.rows), length, *packed.shape[2:])
        out[self.seq, self.col] = packed[self.dest_row, self.dest_col]
        return out


def _packed_states(model: nn.Module, batch: Batch, mode: AttentionMode, rows: list[int], *,
                   eos_sees_target: bool, image_transform: ImageTransform | None,
                   positions: Positions) -> tuple[Tensor, Layout]:
    """The language model's final states over the packed rows, and the layout that made them."""
    embeds, feats = input_embeddings(model, batch, image_transform)
    layout = Layout.of(batch, rows)
    roles = layout.pack(batch.roles, fill=int(Role.PAD))
    segments = layout.pack(torch.arange(len(batch.roles), device=roles.device)[:, None].expand_as(batch.roles),
                           fill=-1)
    mask = additive_mask(roles, mode, embeds.dtype, eos_sees_target=eos_sees_target, segments=segments)
    out = vl_model(model).language_model(
        inputs_embeds=layout.pack(embeds), attention_mask=mask,
        position_ids=layout.pack(position_ids(model, batch, positions), dim=1), use_cache=False,
        **deepstack_kwargs(layout.deepstack_order(feats, batch.visual_slots),
                           layout.pack(batch.visual_slots, fill=False)))
    return out.last_hidden_state, layout


def packed_pool_states(model: nn.Module, batch: Batch, mode: AttentionMode, rows: list[int],
                       positions: Positions = "grid") -> Tensor:
    """The final states ``(batch, hidden)`` at each row's ``pool_index``, computed on packed rows
    (sequence ``i`` in row ``rows[i]``, :func:`packed_rows`)."""
    packed, layout = _packed_states(model, batch, mode, rows, eos_sees_target=True, image_transform=None,
                                    positions=positions)
    pooled = layout.within.gather(1, batch.pool_index[:, None])[:, 0]
    return packed[layout.rows, layout.offsets + pooled]


@dataclass(frozen=True)
class Packing:
    """How a model's forward lays out a collated batch: padded to its longest sequence
    (``pack_tokens=None``) or packed into rows of at most ``pack_tokens`` tokens.

    The one place the padded or packed path is chosen; objectives, the batch encoder and the server
    hold one and call :meth:`hidden_states` or :meth:`embed`. A batch that packing would not put in
    fewer rows (a single sequence, say), and mean pooling, take the padded path. Both paths give the
    same states to float rounding and gradients flow through either.

    Example:
        >>> Packing(512).embed(model, batch, get_protocol("cocoa"))  # doctest: +SKIP
    """

    pack_tokens: int | None = None

    def __post_init__(self) -> None:
        check_pack_tokens(self.pack_tokens)

    def rows(self, batch: Batch) -> list[int] | None:
        """Each sequence's packed row, or ``None`` when the batch takes the padded path."""
        return packed_rows(batch, self.pack_tokens)

    def hidden_states(self, model: nn.Module, batch: Batch, mode: AttentionMode, *, eos_sees_target: bool = True,
                      image_transform: ImageTransform | None = None, positions: Positions = "grid") -> Tensor:
        """Final states ``(batch, len, hidden)`` in the padded layout (zero at padding), as
        :func:`~cocoa.model.forward.hidden_states` computes them."""
        rows = self.rows(batch)
        if rows is None:
            return hidden_states(model, batch, mode, eos_sees_target=eos_sees_target,
                                 image_transform=image_transform, positions=positions)
        packed, layout = _packed_states(model, batch, mode, rows, eos_sees_target=eos_sees_target,
                                        image_transform=image_transform, positions=positions)
        return layout.unpack(packed, batch.input_ids.shape[1])

    def embed(self, model: nn.Module, batch: Batch, protocol: Protocol) -> Tensor:
        """L2-normalised embeddings ``(batch, hidden)`` under ``protocol`` (its attention, pooling and
        positions): the model's embedding entry point for training, evaluation and serving."""
        rows = None if protocol.pooling == "mean" else self.rows(batch)
        if rows is None:
            return embed_padded(model, batch, protocol.attention, pooling=protocol.pooling,
                                positions=protocol.positions)
        states = packed_pool_states(model, batch, protocol.attention, rows, protocol.positions)
        return F.normalize(states.float(), dim=-1)

    def chunks(self, lengths: list[int], budget: int) -> list[list[int]]:
        """Sequence indices cut into chunks of at most ``budget`` computed tokens (:func:`token_chunks`)."""
        return token_chunks(lengths, budget, self.pack_tokens)


#: Every sequence padded to its batch's longest: the layout when ``pack_tokens`` is not set.
PADDED = Packing()
