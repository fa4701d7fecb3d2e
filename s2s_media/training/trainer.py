"""The training loop: dynamic batches, hybrid loss, accumulation, AMP, DDP, validation,
best-checkpoint keeping, exact resume, TensorBoard and a tqdm bar.

What is trained comes from :mod:`s2s_media.training.tasks`: ASR, captioning, or both for a
multimodal model (batches of the two tasks interleaved, one checkpoint).

Resume state lives in ``<exp_dir>/last.pt``: model, optimizer, scheduler, scaler, sampler
position, torch/python RNG and the trainer's counters; the one before it is kept as
``last.prev.pt``, which resume falls back to (with a warning) when ``last.pt`` is unreadable. A
``train_log.jsonl`` whose last line a crash cut off is resumed with a warning. SIGINT or SIGTERM (Ctrl-C, ``kill``, a
container stop; torchrun passes them to every rank) ends the run cleanly after the current
update, with ``last.pt`` written: nothing trained is lost. A second signal stops at once. Data augmentation is seeded by
(seed, epoch, index), so a resumed run sees exactly the batches an unbroken run would.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from s2s_media.config import Config, ScheduledSamplingConfig, to_dict
from s2s_media.data.dataset import worker_init
from s2s_media.errors import UserError
from s2s_media.models.seq2seq import Seq2SeqModel
from s2s_media.plots import plot_training_curves
from s2s_media.text.language import get_language
from s2s_media.text.tokenizer import Tokenizer
from s2s_media.training.checkpoint import load_checkpoint, save_checkpoint
from s2s_media.training.distributed import (DistInfo, amp_dtype, barrier, main_rank_decides, pick_device,
                                             ranks_in_sync)
from s2s_media.training.schedule import make_schedule
from s2s_media.training.tasks import MultiTaskBatchSampler, MultiTaskCollate, MultiTaskDataset, Task

log = logging.getLogger("s2s_media.train")


@dataclass
class TrainerState:
    """Counters that must survive a restart."""
    step: int = 0                 # optimizer steps
    epoch: int = 0
    consumed: int = 0             # batches of the current epoch already trained on
    elapsed: float = 0.0          # seconds of training so far, over all restarts
    data_wait: float = 0.0        # of which spent waiting for the next batch (the data pipeline's share)
    audio_seconds: float = 0.0
    images: int = 0               # images trained on (captioning)
    skipped: int = 0              # bad utterances/images skipped
    best: list = field(default_factory=list)   # [[score, path], ...] ascending (lower is better)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def sampling_probability(cfg: ScheduledSamplingConfig, step: int) -> float:
    """Scheduled sampling: the chance of feeding a sampled token at optimizer ``step`` (0 until
    ``start_step``, reaching ``max_prob`` after ``ramp_steps`` more: linearly, or along an inverse
    sigmoid that is half-way at mid-ramp)."""
    if cfg.max_prob <= 0 or step < cfg.start_step:
        return 0.0
    progress = min(1.0, (step - cfg.start_step) / max(1, cfg.ramp_steps))
    if cfg.schedule == "inverse_sigmoid":
        progress = 1.0 / (1.0 + math.exp(-12.0 * (progress - 0.5)))
    return cfg.max_prob * progress


class Trainer:
    def __init__(self, cfg: Config, model: Seq2SeqModel, tokenizer: Tokenizer, cmvn: dict | None,
                 tasks: list[Task], dist_info: DistInfo):
        self.cfg, self.tokenizer, self.cmvn, self.dist = cfg, tokenizer, cmvn, dist_info
        t = cfg.train
        self.exp = Path(t.exp_dir)
        self.device = pick_device(t.device)
        if self.device.type == "cpu" and t.threads:
            torch.set_num_threads(t.threads)
        self.amp = amp_dtype(t.amp, self.device)
        self.model = model.to(self.device)
        # with several tasks, each batch leaves the other modality's encoder (and the CTC head) unused
        self.ddp = (DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda"
                                            else None, find_unused_parameters=len(tasks) > 1)
                    if dist_info.enabled else None)
        self.tasks = tasks
        self.train_set = MultiTaskDataset([task.dataset for task in tasks])
        self.sampler = MultiTaskBatchSampler([task.sampler for task in tasks], seed=t.seed)
        self.collate = MultiTaskCollate(tasks)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas),
                                           weight_decay=cfg.optim.weight_decay, fused=True)
        self.steps_per_epoch = max(1, len(self.sampler) // cfg.optim.accum_grad)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, make_schedule(cfg.optim, self.steps_per_epoch * t.epochs))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.state = TrainerState()
        self.writer = None
        self.history: list[dict] = []
        self.stop_requested = False    # set by SIGINT/SIGTERM during fit()

    # ------------------------------------------------------------------ checkpoints
    def _base(self) -> dict:
        return {"model": self.model.state_dict(), "config": to_dict(self.cfg), "tokenizer": self.tokenizer.to_dict(),
                "cmvn": self.cmvn, "meta": {"step": self.state.step, "epoch": self.state.epoch,
                                            "world_size": self.dist.world_size}}

    def save_resume(self) -> None:
        """``last.pt``: everything needed to continue exactly from here (main rank only). The previous
        one is kept as ``last.prev.pt`` (a rename), so a ``last.pt`` damaged later still leaves a resume point."""
        if not self.dist.is_main:
            return
        last = self.exp / "last.pt"
        if last.is_file():
            os.replace(last, self.exp / "last.prev.pt")
        save_checkpoint({**self._base(), "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                         "sampler": self.sampler.state_dict(self.state.consumed), "trainer": self.state.to_dict(),
                         "rng": {"torch": torch.get_rng_state(), "python": _py_rng_to_list(random.getstate()),
                                 "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}},
                        self.exp / "last.pt")

    def _resume_checkpoint(self) -> tuple[Path, dict] | None:
        """The newest readable resume state: ``last.pt``, else ``last.prev.pt`` (with a warning naming
        both); None for a fresh run."""
        last, prev = self.exp / "last.pt", self.exp / "last.prev.pt"
        if not last.is_file() and not prev.is_file():
            return None
        what_to_do = (f"move {last} away to train again from the start, or start a new train.exp_dir "
                      "initialised from one of its epoch_*.pt/best_step*.pt (these hold weights only)")
        try:
            return last, load_checkpoint(last)
        except UserError as e:
            if not prev.is_file():
                raise UserError(f"{e}; no {prev.name} to fall back to: {what_to_do}") from None
            reason = str(e)
        try:
            ck = load_checkpoint(prev)
        except UserError as e:
            raise UserError(f"{reason}; {e}; {what_to_do}") from None
        log.warning("%s; resuming from the previous resume state %s instead (step %d)", reason, prev,
                    ck["trainer"]["step"])
        return prev, ck

    def try_resume(self) -> bool:
        found = self._resume_checkpoint()
        if found is None:
            return False
        path, ck = found
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
        with self._stop_on_signals():
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
        return torch.utils.data.DataLoader(self.train_set, batch_sampler=self.sampler, collate_fn=self.collate,
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
                   disable=not self.dist.is_main or not sys.stderr.isatty(), dynamic_ncols=True, mininterval=2.0)
        window = {task.unit: 0.0 for task in self.tasks}
        window_start = time.time()
        waiting = time.time()
        for batch in self._loader():
            st.data_wait += time.time() - waiting
            st.consumed += 1
            bar.update(1)
            self._count_bad(batch)
            boundary = st.consumed % accum == 0
            task = self.tasks[batch["task"]]
            if batch["ids"]:
                sync = boundary or self.ddp is None
                ss_prob = sampling_probability(self.cfg.train.scheduled_sampling, st.step)
                with net.no_sync() if not sync else contextlib.nullcontext():
                    with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
                        out = task.loss(net, self.model, batch, self.device, ss_prob)
                    self.scaler.scale(out["loss"] / accum).backward()
                st.audio_seconds += batch["seconds"]
                st.images += batch.get("images", 0)
                window[task.unit] += task.amount(batch)
            if not boundary:
                waiting = time.time()
                continue
            self._optimizer_step()
            if st.step % self.cfg.train.log_interval == 0 and batch["ids"]:
                elapsed = max(1e-6, time.time() - window_start)
                rates = {unit: amount * self.dist.world_size / elapsed for unit, amount in window.items()}
                self._log_train(out, rates, task.name, ss_prob, bar)
                window = {unit: 0.0 for unit in window}
                window_start = time.time()
            if self.cfg.train.valid_interval and st.step % self.cfg.train.valid_interval == 0:
                self.validate()
            st.elapsed = time.time() - started
            if st.step % self.cfg.train.save_interval == 0:
                self.save_resume()
            if main_rank_decides(self.stop_requested or self._out_of_budget(budget), self.dist, self.device):
                t = self.cfg.train
                why = ("on a signal" if self.stop_requested else f"(train.max_minutes={t.max_minutes:g}, "
                       f"train.max_steps={t.max_steps}, train.max_audio_hours={t.max_audio_hours:g})")
                log.info("stopping at step %d after %.1f min %s; the same command resumes from %s", st.step,
                         st.elapsed / 60, why, self.exp / "last.pt")
                bar.close()
                return True
            waiting = time.time()
        bar.close()
        return False

    @contextlib.contextmanager
    def _stop_on_signals(self):
        """While training: the first SIGINT/SIGTERM asks for a clean stop after the current update;
        a second one raises KeyboardInterrupt (stop now, keeping the last saved ``last.pt``)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(signum, frame):
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            log.warning("%s: stopping after this update and saving %s (again to stop at once)",
                        signal.Signals(signum).name, self.exp / "last.pt")

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _out_of_budget(self, budget_s: float) -> bool:
        t = self.cfg.train
        audio_hours = self.state.audio_seconds * self.dist.world_size / 3600   # ranks see equal shares
        return (self.state.elapsed >= budget_s or (t.max_steps > 0 and self.state.step >= t.max_steps)
                or (t.max_audio_hours > 0 and audio_hours >= t.max_audio_hours))

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
            log.warning("skipping %s %s: %s (%d skipped so far)", "image" if "images" in batch else "utterance",
                        bad.id, bad.reason, self.state.skipped)

    def _end_epoch(self) -> None:
        st = self.state
        metrics = self.validate()
        st.epoch += 1
        st.consumed = 0
        if self.dist.is_main:
            save_checkpoint(self._base(), self.exp / f"epoch_{st.epoch}.pt")
            epochs = sorted(self.exp.glob("epoch_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
            for old in epochs[: -self.cfg.train.keep_last]:
                old.unlink()
            shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            log.info("epoch %d done: %s", st.epoch, shown or "no dev data")
        self.save_resume()

    # ------------------------------------------------------------------ validation
    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Each task's dev metrics on the main rank; keeps the best checkpoints (``train.best_metric``)."""
        metrics: dict[str, float] = {}
        if self.dist.is_main and any(task.dev for task in self.tasks):
            metrics = self._validate_main()
        barrier(self.dist)
        self.model.train()
        return metrics

    def _validate_main(self) -> dict[str, float]:
        self.model.eval()
        metrics: dict[str, float] = {}
        losses = []
        for task in self.tasks:
            if not task.dev:
                continue
            result = task.validate(self.model, self.device)
            losses.append(result.pop("dev_loss"))
            metrics.update(result)
            if len(self.tasks) > 1:
                metrics[f"dev_loss_{task.name}"] = losses[-1]
        metrics = {"dev_loss": sum(losses) / len(losses), **metrics}
        self._record({"step": self.state.step, **metrics})
        self._keep_best(self._best_score(metrics))
        return metrics

    def _best_score(self, metrics: dict[str, float]) -> float:
        """The (lower is better) score of ``train.best_metric``; the dev loss when it is NaN or missing."""
        name = self.cfg.train.best_metric
        if name == "auto":
            names = [task.name for task in self.tasks]
            asr = "dev_" + get_language(self.cfg.tokenizer.language).headline_metric    # dev_cer for zh, ja, th
            name = "dev_loss" if len(names) > 1 else {"asr": asr, "caption": "dev_cider_d"}[names[0]]
        value = metrics.get(name, float("nan"))
        if math.isnan(value):
            return metrics["dev_loss"]
        return -value if name in ("dev_bleu4", "dev_cider_d") else value

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
    def _log_train(self, out: dict, rates: dict[str, float], task: str, ss_prob: float, bar) -> None:
        lr = self.scheduler.get_last_lr()[0]
        rec = {"step": self.state.step, "loss": out["loss"].item(), "loss_att": out["loss_att"].item(),
               "acc": out["acc"].item(), "lr": lr}
        if len(self.tasks) > 1:
            rec[f"loss_{task}"] = rec["loss"]
        for key in ("loss_ctc", "loss_attn_penalty", "reward", "reward_baseline"):
            if key in out:
                rec[key] = out[key].item()
        if ss_prob > 0:
            rec["ss_prob"] = ss_prob
        rec.update({f"{unit}_per_s": rate for unit, rate in rates.items()})
        bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{lr:.2e}", **{unit: f"{rate:.1f}/s" for unit, rate in rates.items()})
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
            self.history = _read_log(path)
            # drop records written after the checkpoint we resumed from
            self.history = [h for h in self.history if h["step"] <= self.state.step]
            path.write_text("".join(json.dumps(h) + "\n" for h in self.history))

    def _write_final(self, in_sync: bool) -> None:
        summary = {"step": self.state.step, "epoch": self.state.epoch, "elapsed_s": self.state.elapsed,
                   # all ranks: each rank counts its own batches, and the ranks' shares are equal
                   "audio_hours": self.state.audio_seconds * self.dist.world_size / 3600, "skipped": self.state.skipped,
                   "audio_s_per_s": self.state.audio_seconds * self.dist.world_size / max(1e-6, self.state.elapsed),
                   "data_wait_share": self.state.data_wait / max(1e-6, self.state.elapsed),
                   "images": self.state.images, "images_per_s": self.state.images / max(1e-6, self.state.elapsed),
                   "world_size": self.dist.world_size, "ranks_in_sync": in_sync, "best": self.state.best}
        (self.exp / "summary.json").write_text(json.dumps(summary, indent=1))
        if self.writer is not None:
            self.writer.close()
        plot_training_curves(self.history, self.exp / "curves.png")


def _read_log(path: Path) -> list[dict]:
    """The records of ``train_log.jsonl``. A last line cut off by a crash is skipped with a warning
    (the caller rewrites the file without it); a bad line elsewhere is a :class:`UserError`."""
    lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    records = []
    for i, (n, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if i < len(lines) - 1:
                raise UserError(f"{path}:{n}: not valid JSON ({e.msg}); fix or delete that line") from None
            log.warning("%s:%d: skipping the last line, cut off (%s)", path, n, e.msg)
    return records


def _py_rng_to_list(state) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _py_rng_from_list(state: list):
    version, internal, gauss = state
    return version, tuple(internal), gauss
