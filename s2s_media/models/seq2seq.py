"""The seq2seq model: modality encoders -> one shared attention decoder, plus a CTC head.

Data flows one way: features -> ``encode`` -> memory ``(B, T, d)`` and mask ``(B, T)`` ->
decoder (teacher forcing in training; search in ``s2s_media.decoding``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from s2s_media.config import ModelConfig
from s2s_media.models.layers import lengths_to_mask
from s2s_media.models.registry import DECODERS, ENCODERS, component_config
from s2s_media.text.tokenizer import EOS, IGNORE_ID


class GlobalCMVN(nn.Module):
    """Global mean/variance normalisation with stats from the training data.

    ``forward(x: (B, T, F)) -> (B, T, F)``. The stats live in the state_dict (buffers) and,
    readable without the model, in the checkpoint's ``cmvn`` entry.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("istd", torch.ones(dim))

    def set_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.mean.copy_(mean)
        self.istd.copy_(1.0 / std.clamp_min(1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.istd


class AudioEncoder(nn.Module):
    """CMVN + an encoder from the registry. ``forward(feats (B,T,F), lengths (B,))`` -> memory, mask."""

    def __init__(self, n_mels: int, name: str, conf: dict):
        super().__init__()
        self.cmvn = GlobalCMVN(n_mels)
        self.body = ENCODERS[name](n_mels, component_config(ENCODERS, name, conf, "model.encoder"))
        self.output_dim = self.body.output_dim

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int = 0, left_chunks: int = -1):
        out, out_lengths = self.body(self.cmvn(feats), lengths, chunk_size, left_chunks)
        return out, lengths_to_mask(out_lengths, out.size(1))


class CTCHead(nn.Module):
    """``forward(memory: (B, T, d)) -> log_probs (B, T, V)``."""

    def __init__(self, d_model: int, vocab_size: int):
        super().__init__()
        self.proj = nn.Linear(d_model, vocab_size)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.proj(memory).float(), dim=-1)


def label_smoothing_loss(logits: torch.Tensor, targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Mean over non-ignored targets. ``logits: (B, U, V)``, ``targets: (B, U)`` with IGNORE_ID padding."""
    return F.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=IGNORE_ID,
                           label_smoothing=smoothing)


class Seq2SeqModel(nn.Module):
    """Encoders keyed by modality (``audio`` now, ``image`` later) feeding one shared decoder.

    Attributes: ``encoders`` (ModuleDict), ``decoder`` (a :class:`~s2s_media.models.decoder.Decoder`),
    ``ctc`` (a :class:`CTCHead` on the audio encoder, or None when ``ctc_weight == 0``).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        audio = AudioEncoder(cfg.n_mels, cfg.encoder, cfg.encoder_conf)
        self.encoders = nn.ModuleDict({"audio": audio})
        d = audio.output_dim
        self.decoder = DECODERS[cfg.decoder](vocab_size, d, component_config(DECODERS, cfg.decoder, cfg.decoder_conf,
                                                                              "model.decoder"))
        self.ctc = CTCHead(d, vocab_size) if cfg.ctc_weight > 0 else None

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor, modality: str = "audio",
               chunk_size: int = 0, left_chunks: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: (B, T, F), lengths: (B,) -> memory (B, T', d), memory_mask (B, T') bool."""
        return self.encoders[modality](feats, lengths, chunk_size, left_chunks)

    def forward(self, feats: torch.Tensor, feat_lengths: torch.Tensor, targets: list[list[int]],
                prefix: list[int]) -> dict[str, torch.Tensor]:
        """Hybrid CTC/attention loss for a batch.

        feats: (B, T, F); feat_lengths: (B,); targets: B lists of unit ids (no specials);
        prefix: the decoder start sequence, e.g. ``[SOS]`` or ``[SOS, <asr>]``.
        Returns ``loss``, ``loss_att``, ``loss_ctc`` and ``acc`` (attention token accuracy).
        """
        memory, mask = self.encode(feats, feat_lengths)
        dev = memory.device
        ys_in, ys_out = decoder_io(targets, prefix, dev)
        logits = self.decoder(ys_in, memory, mask)
        loss_att = label_smoothing_loss(logits, ys_out, self.cfg.lsm_weight)
        valid = ys_out != IGNORE_ID
        acc = ((logits.argmax(-1) == ys_out) & valid).sum() / valid.sum().clamp(min=1)
        out = {"loss_att": loss_att, "acc": acc}
        lam = self.cfg.ctc_weight
        if self.ctc is not None:
            loss_ctc = ctc_loss(self.ctc(memory), mask.sum(1), targets)
            out["loss_ctc"] = loss_ctc
            out["loss"] = lam * loss_ctc + (1 - lam) * loss_att
        else:
            out["loss"] = loss_att
        return out


def decoder_io(targets: list[list[int]], prefix: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forcing input ``prefix + y`` and output ``[ignore]*(len(prefix)-1) + y + [EOS]``, padded.

    Returns ``(ys_in (B, U), ys_out (B, U))``; ``ys_in`` is padded with EOS, ``ys_out`` with IGNORE_ID.
    """
    u = max(len(t) for t in targets) + len(prefix)
    ys_in = torch.full((len(targets), u), EOS, dtype=torch.long)
    ys_out = torch.full((len(targets), u), IGNORE_ID, dtype=torch.long)
    for i, t in enumerate(targets):
        seq_in = prefix + t
        seq_out = [IGNORE_ID] * (len(prefix) - 1) + t + [EOS]
        ys_in[i, : len(seq_in)] = torch.tensor(seq_in)
        ys_out[i, : len(seq_out)] = torch.tensor(seq_out)
    return ys_in.to(device), ys_out.to(device)


def ctc_loss(log_probs: torch.Tensor, lengths: torch.Tensor, targets: list[list[int]]) -> torch.Tensor:
    """CTC loss summed per utterance, divided by the number of target tokens in the batch.

    log_probs: (B, T, V); lengths: (B,).
    """
    flat = torch.tensor([i for t in targets for i in t], dtype=torch.long)
    target_lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    loss = F.ctc_loss(log_probs.transpose(0, 1), flat, lengths.cpu(), target_lengths, blank=0,
                      reduction="sum", zero_infinity=True)
    return loss / target_lengths.sum().clamp(min=1)
