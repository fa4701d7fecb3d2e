"""Training the punctuation and casing model (``s2s-media punctuation train CONF``).

Text is what the speech corpus reads (``fortunes``, ``wordnet`` or UTF-8 files, see
:func:`s2s_media.data.synthetic_speech.source_paragraphs`), kept as written. Paragraphs are split
into sentences; every sentence that overlaps a held-out transcript (``data.exclude`` manifests, the
ASR corpus's dev and test splits) drops its whole paragraph, as :mod:`s2s_media.training.lm` does
for the language model. Paragraphs are dealt to train/dev/test by a hash of their text, and each
sentence is kept once (by normalised text) in the first split that has it.

A training example is a run of 1..``data.max_sentences`` consecutive sentences, re-cut every epoch:
the model learns where one sentence ends and the next begins, as in a transcript of several.
The dev and test runs are cut once (seeded) and written to ``exp_dir/{dev,test}.txt``, one per line,
so ``s2s-media punctuation evaluate`` scores the same text later. The best model by dev score
(mean F1 of ``.`` and ``,`` plus casing accuracy) is written to ``exp_dir/punct.pt``.
"""
from __future__ import annotations

import logging
import math
import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from s2s_media.checkpoint_io import load_checkpoint, save_checkpoint
from s2s_media.config import apply_overrides, read_yaml
from s2s_media.data.synthetic_speech import source_paragraphs, split_sentences
from s2s_media.errors import ConfigError, UserError
from s2s_media.models.punctuation import PunctuationModel, PunctuationModelConfig, from_checkpoint, to_checkpoint
from s2s_media.progress import progress_bar
from s2s_media.text.normalize import normalize_text
from s2s_media.text.punctuation import MARKS, LabelScores, WordVocab, case_of, labels_from_text, mixed_forms
from s2s_media.training.lm import WordSpans, manifest_texts
from s2s_media.typed import from_dict, to_dict

log = logging.getLogger(__name__)
SPLITS = ("train", "dev", "test")


# --------------------------------------------------------------------------- config
@dataclass
class PunctuationDataConfig:
    sources: list[str] = field(default_factory=lambda: ["fortunes", "wordnet"])  # source_paragraphs names or files
    exclude: list[str] = field(default_factory=list)   # manifests whose transcripts stay out (ASR dev/test)
    dev_percent: float = 2.0            # share of paragraphs held out for choosing the best epoch
    test_percent: float = 3.0           # share held out for RESULTS.md
    vocab_size: int = 12000             # word embeddings, pad and unknown included
    min_count: int = 2                  # a word needs this many train sightings for its own embedding
    suffix_buckets: int = 1024          # hashed 3-letter suffixes (unknown words keep their ending)
    max_sentences: int = 4              # an example is 1..max_sentences consecutive sentences
    max_words: int = 120                # ... cut at this many words


@dataclass
class PunctuationTrainConfig:
    exp_dir: str = "exp/punct"
    epochs: int = 6
    batch_words: int = 512              # words per batch, padding included
    lr: float = 3e-3                    # peak Adam learning rate (warm-up, then cosine decay)
    warmup_steps: int = 200
    weight_decay: float = 0.01
    case_weight: float = 1.0            # loss = marks CE + case_weight * case CE
    mark_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 1.0, 1.0])  # CE weight of "" , . ? !
    init_from: str = ""                 # a punctuation model file to go on from (its model config and vocabulary)
    max_minutes: float = 25.0           # stop (keeping the best so far) after this long; 0 = no limit
    threads: int = 1
    seed: int = 0


@dataclass
class PunctuationConfig:
    model: PunctuationModelConfig = field(default_factory=PunctuationModelConfig)
    data: PunctuationDataConfig = field(default_factory=PunctuationDataConfig)
    train: PunctuationTrainConfig = field(default_factory=PunctuationTrainConfig)


def load_punctuation_config(path: str | Path, overrides: list[str] = ()) -> PunctuationConfig:
    """A recipe's YAML (``model``, ``data``, ``train`` sections) with ``--set`` overrides applied."""
    data = apply_overrides(read_yaml(path), list(overrides))
    try:
        cfg = from_dict(PunctuationConfig, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    d = cfg.data
    if not d.sources:
        raise ConfigError(f"{path}: data.sources is empty; name 'fortunes', 'wordnet' or text files")
    if d.dev_percent <= 0 or d.test_percent <= 0 or d.dev_percent + d.test_percent >= 50:
        raise ConfigError(f"{path}: data.dev_percent and data.test_percent must be positive and leave most text "
                          f"for training (got {d.dev_percent} and {d.test_percent})")
    if d.max_sentences < 1 or d.max_words < 2 or d.vocab_size < 3 or d.suffix_buckets < 2:
        raise ConfigError(f"{path}: data.max_sentences >= 1, max_words >= 2, vocab_size >= 3, suffix_buckets >= 2")
    if len(cfg.train.mark_weights) != len(MARKS) or min(cfg.train.mark_weights) <= 0:
        raise ConfigError(f"{path}: train.mark_weights needs {len(MARKS)} positive weights (no mark , . ? !)")
    if cfg.train.epochs < 1 or cfg.train.batch_words < d.max_words:
        raise ConfigError(f"{path}: train.epochs must be >= 1 and train.batch_words >= data.max_words")
    return cfg


# --------------------------------------------------------------------------- text
@dataclass
class Sentence:
    """One written sentence as labelled normalised words."""
    text: str
    words: list[str]
    marks: list[int]
    cases: list[int]
    written: list[str]


def split_of(paragraph: str, dev_percent: float, test_percent: float) -> str:
    """``train``, ``dev`` or ``test`` from a stable hash of the paragraph's text."""
    bucket = zlib.crc32(paragraph.encode("utf-8")) % 10000 / 100
    return "test" if bucket < test_percent else "dev" if bucket < test_percent + dev_percent else "train"


def read_corpus(cfg: PunctuationDataConfig) -> tuple[dict[str, list[list[Sentence]]], dict]:
    """``{split: [paragraph as [Sentence]]}`` and counts, with held-out transcripts left out."""
    held_out = WordSpans(manifest_texts(cfg.exclude))
    splits: dict[str, list[list[Sentence]]] = {s: [] for s in SPLITS}
    seen: set[str] = set()
    stats = {"paragraphs": 0, "excluded_paragraphs": 0, "unaligned_sentences": 0, "repeated_sentences": 0}
    paragraphs = [p for source in cfg.sources for p in source_paragraphs(source)]
    for paragraph in progress_bar(paragraphs, desc="labelling text", unit=" paragraphs"):
        raw = split_sentences(paragraph)
        normalised = [normalize_text(s) for s in raw]
        if any(n and held_out.overlaps(n) for n in normalised):
            stats["excluded_paragraphs"] += 1
            continue
        sentences = []
        for text, norm in zip(raw, normalised):
            if not norm:
                continue
            if norm in seen:
                stats["repeated_sentences"] += 1
                continue
            seen.add(norm)
            words, marks, cases, written = labels_from_text(text)
            if not words:
                stats["unaligned_sentences"] += 1
                continue
            sentences.append(Sentence(text, words, marks, cases, written))
        if sentences:
            splits[split_of(paragraph, cfg.dev_percent, cfg.test_percent)].append(sentences)
            stats["paragraphs"] += 1
    for s in SPLITS:
        stats[f"{s}_sentences"] = sum(len(p) for p in splits[s])
        stats[f"{s}_words"] = sum(len(x.words) for p in splits[s] for x in p)
    if not splits["train"] or not splits["dev"]:
        raise UserError(f"{'+'.join(cfg.sources)}: too little text for train and dev splits ({stats})")
    return splits, stats


def cut_runs(paragraphs: list[list[Sentence]], rng: random.Random, max_sentences: int,
             max_words: int) -> list[list[Sentence]]:
    """The sentences of ``paragraphs`` (in order) cut into runs of 1..``max_sentences`` sentences,
    a run ending before it would pass ``max_words`` (a longer sentence is a run of its own)."""
    runs: list[list[Sentence]] = []
    run: list[Sentence] = []
    n_words, target = 0, rng.randint(1, max_sentences)
    for s in (s for p in paragraphs for s in p):
        if run and (len(run) >= target or n_words + len(s.words) > max_words):
            runs.append(run)
            run, n_words, target = [], 0, rng.randint(1, max_sentences)
        run.append(s)
        n_words += len(s.words)
    if run:
        runs.append(run)
    return runs


@dataclass
class Example:
    ids: list[int]
    suffixes: list[int]
    marks: list[int]
    cases: list[int]


def to_example(run: list[Sentence], vocab: WordVocab, max_words: int) -> Example:
    words = [w for s in run for w in s.words][:max_words]
    ids, sufs = vocab.encode(words)
    return Example(ids, sufs, [m for s in run for m in s.marks][:max_words],
                   [c for s in run for c in s.cases][:max_words])


def batches(examples: list[Example], batch_words: int, rng: random.Random | None = None):
    """Padded batches ``(ids, suffixes, marks, cases)``, each ``(B, T)``, of similar lengths; labels
    pad with -100. Shuffled when ``rng`` is given."""
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].ids))
    groups, group, longest = [], [], 0
    for i in order:
        n = len(examples[i].ids)
        if group and max(longest, n) * (len(group) + 1) > batch_words:
            groups.append(group)
            group, longest = [], 0
        group.append(i)
        longest = max(longest, n)
    if group:
        groups.append(group)
    if rng is not None:
        rng.shuffle(groups)
    for g in groups:
        t = max(len(examples[i].ids) for i in g)
        out = [torch.zeros(len(g), t, dtype=torch.long) for _ in range(2)] + \
              [torch.full((len(g), t), -100, dtype=torch.long) for _ in range(2)]
        for row, i in enumerate(g):
            e = examples[i]
            for tensor, values in zip(out, (e.ids, e.suffixes, e.marks, e.cases)):
                tensor[row, :len(values)] = torch.tensor(values)
        yield tuple(out)


# --------------------------------------------------------------------------- training
def loss_of(model: PunctuationModel, batch, case_weight: float = 1.0,
            mark_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the mark labels (weighted per mark by ``mark_weights``, ``(len(MARKS),)``) and
    case labels of one :func:`batches` batch."""
    ids, sufs, marks, cases = batch
    mark_logits, case_logits = model(ids, sufs)
    ce = nn.functional.cross_entropy
    return ce(mark_logits.flatten(0, 1), marks.flatten(), weight=mark_weights) + \
        case_weight * ce(case_logits.flatten(0, 1), cases.flatten())


@torch.no_grad()
def score(model: PunctuationModel, examples: list[Example], batch_words: int) -> LabelScores:
    """Scores of the model's argmax labels on ``examples``."""
    model.eval()
    scores = LabelScores()
    for ids, sufs, marks, cases in batches(examples, batch_words):
        mark_logits, case_logits = model(ids, sufs)
        pm, pc = mark_logits.argmax(-1), case_logits.argmax(-1)
        for row in range(ids.size(0)):
            n = int((ids[row] != 0).sum())
            scores.add(marks[row, :n].tolist(), cases[row, :n].tolist(), pm[row, :n].tolist(), pc[row, :n].tolist())
    model.train()
    return scores


def dev_score(scores: LabelScores) -> float:
    """What picks the best epoch: mean of the ``.`` and ``,`` F1 and the casing accuracy."""
    s = scores.summary()
    return (s["."]["f1"] + s[","]["f1"] + s["case_accuracy"]) / 3


def build_vocab_and_forms(train: list[list[Sentence]], cfg: PunctuationDataConfig) -> tuple[WordVocab, dict[str, str]]:
    words = [w for p in train for s in p for w in s.words]
    vocab = WordVocab.build(words, cfg.vocab_size, cfg.min_count, suffix_buckets=cfg.suffix_buckets)
    sightings = [(w, f) for p in train for s in p for w, f in zip(s.words, s.written) if f and case_of(f)]
    return vocab, mixed_forms(sightings)


def train_punctuation(cfg: PunctuationConfig, source_name: str = "") -> dict:
    """Train, keep the best model by dev score in ``exp_dir/punct.pt``; returns the final summary."""
    t = cfg.train
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    rng = random.Random(t.seed)
    exp = Path(t.exp_dir)
    exp.mkdir(parents=True, exist_ok=True)
    start = time.time()
    splits, stats = read_corpus(cfg.data)
    log.info("text: %s", stats)
    if t.init_from:
        model, vocab, forms, _ = from_checkpoint(load_checkpoint(t.init_from), t.init_from)
        model.train()
    else:
        vocab, forms = build_vocab_and_forms(splits["train"], cfg.data)
        model = PunctuationModel(cfg.model, len(vocab), vocab.suffix_buckets)
    held = {}
    for split in ("dev", "test"):
        runs = cut_runs(splits[split], random.Random(t.seed + 1), cfg.data.max_sentences, cfg.data.max_words)
        (exp / f"{split}.txt").write_text("".join(" ".join(s.text for s in r) + "\n" for r in runs), encoding="utf-8")
        held[split] = [to_example(r, vocab, cfg.data.max_words) for r in runs]
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model: %d parameters, vocabulary %d words, %d mixed-case forms", n_params, len(vocab), len(forms))
    mark_weights = torch.tensor(t.mark_weights, dtype=torch.float32)
    opt = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    n_train_words = stats["train_words"]
    total_steps = max(1, t.epochs * math.ceil(n_train_words / (0.8 * t.batch_words)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / t.warmup_steps) * max(
        0.02, 0.5 * (1 + math.cos(math.pi * min(1.0, k / total_steps)))))
    meta = {"sources": list(cfg.data.sources), "excluded": list(cfg.data.exclude), "params": n_params,
            "init_from": t.init_from,
            "config": to_dict(cfg), "text": stats, "source_name": source_name}
    best, history, step, stopped = -1.0, [], 0, False
    for epoch in range(1, t.epochs + 1):
        runs = cut_runs(rng.sample(splits["train"], len(splits["train"])), rng, cfg.data.max_sentences,
                        cfg.data.max_words)
        examples = [to_example(r, vocab, cfg.data.max_words) for r in runs]
        bar = progress_bar(desc=f"epoch {epoch}", unit=" words", total=sum(len(e.ids) for e in examples))
        total_loss, n_batches = 0.0, 0
        for batch in batches(examples, t.batch_words, rng):
            loss = loss_of(model, batch, t.case_weight, mark_weights)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            total_loss, n_batches = total_loss + loss.item(), n_batches + 1
            bar.update(int((batch[0] != 0).sum()))
            if t.max_minutes and time.time() - start > 60 * t.max_minutes:
                stopped = True
                break
        bar.close()
        scores = score(model, held["dev"], t.batch_words)
        s = scores.summary()
        history.append({"epoch": epoch, "step": step, "train_loss": round(total_loss / max(1, n_batches), 4),
                        "dev_score": round(dev_score(scores), 4), "dev_period_f1": round(s["."]["f1"], 4),
                        "dev_comma_f1": round(s[","]["f1"], 4), "dev_case_accuracy": round(s["case_accuracy"], 4),
                        "minutes": round((time.time() - start) / 60, 2)})
        log.info("epoch %d: %s", epoch, history[-1])
        if dev_score(scores) > best:
            best = dev_score(scores)
            save_checkpoint(to_checkpoint(model, vocab, forms, {**meta, "epoch": epoch, "history": history}),
                            exp / "punct.pt")
        if stopped:
            log.info("train.max_minutes (%.1f) reached: stopped in epoch %d", t.max_minutes, epoch)
            break
    return {"history": history, "best_dev_score": best, "params": n_params, "text": stats,
            "minutes": round((time.time() - start) / 60, 2), "model": str(exp / "punct.pt")}
