"""The training loop: dynamic batches, hybrid loss, accumulation, AMP, DDP, validation,
best-checkpoint keeping, exact resume, TensorBoard and a tqdm bar.

Resume state lives in ``<exp_dir>/last.pt``: model, optimizer, scheduler, scaler, sampler
position, torch/python RNG and the trainer's counters. Data augmentation is seeded by
(seed, epoch, index), so a resumed run sees exactly the batches an unbroken run would.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from s2s_media.config import Config, to_dict
from s2s_media.data.dataset import AudioDataset, collate, eval_loader, worker_init
from s2s_media.data.manifest import AudioRecord
from s2s_media.data.sampler import BucketingBatchSampler
from s2s_media.decoding.ctc import ctc_greedy
from s2s_media.errors import UserError
from s2s_media.metrics import wer as word_error_rate
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.text.tokenizer import Tokenizer
from s2s_media.training.checkpoint import load_checkpoint, save_checkpoint
from s2s_media.training.distributed import DistInfo, amp_dtype, barrier, pick_device, ranks_in_sync
from s2s_media.training.schedule import make_schedule

log = logging.getLogger("s2s_media.train")


@dataclass
class TrainerState:
    """Counters that must survive a restart."""
    step: int = 0                 # optimizer steps
    epoch: int = 0
    consumed: int = 0             # batches of the current epoch already trained on
    elapsed: float = 0.0          # seconds of training so far, over all restarts
    audio_seconds: float = 0.0
    skipped: int = 0              # bad utterances skipped
    best: list = field(default_factory=list)   # [[wer, path], ...] ascending

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Trainer:
    def __init__(self, cfg: Config, model: Seq2SeqModel, tokenizer: Tokenizer, cmvn: dict,
                 train_records: list[AudioRecord], dev_records: list[AudioRecord], dist_info: DistInfo):
        self.cfg, self.tokenizer, self.cmvn, self.dist = cfg, tokenizer, cmvn, dist_info
        t = cfg.train
        self.exp = Path(t.exp_dir)
        self.device = pick_device(t.device)
        if self.device.type == "cpu" and t.threads:
            torch.set_num_threads(t.threads)
        self.amp = amp_dtype(t.amp, self.device)
        self.model = model.to(self.device)
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None, find_unused_parameters=False)
                    if dist_info.enabled else None)
        self.prefix = tokenizer.prefix("asr" if "asr" in tokenizer.tasks else None)
        d = cfg.data
        train_records = [r for r in train_records if d.min_duration <= r.duration <= d.max_duration]
        self.train_set = AudioDataset(train_records, tokenizer, cfg.model.n_mels, d.augment, seed=t.seed)
        self.sampler = BucketingBatchSampler([r.duration for r in train_records], d.max_batch_seconds,
                                             d.max_batch_size, d.num_buckets, shuffle=True, seed=t.seed,
                                             rank=dist_info.rank, world_size=dist_info.world_size)
        # an evenly spaced subset: manifests are often sorted by speaker
        step = max(1, len(dev_records) // max(1, t.valid_utterances))
        self.dev_records = dev_records[::step][: t.valid_utterances]
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                           weight_decay=cfg.optim.weight_decay, fused=True)
        self.steps_per_epoch = max(1, len(self.sampler) // cfg.optim.accum_grad)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, make_schedule(cfg.optim, self.steps_per_epoch * t.epochs))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.state = TrainerState()
        self.writer = None
        self.history: list[dict] = []

    # ------------------------------------------------------------------ checkpoints
    def _base(self) -> dict:
        return {"model": self.model.state_dict(), "config": to_dict(self.cfg), "tokenizer": self.tokenizer.to_dict(),
                "cmvn": self.cmvn, "meta": {"step": self.state.step, "epoch": self.state.epoch,
                                            "world_size": self.dist.world_size}}

    def save_resume(self) -> None:
        """``last.pt``: everything needed to continue exactly from here (main rank only)."""
        if not self.dist.is_main:
            return
        save_checkpoint({**self._base(), "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                         "sampler": self.sampler.state_dict(self.state.consumed), "trainer": self.state.to_dict(),
                         "rng": {"torch": torch.get_rng_state(), "python": _py_rng_to_list(random.getstate()),
                                 "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}},
                        self.exp / "last.pt")

    def try_resume(self) -> bool:
        path = self.exp / "last.pt"
        if not path.is_file():
            return False
        ck = load_checkpoint(path)
        saved_world = ck.get("meta", {}).get("world_size", 1)
        if saved_world != self.dist.world_size:
            raise UserError(f"{path}: was written by {saved_world} process(es) but this run has "
                            f"{self.dist.world_size}; resume with the same number of GPUs/processes, or "
                            "start a new train.exp_dir (init from an averaged checkpoint)")
        self.model.load_state_dict(ck["model"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.scaler.load_state_dict(ck["scaler"])
        self.sampler.load_state_dict(ck["sampler"])
        self.state = TrainerState(**ck["trainer"])
        torch.set_rng_state(ck["rng"]["torch"])
        random.setstate(_py_rng_from_list(ck["rng"]["python"]))
        if ck["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
        self._load_history()
        log.info("resumed from %s at epoch %d, step %d, batch %d", path, self.state.epoch, self.state.step,
                 self.state.consumed)
        return True

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainerState:
        t = self.cfg.train
        self.exp.mkdir(parents=True, exist_ok=True)
        self.try_resume()
        if self.dist.is_main:
            from torch.utils.tensorboard import SummaryWriter
            self.writer = SummaryWriter(str(self.exp / "tensorboard"))
        budget = t.max_minutes * 60 if t.max_minutes > 0 else math.inf
        started = time.time() - self.state.elapsed
        stop = self._out_of_budget(budget)
        while self.state.epoch < t.epochs and not stop:
            stop = self._train_epoch(started, budget)
            if not stop:
                self._end_epoch()
        self.state.elapsed = time.time() - started
        in_sync = ranks_in_sync(self.model, self.dist)
        self.save_resume()
        if self.dist.is_main:
            self._write_final(in_sync)
        barrier(self.dist)
        return self.state

    def _loader(self):
        nw = self.cfg.data.num_workers
        # its own generator: creating the iterator must not draw from the global RNG, or a resumed
        # run (which creates it after restoring the RNG) would diverge from an unbroken one
        gen = torch.Generator().manual_seed(self.cfg.train.seed * 1000 + self.state.epoch)
        return torch.utils.data.DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=collate,
                                           num_workers=nw, worker_init_fn=worker_init if nw else None,
                                           prefetch_factor=4 if nw else None, persistent_workers=False,
                                           generator=gen)

    def _train_epoch(self, started: float, budget: float) -> bool:
        """Train the rest of the current epoch; True when the time budget ran out."""
        st, accum = self.state, self.cfg.optim.accum_grad
        self.sampler.set_epoch(st.epoch)
        self.train_set.set_epoch(st.epoch)
        self.model.train()
        net = self.ddp or self.model
        bar = tqdm(total=len(self.sampler), initial=st.consumed, desc=f"epoch {st.epoch}", unit="batch",
                   disable=not self.dist.is_main, dynamic_ncols=True, mininterval=2.0)
        window_audio, window_start = 0.0, time.time()
        for batch in self._loader():
            st.consumed += 1
            bar.update(1)
            self._count_bad(batch)
            boundary = st.consumed % accum == 0
            if batch["ids"]:
                sync = boundary or self.ddp is None
                with net.no_sync() if not sync else contextlib.nullcontext():
                    with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                        out = net(batch["feats"].to(self.device), batch["lengths"].to(self.device),
                                  batch["tokens"], self.prefix)
                    self.scaler.scale(out["loss"] / accum).backward()
                st.audio_seconds += batch["seconds"]
                window_audio += batch["seconds"]
            if not boundary:
                continue
            self._optimizer_step()
            if st.step % self.cfg.train.log_interval == 0 and batch["ids"]:
                rate = window_audio * self.dist.world_size / max(1e-6, time.time() - window_start)
                self._log_train(out, rate, bar)
                window_audio, window_start = 0.0, time.time()
            if self.cfg.train.valid_interval and st.step % self.cfg.train.valid_interval == 0:
                self.validate()
            st.elapsed = time.time() - started
            if st.step % self.cfg.train.save_interval == 0:
                self.save_resume()
            if self._out_of_budget(budget):
                log.info("stopping at step %d after %.1f min (train.max_minutes=%g, train.max_steps=%d)",
                         st.step, st.elapsed / 60, self.cfg.train.max_minutes, self.cfg.train.max_steps)
                bar.close()
                return True
        bar.close()
        return False

    def _out_of_budget(self, budget_s: float) -> bool:
        max_steps = self.cfg.train.max_steps
        return self.state.elapsed >= budget_s or (max_steps > 0 and self.state.step >= max_steps)

    def _optimizer_step(self) -> None:
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        if torch.isfinite(norm):
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.state.step += 1

    def _count_bad(self, batch: dict) -> None:
        for bad in batch["bad"]:
            self.state.skipped += 1
            log.warning("skipping utterance %s: %s (%d skipped so far)", bad.id, bad.reason, self.state.skipped)

    def _end_epoch(self) -> None:
        st = self.state
        wer_value = self.validate()
        st.epoch += 1
        st.consumed = 0
        if self.dist.is_main:
            save_checkpoint(self._base(), self.exp / f"epoch_{st.epoch}.pt")
            epochs = sorted(self.exp.glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
            for old in epochs[: -self.cfg.train.keep_last]:
                old.unlink()
            log.info("epoch %d done: dev WER %.2f%%", st.epoch, 100 * wer_value)
        self.save_resume()

    # ------------------------------------------------------------------ validation
    @torch.inference_mode()
    def validate(self) -> float:
        """Dev loss and CTC-greedy WER on the main rank; keeps the best checkpoints by WER."""
        wer_value = float("nan")
        if self.dist.is_main and self.dev_records:
            wer_value = self._validate_main()
        barrier(self.dist)
        self.model.train()
        return wer_value

    def _validate_main(self) -> float:
        self.model.eval()
        loader = eval_loader(self.dev_records, self.tokenizer, self.cfg.model.n_mels, self.cfg.decode.batch_seconds)
        refs, hyps, loss_sum, n = [], [], 0.0, 0
        for batch in loader:
            if not batch["ids"]:
                continue
            feats, lengths = batch["feats"].to(self.device), batch["lengths"].to(self.device)
            out = self.model(feats, lengths, batch["tokens"], self.prefix)
            loss_sum += float(out["loss"]) * len(batch["ids"])
            n += len(batch["ids"])
            if self.model.ctc is not None:
                memory, mask = self.model.encode(feats, lengths)
                for h in ctc_greedy(self.model.ctc(memory), mask.sum(1)):
                    hyps.append(self.tokenizer.decode(h.tokens))
                refs.extend(batch["texts"])
        wer_value = word_error_rate(refs, hyps).rate if refs else float("nan")
        dev_loss = loss_sum / max(1, n)
        self._record({"step": self.state.step, "dev_loss": dev_loss, "dev_wer": wer_value})
        self._keep_best(wer_value if not math.isnan(wer_value) else dev_loss)
        return wer_value

    def _keep_best(self, score: float) -> None:
        best = self.state.best
        k = self.cfg.train.keep_best
        if len(best) >= k and score >= best[-1][0]:
            return
        path = self.exp / f"best_step{self.state.step}.pt"
        save_checkpoint({**self._base(), "meta": {**self._base()["meta"], "dev_score": score}}, path)
        best.append([score, str(path)])
        best.sort(key=lambda x: x[0])
        for _, old in best[k:]:
            Path(old).unlink(missing_ok=True)
        del best[k:]
        (self.exp / "best.json").write_text(json.dumps(best, indent=1))

    # ------------------------------------------------------------------ logging
    def _log_train(self, out: dict, audio_per_s: float, bar) -> None:
        lr = self.scheduler.get_last_lr()[0]
        rec = {"step": self.state.step, "loss": out["loss"].item(), "loss_att": out["loss_att"].item(),
               "acc": out["acc"].item(), "lr": lr, "audio_s_per_s": audio_per_s}
        if "loss_ctc" in out:
            rec["loss_ctc"] = out["loss_ctc"].item()
        bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{lr:.2e}", audio=f"{audio_per_s:.0f}s/s")
        self._record(rec)

    def _record(self, rec: dict) -> None:
        if not self.dist.is_main:
            return
        self.history.append(rec)
        with open(self.exp / "train_log.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.writer is not None:
            for k, v in rec.items():
                if k != "step":
                    self.writer.add_scalar(("dev/" if k.startswith("dev") else "train/") + k, v, rec["step"])
            self.writer.flush()

    def _load_history(self) -> None:
        path = self.exp / "train_log.jsonl"
        if path.is_file():
            self.history = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            # drop records written after the checkpoint we resumed from
            self.history = [h for h in self.history if h["step"] <= self.state.step]
            path.write_text("".join(json.dumps(h) + "\n" for h in self.history))

    def _write_final(self, in_sync: bool) -> None:
        summary = {"step": self.state.step, "epoch": self.state.epoch, "elapsed_s": self.state.elapsed,
                   "audio_hours": self.state.audio_seconds / 3600, "skipped": self.state.skipped,
                   "audio_s_per_s": self.state.audio_seconds / max(1e-6, self.state.elapsed),
                   "world_size": self.dist.world_size, "ranks_in_sync": in_sync, "best": self.state.best}
        (self.exp / "summary.json").write_text(json.dumps(summary, indent=1))
        if self.writer is not None:
            self.writer.close()
        from s2s_media.plots import plot_training_curves
        plot_training_curves(self.history, self.exp / "curves.png")


def _py_rng_to_list(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_rng_from_list(state: list):
    version, internal, gauss = state
    return version, tuple(internal), gauss
