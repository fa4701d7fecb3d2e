"""Device choice, mixed precision, and DDP set-up for ``torchrun`` (single process otherwise)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from s2s_media.device import pick_device  # noqa: F401 - training picks its device here too


def amp_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for full precision. AMP is used on CUDA only."""
    if device.type != "cuda" or choice == "off":
        return None
    if choice == "fp16":
        return torch.float16
    if choice == "bf16" or torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float16


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device_choice: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and device_choice != "cpu"
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def main_rank_decides(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank: a decision all ranks must take together (e.g. stopping on a
    time budget, which each rank would otherwise measure on its own clock and take a step apart,
    leaving the others waiting in the next gradient all-reduce)."""
    if not info.enabled:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def params_checksum(model: torch.nn.Module) -> torch.Tensor:
    """A float64 fingerprint of all parameters, to check that DDP ranks agree."""
    return torch.stack([p.detach().double().sum() + (p.detach().double() ** 2).sum() for p in model.parameters()]).sum()


def ranks_in_sync(model: torch.nn.Module, info: DistInfo) -> bool:
    """True when every rank holds the same weights (always True without DDP)."""
    if not info.enabled:
        return True
    mine = params_checksum(model).reshape(1).to(next(model.parameters()).device)
    gathered = [torch.zeros_like(mine) for _ in range(info.world_size)]
    dist.all_gather(gathered, mine)
    return all(torch.equal(g, gathered[0]) for g in gathered)
