"""Training from tar shards under DDP: 2 gloo processes x 2 DataLoader workers over 8 shards. Each
worker reads only its own shards, every utterance is trained on once per epoch, and a run killed
(SIGKILL) mid-epoch resumes from last.pt and finishes the epoch with exactly the utterances left."""
from __future__ import annotations

import json
import multiprocessing
import os
import signal
from pathlib import Path

import pytest
import torch

import subprocs
from fixtures_make import TINY_MODEL
from format_fixtures import write_corpus
from s2s_media.config import load_config
from s2s_media.data.manifest import read_manifest
from s2s_media.data.shards import ShardItem, write_shards
from s2s_media.training.checkpoint import load_checkpoint
from s2s_media.training.run import run_training
from s2s_media.training.tasks import AsrTask

CONF = Path(__file__).resolve().parents[2] / "recipes/synthetic_speech/conf/conformer.yaml"


def _rank(rank: int, port: int, overrides: list[str], log_dir: str, kill_at: int) -> None:
    """One DDP rank; logs the ids of every batch it trains on and the shards each worker reads,
    and kills itself (SIGKILL, nothing saved) on reaching batch ``kill_at`` (0: never)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE="2", OMP_NUM_THREADS="1")
    multiprocessing.set_start_method("fork", force=True)   # DataLoader workers forked, as under torchrun
    logs = Path(log_dir)
    trained = [0]
    loss, load = AsrTask.loss, ShardItem.load

    def logged_loss(self, net, model, batch, device, ss_prob):
        trained[0] += 1
        if trained[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        with open(logs / f"trained-{rank}.jsonl", "a") as f:
            f.write(json.dumps(batch["ids"]) + "\n")
        return loss(self, net, model, batch, device, ss_prob)

    def logged_load(self):
        worker = torch.utils.data.get_worker_info()
        if worker is not None:    # the main process reads a few for the CMVN statistics
            with open(logs / f"reads-{rank}-{worker.id}.txt", "a") as f:
                f.write(self.shard + "\n")
        return load(self)

    AsrTask.loss, ShardItem.load = logged_loss, logged_load
    run_training(load_config(CONF, overrides))


def _run(overrides: list[str], logs: Path, kill_at: int = 0) -> list[int]:
    logs.mkdir()
    ctx = multiprocessing.get_context("spawn")
    port = subprocs.free_port()
    procs = [ctx.Process(target=_rank, args=(r, port, overrides, str(logs), kill_at)) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=800)
        if p.is_alive():
            p.kill()
    return [p.exitcode for p in procs]


def _trained(logs: Path, rank: int) -> list[list[str]]:
    path = logs / f"trained-{rank}.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.is_file() else []


def _owners(logs: Path) -> dict[str, set[str]]:
    """shard -> the (rank, worker) streams that read it"""
    owners: dict[str, set[str]] = {}
    for path in logs.glob("reads-*.txt"):
        for shard in set(path.read_text().split()):
            owners.setdefault(shard, set()).add(path.stem)
    return owners


@pytest.mark.timeout(900)   # four processes start twice: about a minute on 2 idle cores, far longer under load
def test_ddp_workers_stream_disjoint_shards_and_resume_after_a_kill(tmp_path):
    rows = write_corpus(tmp_path / "corpus", 48, seed=3)
    records = read_manifest(tmp_path / "corpus/train.jsonl")
    for k in range(8):                                    # 8 shards of 6 utterances
        write_shards(records[6 * k:6 * k + 6], tmp_path / "shards", shard_seconds=1e9, prefix=f"train{k}", seed=k)
    exp = tmp_path / "exp"
    overrides = TINY_MODEL + [
        f"data.train={{shards: '{tmp_path / 'shards'}'}}", 'data.dev=""', f"train.exp_dir={exp}", "train.epochs=1",
        "train.device=cpu", "train.threads=1", "data.num_workers=2", "data.max_batch_seconds=4", "data.num_buckets=2",
        "data.shuffle_buffer=4", "train.save_interval=2"]

    codes = _run(overrides, tmp_path / "run1", kill_at=6)
    assert codes == [-signal.SIGKILL, -signal.SIGKILL]
    state = load_checkpoint(exp / "last.pt")
    done = state["trainer"]["consumed"]
    assert state["trainer"]["epoch"] == 0 and done == 4          # the save at step 4; step 5 is lost with the kill
    positions = state["sampler"]["tasks"][0]["positions"]
    assert len(positions) == 4 and all(p[0].endswith(".tar") for p in positions)

    assert _run(overrides, tmp_path / "run2") == [0, 0]
    summary = json.loads((exp / "summary.json").read_text())
    assert summary["epoch"] == 1 and summary["skipped"] == 0 and summary["ranks_in_sync"]

    seen = []
    for rank in range(2):
        first, rest = _trained(tmp_path / "run1", rank), _trained(tmp_path / "run2", rank)
        assert len(first) == 5 and len(first[:done]) + len(rest) == len(rest) + 4
        seen += [uid for batch in first[:done] + rest for uid in batch]
    assert sorted(seen) == sorted(r["id"] for r in rows)          # none twice, none missed
    for run in ("run1", "run2"):
        owners = _owners(tmp_path / run)
        assert all(len(streams) == 1 for streams in owners.values()), owners    # one stream per shard
    assert len(_owners(tmp_path / "run1")) == 8
