"""Packed rows for inference: a batch's sequences share rows, so the model computes no padding.

The padded batch's real tokens, their M-RoPE positions and roles move into rows of at most
``pack_tokens`` tokens, several sequences a row, and a segment mask keeps each sequence to
itself, so the embeddings equal the padded ones (:func:`cocoa.model.forward.embed`) up to float
rounding. The server packs each batch of requests; training and evaluation pad.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cocoa.core.batch import Batch
from cocoa.core.protocol import Pooling, Positions
from cocoa.core.tokens import Role
from cocoa.model.attention import AttentionMode, additive_mask
from cocoa.model.forward import deepstack_kwargs, embed, input_embeddings, position_ids, vl_model


def pack_rows(lengths: list[int], capacity: int) -> list[int]:
    """The packed row of each sequence: in order, a new row when the next one would pass ``capacity``.

    A sequence longer than ``capacity`` gets a row of its own.
    """
    rows, row, used = [], -1, capacity
    for length in lengths:
        if used + length > capacity:
            row, used = row + 1, 0
        rows.append(row)
        used += length
    return rows


def packed_pool_states(model: nn.Module, batch: Batch, mode: AttentionMode, pack_tokens: int,
                       positions: Positions = "grid") -> Tensor:
    """The final states ``(batch, hidden)`` at each row's ``pool_index``, sequences packed into shared rows.

    The padded batch's real tokens (padded on either side), their M-RoPE positions and roles are moved
    into rows of at most ``pack_tokens`` tokens, several sequences a row, and the mask keeps
    each sequence to itself, so the states equal :func:`hidden_states` ones while the
    language model skips the padding. Sequence order is kept, so image tokens (and DeepStack
    features) stay in order.
    """
    embeds, feats = input_embeddings(model, batch)
    rope = position_ids(model, batch, positions)
    valid = batch.roles != Role.PAD
    lengths = valid.sum(1)
    rows = torch.tensor(pack_rows(lengths.tolist(), pack_tokens), device=lengths.device)
    starts = lengths.cumsum(0) - lengths
    offsets = starts - starts[torch.searchsorted(rows, rows)]  # start of each sequence within its row
    within = valid.cumsum(1) - 1  # each real token's index within its sequence
    seq, col = valid.nonzero(as_tuple=True)
    dest_row, dest_col = rows[seq], offsets[seq] + within[seq, col]
    n_rows, row_len = int(rows[-1]) + 1, int((offsets + lengths).max())
    packed = embeds.new_zeros(n_rows, row_len, embeds.shape[-1])
    packed[dest_row, dest_col] = embeds[seq, col]
    roles = torch.full((n_rows, row_len), int(Role.PAD), dtype=batch.roles.dtype, device=valid.device)
    roles[dest_row, dest_col] = batch.roles[seq, col]
    segments = torch.full_like(roles, -1)
    segments[dest_row, dest_col] = seq
    packed_positions = rope.new_zeros(rope.shape[0], n_rows, row_len)
    packed_positions[:, dest_row, dest_col] = rope[:, seq, col]
    image_slots = torch.zeros_like(roles, dtype=torch.bool)
    image_slots[dest_row, dest_col] = batch.visual_slots[seq, col]
    mask = additive_mask(roles, mode, embeds.dtype, segments=segments)
    out = vl_model(model).language_model(inputs_embeds=packed, attention_mask=mask, position_ids=packed_positions,
                                         use_cache=False, **deepstack_kwargs(feats, image_slots))
    pooled = within.gather(1, batch.pool_index[:, None])[:, 0]
    return out.last_hidden_state[rows, offsets + pooled]


def embed_packed(model: nn.Module, batch: Batch, mode: AttentionMode, pack_tokens: int, *,
                 pooling: Pooling = "last", positions: Positions = "grid") -> Tensor:
    """:func:`~cocoa.model.forward.embed` with the sequences packed into rows of ``pack_tokens`` tokens.

    A batch that packing would not put in fewer rows (a single sequence, say), and mean pooling,
    take the padded path.
    """
    if pooling == "mean" or not packs(batch, pack_tokens):
        return embed(model, batch, mode, pooling=pooling, positions=positions)
    return F.normalize(packed_pool_states(model, batch, mode, pack_tokens, positions).float(), dim=-1)


def packs(batch: Batch, pack_tokens: int) -> bool:
    """Whether rows of ``pack_tokens`` tokens hold the batch's sequences in fewer rows than it has."""
    if batch.input_ids.shape[0] < 2:
        return False
    lengths = (batch.roles != Role.PAD).sum(1).tolist()
    return pack_rows(lengths, pack_tokens)[-1] + 1 < len(lengths)
