"""The one interface every decoder implements, whatever feeds it.

An encoder (audio or image) produces ``memory: (batch, time, d_model)`` and
``memory_mask: (batch, time)`` bool, True where valid. A decoder consumes exactly that.

Incremental decoding keeps a *state*: a nested list/tuple/dict of tensors whose first
dimension is the batch (hypothesis) dimension. ``select_state`` reorders or expands it, so
the beam search never needs to know which decoder it drives.
"""
from __future__ import annotations

import abc
from typing import Any

import torch
from torch import nn

State = Any  # nested list/tuple/dict of tensors, batch first


def select_state(state: State, index: torch.Tensor) -> State:
    """Pick rows ``index: (n,)`` along dim 0 of every tensor in ``state``."""
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index)
    if isinstance(state, dict):
        return {k: select_state(v, index) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(select_state(v, index) for v in state)
    return state


class Decoder(nn.Module, abc.ABC):
    """Autoregressive decoder attending over encoder memory.

    Subclasses set ``vocab_size`` and ``d_model``.
    """

    vocab_size: int
    d_model: int

    @abc.abstractmethod
    def forward(self, tokens: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor,
                return_attention: bool = False, memory_index: torch.Tensor | None = None):
        """Teacher-forced pass.

        tokens: (batch, U) long, the decoder input (prefix + targets), padded with any valid id
        memory: (batch, T, d_model); memory_mask: (batch, T) bool
        memory_index: (batch,) long, or None. Row ``i`` of ``tokens`` then attends to memory row
            ``memory_index[i]`` (memory has its own batch size): many hypotheses of one utterance
            share the memory's projections instead of copies of it.
        Returns logits (batch, U, vocab), and with ``return_attention`` also the cross-attention
        weights (batch, U, T) (averaged over heads, last layer for the Transformer).
        """

    @abc.abstractmethod
    def init_state(self, memory: torch.Tensor, memory_mask: torch.Tensor) -> State:
        """An empty state for ``memory.size(0)`` hypotheses."""

    @abc.abstractmethod
    def step(self, tokens: torch.Tensor, state: State, memory: torch.Tensor,
             memory_mask: torch.Tensor) -> tuple[torch.Tensor, State, torch.Tensor]:
        """Feed one token per hypothesis and predict the next.

        tokens: (batch,) long; returns (log_probs (batch, vocab), new_state, attention (batch, T)).
        The cost per step is independent of the prefix length re-computation: past positions
        are cached in ``state``.
        """
