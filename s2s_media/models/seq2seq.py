"""The seq2seq model: modality encoders -> one shared attention decoder, plus a CTC head.

Data flows one way: features or pixels -> ``encode`` -> memory ``(B, T, d)`` and mask ``(B, T)``
-> decoder (teacher forcing in training; search in ``s2s_media.decoding``). The task token in
the decoder prefix (``tokenizer.prefix("asr")`` or ``prefix("caption")``) tells the shared
decoder which task it is doing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from s2s_media.config import ModelConfig
from s2s_media.errors import UserError
from s2s_media.frontend.audio import HOP_LENGTH, SAMPLE_RATE
from s2s_media.models.attention_encoder import AttentionEncoder, EncoderCache
from s2s_media.models.layers import lengths_to_mask
from s2s_media.models.registry import DECODERS, ENCODERS, IMAGE_ENCODERS, component_config
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
        self.name = name
        self.cmvn = GlobalCMVN(n_mels)
        self.body = ENCODERS[name](n_mels, component_config(ENCODERS, name, conf, "model.encoder"))
        self.output_dim = self.body.output_dim

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor, chunk_size: int = 0, left_chunks: int = -1):
        out, out_lengths = self.body(self.cmvn(feats), lengths, chunk_size, left_chunks)
        return out, lengths_to_mask(out_lengths, out.size(1))

    # ---- what decoding reads of the encoder (timing, streaming), without reaching into ``body``
    @property
    def stride(self) -> int:
        """Feature frames per encoder frame: the subsampling factor, or 2 per pyramid layer of the BLSTM."""
        sub = getattr(self.body, "subsampling", None)
        return sub.stride if sub is not None else 2 ** self.body.cfg.pyramid_layers

    @property
    def frame_shift(self) -> float:
        """Seconds between encoder output frames: the 10 ms hop x :attr:`stride`."""
        return self.stride * HOP_LENGTH / SAMPLE_RATE

    def check_streamable(self) -> None:
        """UserError unless this encoder can run chunk by chunk with a cache (causal attention encoders)."""
        if not isinstance(self.body, AttentionEncoder):
            raise UserError(f"streaming needs a conformer or transformer encoder; this model's model.encoder is "
                            f"{self.name}")
        self.body.check_streamable()

    @property
    def right_context(self) -> int:
        """Feature frames past its own that the subsampling of one encoder frame reads."""
        return self.body.subsampling.right_context

    def normalise(self, feats: torch.Tensor) -> torch.Tensor:
        """CMVN of log-mels ``(..., F)``, what :meth:`forward_chunk` expects."""
        return self.cmvn(feats)

    def init_cache(self, batch: int, device) -> EncoderCache:
        return self.body.init_cache(batch, device)

    def forward_chunk(self, feats: torch.Tensor, lengths: torch.Tensor, cache: EncoderCache, max_cache_frames: int):
        """One chunk of normalised features ``(B, T, F)`` with the left context in ``cache`` ->
        ``(out (B, T', d), out_lengths (B,), new cache)``."""
        return self.body.forward_chunk(feats, lengths, cache, max_cache_frames)


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


@dataclass
class SelfCritical:
    """Self-critical sequence training (Rennie et al., 2017) for one batch, run inside ``forward``.

    ``rollouts(decoder, memory, mask, prefix)`` (given by the training task, which owns the search
    code) returns the ``B*samples`` sampled token lists, image by image, and the B greedy ones.

    ``reward(sampled, greedy)`` gets the ``B*samples`` sampled token lists (image by image) and the
    B greedy ones, and returns ``(sample_rewards (B*samples,), baseline (B*samples,))``.
    """
    samples: int
    max_len: int
    temperature: float
    reward: Callable[[list[list[int]], list[list[int]]], tuple[torch.Tensor, torch.Tensor]]
    rollouts: Callable[..., tuple[list[list[int]], list[list[int]]]]


class Seq2SeqModel(nn.Module):
    """Encoders keyed by modality (``audio``, ``image``; ``model.modalities``) feeding one shared decoder.

    Attributes: ``encoders`` (ModuleDict), ``decoder`` (a :class:`~s2s_media.models.decoder.Decoder`),
    ``ctc`` (a :class:`CTCHead` on the audio encoder, or None when ``ctc_weight == 0`` or there is
    no audio encoder).
    """

    def __init__(self, cfg: ModelConfig, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.vocab_size = vocab_size
        encoders: dict[str, nn.Module] = {}
        if "audio" in cfg.modalities:
            encoders["audio"] = AudioEncoder(cfg.n_mels, cfg.encoder, cfg.encoder_conf)
        if "image" in cfg.modalities:
            encoders["image"] = IMAGE_ENCODERS[cfg.image_encoder](
                component_config(IMAGE_ENCODERS, cfg.image_encoder, cfg.image_encoder_conf, "model.image_encoder"))
        if not encoders:
            raise UserError(f"model.modalities: no known modality in {cfg.modalities}; use audio and/or image")
        widths = {m: e.output_dim for m, e in encoders.items()}
        if len(set(widths.values())) > 1:
            raise UserError(f"model: encoder widths differ {widths}; both feed one decoder, so set equal d_model")
        self.encoders = nn.ModuleDict(encoders)
        d = next(iter(widths.values()))
        self.decoder = DECODERS[cfg.decoder](vocab_size, d, component_config(DECODERS, cfg.decoder, cfg.decoder_conf,
                                                                              "model.decoder"))
        self.ctc = CTCHead(d, vocab_size) if cfg.ctc_weight > 0 and "audio" in encoders else None

    def as_input(self, x):
        """A numpy array (or tensor) as a tensor on this model's device; None stays None. The inference path
        hands the model numpy (:mod:`s2s_media.arrays`)."""
        if x is None:
            return None
        return torch.as_tensor(x, device=next(self.parameters()).device)

    @staticmethod
    def inference_mode():
        """The context that inference runs the model in (no autograd)."""
        return torch.inference_mode()

    def encode(self, x: torch.Tensor, lengths: torch.Tensor | None = None, modality: str = "audio",
               chunk_size: int = 0, left_chunks: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
        """Run one modality's encoder.

        audio: ``x (B, T, F)`` log-mels, ``lengths (B,)`` -> memory ``(B, T', d)``, mask ``(B, T')`` bool;
        ``chunk_size``/``left_chunks`` select chunked (streaming) encoding.
        image: ``x (B, 3, H, W)`` normalised pixels, ``lengths`` unused -> memory ``(B, h*w, d)``,
        mask ``(B, h*w)`` all True (``h, w = encoders["image"].grid_size(H, W)``).
        """
        if modality not in self.encoders:
            raise UserError(f"this model has no {modality} encoder (its modalities: {', '.join(self.encoders)})")
        if modality == "image":
            return self.encoders["image"](x)
        if lengths is None:
            raise ValueError("audio encoding needs lengths (B,)")
        return self.encoders[modality](x, lengths, chunk_size, left_chunks)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, targets: list[list[int]],
                prefix: list[int], modality: str = "audio", repeat: torch.Tensor | None = None,
                ss_prob: float = 0.0, advantages: torch.Tensor | None = None,
                self_critical: SelfCritical | None = None) -> dict[str, torch.Tensor]:
        """Training loss for a batch of one modality.

        x, lengths: as for :meth:`encode`; targets: N lists of unit ids (no specials); prefix: the
        decoder start sequence, e.g. ``[SOS]`` or ``tokenizer.prefix("caption")``.
        repeat: (B,) long, targets per input (their sum is N; memory is repeated, the encoder runs
        once per input), default one each.
        ss_prob: scheduled sampling, the chance that a decoder input token is replaced by the
        model's own sample (:func:`scheduled_sampling_inputs`).
        advantages: (N,) policy-gradient weights (SCST: reward minus baseline); the attention loss
        is then ``-Σ advantage · log p(target token) / number of tokens`` instead of the cross-entropy.
        self_critical: instead of ``targets``, sample captions and train on their rewards (one
        encoder pass; adds ``reward`` and ``reward_baseline`` to the output).
        Returns ``loss``, ``loss_att``, ``acc`` (attention token accuracy), ``loss_ctc`` (audio with
        a CTC head) and ``loss_attn_penalty`` (image, ``model.attention_penalty > 0``).
        """
        memory, mask = self.encode(x, lengths, modality)
        extra = {}
        if self_critical is not None:
            targets, advantages, extra = self._self_critical(memory, mask, prefix, self_critical)
            repeat = torch.full((memory.size(0),), self_critical.samples, dtype=torch.long, device=memory.device)
        if repeat is not None:
            memory, mask = memory.repeat_interleave(repeat, dim=0), mask.repeat_interleave(repeat, dim=0)
        ys_in, ys_out = decoder_io(targets, prefix, memory.device)
        if ss_prob > 0:
            ys_in = scheduled_sampling_inputs(self.decoder, ys_in, memory, mask, len(prefix), ss_prob)
        penalty = modality == "image" and self.cfg.attention_penalty > 0
        logits = self.decoder(ys_in, memory, mask, return_attention=penalty)
        if penalty:
            logits, attn = logits
        valid = ys_out != IGNORE_ID
        if advantages is None:
            loss_att = label_smoothing_loss(logits, ys_out, self.cfg.lsm_weight)
        else:
            loss_att = policy_gradient_loss(logits, ys_out, advantages)
        acc = ((logits.argmax(-1) == ys_out) & valid).sum() / valid.sum().clamp(min=1)
        out = {"loss_att": loss_att, "acc": acc}
        loss = loss_att
        if penalty:
            out["loss_attn_penalty"] = doubly_stochastic_penalty(attn, valid, mask) * self.cfg.attention_penalty
            loss = loss + out["loss_attn_penalty"]
        if self.ctc is not None and modality == "audio":
            lam = self.cfg.ctc_weight
            out["loss_ctc"] = ctc_loss(self.ctc(memory), mask.sum(1), targets)
            loss = lam * out["loss_ctc"] + (1 - lam) * loss
        out["loss"] = loss
        return {**out, **extra}

    def _self_critical(self, memory, mask, prefix, sc: SelfCritical):
        """-> (sampled targets, advantages (B*K,), logged rewards)."""
        with torch.no_grad():
            sampled, greedy = sc.rollouts(self.decoder, memory.detach(), mask, prefix)
        rewards, baseline = sc.reward(sampled, greedy)
        advantages = (rewards - baseline).to(memory.device, torch.float32)
        return sampled, advantages, {"reward": rewards.mean().to(memory.device),
                                     "reward_baseline": baseline.mean().to(memory.device)}


def param_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def scheduled_sampling_inputs(decoder, ys_in: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor,
                              prefix_len: int, prob: float) -> torch.Tensor:
    """Scheduled sampling in two passes (parallel, so it works the same for every decoder).

    A teacher-forced pass without gradients predicts every position; each decoder input after the
    prefix is then, with probability ``prob``, replaced by a token sampled from the prediction
    made for it. ``ys_in: (N, U)`` -> ``(N, U)``.
    """
    with torch.no_grad():
        logits = decoder(ys_in, memory, mask).float()
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-10, 1.0)))
        sampled = (logits + gumbel).argmax(-1)              # sampled[:, k] is a guess for ys_in[:, k + 1]
    swap = torch.rand(ys_in.shape, device=ys_in.device) < prob
    swap[:, :prefix_len] = False
    mixed = ys_in.clone()
    mixed[:, 1:] = torch.where(swap[:, 1:], sampled[:, :-1], ys_in[:, 1:])
    return mixed


def policy_gradient_loss(logits: torch.Tensor, targets: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """``-Σ_n advantage_n Σ_t log p(y_nt) / (number of target tokens)``; logits (N, U, V), targets (N, U)."""
    valid = targets != IGNORE_ID
    logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return -(advantages.unsqueeze(1) * logp * valid).sum() / valid.sum().clamp(min=1)


def doubly_stochastic_penalty(attn: torch.Tensor, valid: torch.Tensor, memory_mask: torch.Tensor) -> torch.Tensor:
    """Show, Attend and Tell's ``Σ_i (1 - Σ_t α_t,i)²`` summed over captions, divided by the number of
    target tokens (so it scales like the per-token cross-entropy it is added to).

    attn: (N, U, T) cross-attention; valid: (N, U) bool target positions; memory_mask: (N, T) bool.
    """
    coverage = (attn.float() * valid.unsqueeze(-1)).sum(1)                # (N, T)
    return (((1.0 - coverage) ** 2) * memory_mask).sum() / valid.sum().clamp(min=1)


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
