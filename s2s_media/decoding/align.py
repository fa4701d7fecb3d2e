"""Viterbi alignment of a known token sequence to CTC posteriors.

Two searches over the usual CTC trellis (a blank between and around the targets; a repeated token
needs a blank between its two emissions):

- :func:`align_all`: every target, from the first frame to the last. This is
  ``torchaudio.functional.forced_align``; ``None`` when the targets do not fit in the frames.
- :func:`align_prefix`: the window search of long-file alignment. The path may *start* at any of
  the given start positions (each with a penalty: skipping transcript that is not in the audio
  costs) and *end* in any state (the window may hold only part of the rest of the transcript). The
  best such path says which targets this window holds.

Both return :class:`TokenSpan` per aligned target: frames ``[start, end)`` and the peak posterior.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF

from s2s_media.text.tokenizer import BLANK

NEG_INF = float("-inf")


@dataclass
class TokenSpan:
    index: int          # position of the token in the target sequence
    start: int          # first frame
    end: int            # one past the last frame
    prob: float         # the token's highest posterior within its frames


def _spans_from_states(states: list[int], log_probs: torch.Tensor, targets: list[int]) -> list[TokenSpan]:
    """Runs of one odd trellis state (target ``(s - 1) // 2``) -> spans; ``states[t]`` is frame t's state."""
    spans: list[TokenSpan] = []
    t, T = 0, len(states)
    while t < T:
        s = states[t]
        if s % 2 == 0:
            t += 1
            continue
        u = t
        while u < T and states[u] == s:
            u += 1
        i = (s - 1) // 2
        prob = float(log_probs[t:u, targets[i]].max().exp())
        spans.append(TokenSpan(i, t, u, prob))
        t = u
    return spans


def align_all(log_probs: torch.Tensor, targets: list[int]) -> list[TokenSpan] | None:
    """Align every target. ``log_probs: (T, V)`` CTC log-posteriors; ``targets``: token ids (no blank).

    Returns one span per target, or None when they do not fit in ``T`` frames.
    """
    if not targets:
        return []
    try:
        labels, _ = AF.forced_align(log_probs[None].float().cpu(), torch.tensor([targets], dtype=torch.int32),
                                    blank=BLANK)
    except (RuntimeError, ValueError):
        return None
    # forced_align gives labels, not target positions: walk them in order to recover the positions
    states, i, prev = [], -1, BLANK
    for lab in labels[0].tolist():
        if lab == BLANK:
            states.append(2 * (i + 1))
        else:
            if lab != prev or states[-1] % 2 == 0:
                i += 1
            states.append(2 * i + 1)
        prev = lab
    spans = _spans_from_states(states, log_probs.float().cpu(), targets)
    return spans if len(spans) == len(targets) else None


def align_prefix(log_probs: torch.Tensor, targets: list[int],
                 starts: list[tuple[int, float]]) -> list[TokenSpan]:
    """The best path that starts at one of ``starts`` and ends anywhere; its spans, in order.

    log_probs: ``(T, V)``. starts: ``(target index, penalty)``: the path may begin on that target (or
    the blank before it) at a cost of ``penalty`` (log domain, >= 0). The path consumes the targets from
    its start to wherever it ends; targets before the start and after the end get no span.
    """
    if not targets or log_probs.size(0) == 0:
        return []
    lp_all = log_probs.float().cpu()
    ext = np.full(2 * len(targets) + 1, BLANK)
    ext[1::2] = targets
    S = len(ext)
    lp = lp_all.numpy()[:, ext]                                    # (T, S)
    skip_ok = np.zeros(S, dtype=bool)
    skip_ok[3::2] = ext[3::2] != ext[1:-2:2]
    delta = np.full(S, NEG_INF)
    for i, penalty in starts:
        delta[2 * i: 2 * i + 2] = np.maximum(delta[2 * i: 2 * i + 2], -penalty)
    delta = delta + lp[0]
    back = np.zeros((lp.shape[0], S), dtype=np.int8)
    cand = np.full((3, S), NEG_INF)
    for t in range(1, lp.shape[0]):
        cand[0] = delta
        cand[1, 1:] = delta[:-1]
        cand[2, 2:] = np.where(skip_ok[2:], delta[:-2], NEG_INF)
        arg = cand.argmax(0)
        back[t] = arg
        delta = cand[arg, np.arange(S)] + lp[t]
    s = int(delta.argmax())
    states = [0] * lp.shape[0]
    for t in range(lp.shape[0] - 1, -1, -1):
        states[t] = s
        s -= int(back[t, s])
    return _spans_from_states(states, lp_all, targets)
