"""The image front-end: a torchvision ResNet trunk -> a spatial grid -> the decoder's memory.

``pixels (B, 3, H, W)`` (normalised, see :mod:`s2s_media.frontend.vision`) -> trunk up to ``layer3``
(stride 16) or ``layer4`` (stride 32) -> ``(B, C, h, w)`` -> 1x1 projection to ``d_model`` ->
plus 2-D positions (learned row + column embeddings, or fixed 2-D sinusoids) -> optionally a
few Transformer encoder layers (the same :class:`~s2s_media.models.attention_encoder.EncoderBlock`
the audio encoders use) -> ``memory (B, h*w, d_model)`` in row-major order, mask all True.

Weights: random init, or a local torchvision ``state_dict`` file (``weights: path``), loaded by
the trainer with :meth:`ImageEncoder.load_trunk_weights` (never downloaded; rebuilding a trained
model from its checkpoint does not need the file). ``finetune_blocks`` freezes the trunk (0) or
trains only its last N stages of ``layer1..layer4``; frozen stages keep their BatchNorm statistics.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torchvision
from torch import nn

from s2s_media.errors import UserError
from s2s_media.models.attention_encoder import EncoderBlock, TransformerEncoderConfig

_TRUNKS = {"resnet18": (torchvision.models.resnet18, 64), "resnet34": (torchvision.models.resnet34, 64),
           "resnet50": (torchvision.models.resnet50, 256)}   # constructor, channels out of layer1


@dataclass
class ResNetEncoderConfig:
    trunk: Literal["resnet18", "resnet34", "resnet50"] = "resnet18"
    weights: str | None = None          # torchvision state_dict (.pth) loaded when training starts; None = random
    grid_layer: int = 4                 # the grid comes out of layer3 (stride 16) or layer4 (stride 32)
    finetune_blocks: int = -1           # trained stages counted from grid_layer down: 0 freezes the trunk,
                                        # N trains the last N of layer1..layer{grid_layer}; -1 trains it all, stem too
    d_model: int = 256                  # memory width (= the decoder's)
    pos: Literal["learned", "sinusoidal"] = "sinusoidal"
    max_grid: int = 32                  # learned positions: the largest grid side
    n_layers: int = 0                   # Transformer encoder layers over the grid
    n_heads: int = 4
    ffn_dim: int = 1024
    dropout: float = 0.1

    def __post_init__(self):
        if self.grid_layer not in (3, 4):
            raise ValueError(f"grid_layer must be 3 or 4, got {self.grid_layer}")
        if not -1 <= self.finetune_blocks <= self.grid_layer:
            raise ValueError(f"finetune_blocks must be -1 (all) or within [0, grid_layer={self.grid_layer}], "
                             f"got {self.finetune_blocks}")
        if self.pos == "sinusoidal" and self.d_model % 4:
            raise ValueError(f"sinusoidal 2-D positions need d_model divisible by 4, got {self.d_model}")
        if self.n_layers and self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")


def sinusoid_2d(h: int, w: int, d: int) -> torch.Tensor:
    """Fixed 2-D positions ``(h*w, d)``: the first d/2 channels encode the row, the rest the column."""
    half = d // 2
    div = torch.exp(torch.arange(0, half, 2, dtype=torch.float32) * (-math.log(10000.0) / half))

    def one_axis(n: int) -> torch.Tensor:
        pos = torch.arange(n, dtype=torch.float32).unsqueeze(1) * div
        return torch.stack([pos.sin(), pos.cos()], dim=2).reshape(n, half)   # (n, half), sin/cos interleaved
    rows, cols = one_axis(h), one_axis(w)
    return torch.cat([rows[:, None].expand(h, w, half), cols[None, :].expand(h, w, half)], dim=2).reshape(h * w, d)


class LearnedPos2d(nn.Module):
    """``row[i] + col[j]`` for a grid of up to ``max_grid`` x ``max_grid``."""

    def __init__(self, max_grid: int, d: int):
        super().__init__()
        self.rows, self.cols = nn.Parameter(torch.randn(max_grid, d) * 0.02), nn.Parameter(torch.randn(max_grid, d) * 0.02)

    def forward(self, h: int, w: int) -> torch.Tensor:
        """-> ``(h*w, d)``"""
        if max(h, w) > self.rows.size(0):
            raise UserError(f"image grid {h}x{w} is larger than the learned positions "
                            f"(image_encoder_conf.max_grid={self.rows.size(0)}); use smaller images")
        return (self.rows[:h, None] + self.cols[None, :w]).reshape(h * w, -1)


def _halve(n: int) -> int:
    """Output side of a stride-2 conv or pool with 'same' padding, as in ResNet."""
    return (n - 1) // 2 + 1


class ImageEncoder(nn.Module):
    """``forward(pixels: (B, 3, H, W), lengths=None) -> (memory (B, h*w, d_model), mask (B, h*w) all True)``."""

    Config = ResNetEncoderConfig

    def __init__(self, cfg: ResNetEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.output_dim = cfg.d_model
        make, c1 = _TRUNKS[cfg.trunk]
        trunk = make(weights=None)
        del trunk.fc, trunk.avgpool
        if cfg.grid_layer == 3:
            del trunk.layer4
        self.trunk = trunk
        channels = c1 * 2 ** (cfg.grid_layer - 1)
        self.proj = nn.Conv2d(channels, cfg.d_model, 1)
        self.norm_in = nn.LayerNorm(cfg.d_model)
        self.pos = LearnedPos2d(cfg.max_grid, cfg.d_model) if cfg.pos == "learned" else None
        self.dropout = nn.Dropout(cfg.dropout)
        block_cfg = TransformerEncoderConfig(d_model=cfg.d_model, n_heads=cfg.n_heads, n_layers=cfg.n_layers,
                                             ffn_dim=cfg.ffn_dim, dropout=cfg.dropout)
        self.blocks = nn.ModuleList(EncoderBlock(block_cfg, conformer=False) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.d_model) if cfg.n_layers else nn.Identity()
        self._sinusoids: dict[tuple[int, int], torch.Tensor] = {}
        for module in self.frozen_modules():
            module.requires_grad_(False)

    # ------------------------------------------------------------------ trunk
    def stages(self) -> list[nn.Module]:
        """The trunk in order: the stem (conv1, bn1) then layer1..layer{grid_layer}."""
        t = self.trunk
        return [nn.ModuleList([t.conv1, t.bn1])] + [getattr(t, f"layer{i}") for i in range(1, self.cfg.grid_layer + 1)]

    def frozen_modules(self) -> list[nn.Module]:
        """Trunk stages whose weights are not trained (the stem whenever some layer is frozen)."""
        n = self.cfg.finetune_blocks
        if n < 0:
            return []
        stages = self.stages()
        return stages[: len(stages) - n]

    def train(self, mode: bool = True):
        """Frozen stages stay in eval mode: their BatchNorm keeps its (pretrained) statistics."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def load_trunk_weights(self, path: str | Path) -> None:
        """Load a torchvision ResNet ``state_dict`` file (``fc.*`` and unused layers are ignored)."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"{path}: image encoder weights not found (model.image_encoder_conf.weights)")
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unreadable file gets one line
            raise UserError(f"{path}: not a readable torch state_dict ({type(e).__name__})") from None
        if isinstance(sd, dict) and isinstance(sd.get("state_dict", sd.get("model")), dict):
            sd = sd.get("state_dict", sd.get("model"))
        if not isinstance(sd, dict):
            raise UserError(f"{path}: expected a state_dict (a mapping of parameter names to tensors)")
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        own = self.trunk.state_dict()
        wanted = {k: v for k, v in sd.items() if k in own}
        # very old torchvision files have no BatchNorm step counters; they are not weights
        missing = sorted(k for k in set(own) - set(wanted) if not k.endswith("num_batches_tracked"))
        if missing:
            raise UserError(f"{path}: does not hold {self.cfg.trunk} weights (missing {missing[:3]}, "
                            f"{len(missing)} in all); is it a torchvision {self.cfg.trunk} state_dict?")
        unused = {"fc"} | {f"layer{i}" for i in range(self.cfg.grid_layer + 1, 5)}
        extra = sorted(k for k in set(sd) - set(own) if k.split(".")[0] not in unused)
        if extra:
            raise UserError(f"{path}: holds weights a {self.cfg.trunk} does not have ({extra[:2]}, {len(extra)} in all); "
                            f"is it a torchvision {self.cfg.trunk} state_dict?")
        bad = [k for k, v in wanted.items() if tuple(v.shape) != tuple(own[k].shape)]
        if bad:
            raise UserError(f"{path}: shape of {bad[0]} is {tuple(wanted[bad[0]].shape)}, {self.cfg.trunk} "
                            f"needs {tuple(own[bad[0]].shape)}; is it a {self.cfg.trunk} file?")
        self.trunk.load_state_dict(wanted, strict=False)

    # ------------------------------------------------------------------ shapes
    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """The ``(h, w)`` grid an image of ``height x width`` pixels gives (memory length ``h * w``)."""
        for _ in range(2 + self.cfg.grid_layer - 1):   # conv1 + maxpool, then layer2..layer{grid_layer}
            height, width = _halve(height), _halve(width)
        return height, width

    def _positions(self, h: int, w: int, device, dtype) -> torch.Tensor:
        if self.pos is not None:
            return self.pos(h, w).to(dtype)
        if (h, w) not in self._sinusoids:
            self._sinusoids[(h, w)] = sinusoid_2d(h, w, self.cfg.d_model)
        return self._sinusoids[(h, w)].to(device=device, dtype=dtype)

    def forward(self, pixels: torch.Tensor, lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if pixels.dim() != 4 or pixels.size(1) != 3:
            raise ValueError(f"pixels must be (batch, 3, height, width), got {tuple(pixels.shape)}")
        t = self.trunk
        x = t.maxpool(t.relu(t.bn1(t.conv1(pixels))))
        for i in range(1, self.cfg.grid_layer + 1):
            x = getattr(t, f"layer{i}")(x)
        x = self.proj(x)                                     # (B, d, h, w)
        b, d, h, w = x.shape
        x = self.norm_in(x.flatten(2).transpose(1, 2))       # (B, h*w, d), row-major
        x = self.dropout(x + self._positions(h, w, x.device, x.dtype))
        for block in self.blocks:
            x = block(x, None, None)
        mask = torch.ones(b, h * w, dtype=torch.bool, device=x.device)
        return self.final_norm(x), mask
