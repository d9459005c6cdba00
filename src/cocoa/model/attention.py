"""Who attends to whom: CoCoA's attention modes as composable mask functions.

Every token of a padded batch carries a :class:`Role`. A mask function maps the roles and
indices of a query and a key position to "may attend", in the style of transformers'
``masking_utils``; modes are built by and/or-composing small functions. The result is an
additive 4-D float mask ``(batch, 1, q, k)`` handed to the upstream language model, whose
code stays untouched (a 4-D mask passes its mask utilities unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from cocoa.core.errors import ConfigError
from cocoa.core.tokens import Role

AttentionMode = Literal["causal", "bidirectional", "eos_bridge"]
ATTENTION_MODES: tuple[str, ...] = ("causal", "bidirectional", "eos_bridge")

#: (query role, key role, query index, key index) -> bool, all broadcastable.
MaskFn = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def and_masks(*fns: MaskFn) -> MaskFn:
    """A mask function allowing what every one of ``fns`` allows."""
    def fn(qr: Tensor, kr: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
        out = fns[0](qr, kr, qi, ki)
        for other in fns[1:]:
            out = out & other(qr, kr, qi, ki)
        return out
    return fn


def or_masks(*fns: MaskFn) -> MaskFn:
    """A mask function allowing what any one of ``fns`` allows."""
    def fn(qr: Tensor, kr: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
        out = fns[0](qr, kr, qi, ki)
        for other in fns[1:]:
            out = out | other(qr, kr, qi, ki)
        return out
    return fn


def real_tokens(qr: Tensor, kr: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
    """Neither position is padding."""
    return (qr != Role.PAD) & (kr != Role.PAD)


def causal(qr: Tensor, kr: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
    """The key is not after the query."""
    return ki <= qi


def query_sees(*roles: Role) -> Callable[[Role], MaskFn]:
    """``query_sees(A, B)(Q)``: a query of role ``Q`` may see keys of roles ``A`` or ``B``."""
    def for_query(query_role: Role) -> MaskFn:
        def fn(qr: Tensor, kr: Tensor, qi: Tensor, ki: Tensor) -> Tensor:
            seen = torch.zeros_like(kr, dtype=torch.bool)
            for role in roles:
                seen = seen | (kr == role)
            return (qr == query_role) & seen
        return fn
    return for_query


def eos_bridge(eos_sees_target: bool = True) -> MaskFn:
    """Stage 2: block B sees block A only through the EOS.

    Block A sees A and the EOS; block B sees the EOS and B (never A); the EOS sees A and
    itself, and also B when ``eos_sees_target`` (as in the authors' code).
    """
    eos_keys = (Role.QUERY, Role.EMBEDDING, Role.TARGET) if eos_sees_target else (Role.QUERY, Role.EMBEDDING)
    return and_masks(real_tokens, or_masks(
        query_sees(Role.QUERY, Role.EMBEDDING)(Role.QUERY),
        query_sees(Role.EMBEDDING, Role.TARGET)(Role.TARGET),
        query_sees(*eos_keys)(Role.EMBEDDING),
    ))


def mask_function(mode: AttentionMode, *, eos_sees_target: bool = True) -> MaskFn:
    """The mask function of an attention mode."""
    if mode == "causal":
        return and_masks(real_tokens, causal)
    if mode == "bidirectional":
        return real_tokens
    if mode == "eos_bridge":
        return eos_bridge(eos_sees_target)
    raise ConfigError(f"unknown attention mode {mode!r}; choose one of {ATTENTION_MODES}")


def allowed(roles: Tensor, mode: AttentionMode, *, eos_sees_target: bool = True,
            segments: Tensor | None = None) -> Tensor:
    """Boolean ``(batch, q, k)``: may query position q attend to key position k.

    ``segments`` ``(batch, len)`` numbers the sequences packed into one row: a position then
    sees its own sequence only. Padding queries attend to themselves only, so no softmax row
    is empty.
    """
    length = roles.shape[1]
    idx = torch.arange(length, device=roles.device)
    qr, kr = roles[:, :, None], roles[:, None, :]
    qi, ki = idx[None, :, None], idx[None, None, :]
    ok = mask_function(mode, eos_sees_target=eos_sees_target)(qr, kr, qi, ki)
    if segments is not None:
        ok = ok & (segments[:, :, None] == segments[:, None, :])
    return ok | ((qr == Role.PAD) & (qi == ki))


def additive_mask(roles: Tensor, mode: AttentionMode, dtype: torch.dtype, *, eos_sees_target: bool = True,
                  segments: Tensor | None = None) -> Tensor:
    """Additive float mask ``(batch, 1, q, k)``: 0 where allowed, the dtype's minimum elsewhere.

    A float mask is read correctly by both the ``sdpa`` and ``eager`` backends (``eager``
    mis-reads a boolean one).
    """
    ok = allowed(roles, mode, eos_sees_target=eos_sees_target, segments=segments)
    mask = torch.zeros(ok.shape, dtype=dtype, device=roles.device)
    mask.masked_fill_(~ok, torch.finfo(dtype).min)
    return mask[:, None]
