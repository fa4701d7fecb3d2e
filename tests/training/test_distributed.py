"""Decisions the DDP ranks take together."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from s2s_media.training.distributed import DistInfo, main_rank_decides


def _decide(rank: int, port: int, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        info = DistInfo(rank=rank, local_rank=rank, world_size=2)
        # each rank measured its own clock: only rank 0 is out of budget
        out[rank] = int(main_rank_decides(rank == 0, info, torch.device("cpu")))
        out[2 + rank] = int(main_rank_decides(False, info, torch.device("cpu")))
    finally:
        dist.destroy_process_group()


def test_every_rank_takes_rank_0s_decision():
    out = mp.get_context("spawn").Array("i", 4)
    mp.spawn(_decide, args=(29533, out), nprocs=2, join=True)
    assert list(out) == [1, 1, 0, 0]


def test_without_ddp_the_flag_is_returned():
    info = DistInfo(rank=0, local_rank=0, world_size=1)
    assert main_rank_decides(True, info, torch.device("cpu")) is True
    assert main_rank_decides(False, info, torch.device("cpu")) is False
