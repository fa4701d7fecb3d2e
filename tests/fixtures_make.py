"""Build tiny corpora at test time, laid out exactly like the real datasets.

We commit no binary data: each ``make_*`` writes a few short tones (0.3-0.4 s) plus the corpus'
own index files into a folder and returns a :class:`Corpus` describing what it wrote, so tests
can compare manifests against the truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

WORDS = "DON'T STOP THE QUICK BROWN FOX JUMPS OVER A LAZY DOG".split()


@dataclass
class Utt:
    """What a preparer should find for one utterance (``text`` as written in the corpus)."""
    text: str
    duration: float
    speaker: str | None
    split: str
    offset: float = 0.0


@dataclass
class Corpus:
    root: Path                                    # the folder to pass as SRC
    utts: dict[str, Utt] = field(default_factory=dict)

    def split(self, name: str) -> dict[str, Utt]:
        return {k: u for k, u in self.utts.items() if u.split == name}


def tone(seconds: float, sr: int, freq: float = 220.0) -> np.ndarray:
    """A quiet sine ``(samples,)`` float32, with exactly ``round(seconds * sr)`` samples."""
    t = np.arange(int(round(seconds * sr))) / sr
    return (0.1 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_tone(path: Path, seconds: float, sr: int = 16000, format: str | None = None) -> float:
    """Write a tone to ``path`` (format from the suffix unless given); returns its exact duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wav = tone(seconds, sr)
    sf.write(str(path), wav, sr, format=format)
    return len(wav) / sr


def sentence(i: int, n_words: int = 4) -> str:
    return " ".join(WORDS[(i + k) % len(WORDS)] for k in range(n_words))


# --------------------------------------------------------------------------- LibriSpeech

LIBRISPEECH_SUBSETS = ("train-clean-100", "dev-clean", "test-clean")


def make_librispeech(parent: Path, subsets: tuple[str, ...] = LIBRISPEECH_SUBSETS, *, speakers: int = 2,
                     utts: int = 2) -> Corpus:
    """``parent/LibriSpeech/SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac`` + ``.trans.txt``.

    Speakers are disjoint across subsets (as in the real corpus); one chapter per speaker. Returns
    a corpus rooted at ``parent`` (the folder holding ``LibriSpeech/``); utterance splits are the
    subset names.
    """
    ls = parent / "LibriSpeech"
    ls.mkdir(parents=True, exist_ok=True)
    (ls / "SPEAKERS.TXT").write_text(";ID  |SEX| SUBSET           |MINUTES| NAME\n")
    corpus = Corpus(parent)
    for s_index, subset in enumerate(subsets):
        for k in range(speakers):
            speaker, chapter = str(100 * (s_index + 1) + k), str(1000 + 10 * s_index + k)
            chapter_dir = ls / subset / speaker / chapter
            lines = []
            for u in range(utts):
                utt_id = f"{speaker}-{chapter}-{u:04d}"
                text = sentence(s_index + k + u, 3 + u)
                duration = write_tone(chapter_dir / f"{utt_id}.flac", 0.3 + 0.05 * u)
                corpus.utts[utt_id] = Utt(text, duration, speaker, subset)
                lines.append(f"{utt_id} {text}")
            (chapter_dir / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return corpus


# --------------------------------------------------------------------------- Common Voice

CV_HEADER = ["client_id", "path", "sentence_id", "sentence", "sentence_domain", "up_votes", "down_votes",
             "age", "gender", "accents", "variant", "locale", "segment"]

# Real CV sentences with quotes that break a quoting csv reader (an opening quote swallows tabs
# and newlines up to the next quote).
CV_SENTENCES = [
    '"Hello," she said, "is anyone there?"',
    "It's 5 o'clock somewhere.",
    'The sign read "closed" all day.',
    '"Unbalanced quote at the start',
    "Plain sentence without quotes.",
    "He answered: \"yes\".",
    "Numbers like 42 are spelled out.",
]


def make_commonvoice(parent: Path, per_split: dict[str, int] | None = None, *, sr: int = 48000,
                     lang: str = "en", sentences: list[str] | None = None) -> Corpus:
    """``parent/cv-corpus-17.0-2024-03-15/<lang>/`` with ``clips/*.mp3`` and the release's tsv files.

    Clips are 48 kHz mono mp3 like the real ones; ``train/dev/test.tsv`` use the v17 header, and
    ``validated.tsv``/``invalidated.tsv``/``other.tsv`` exist too (they must be ignored). The
    transcripts cycle through ``sentences`` (default: English ones with awkward quotes).
    """
    sentences = sentences or CV_SENTENCES
    per_split = per_split or {"train": 3, "dev": 2, "test": 2}
    root = parent / "cv-corpus-17.0-2024-03-15" / lang
    clips = root / "clips"
    corpus = Corpus(root)
    rows_all = []
    n = 0
    for split, count in per_split.items():
        rows = []
        for _ in range(count):
            name = f"common_voice_{lang}_{39000000 + n}"
            duration = write_tone(clips / f"{name}.mp3", 0.3 + 0.02 * n, sr=sr, format="MP3")
            client = f"{n % 2:x}" * 64 if n % 3 else ""   # some rows without client_id
            text = sentences[n % len(sentences)]
            rows.append([client, f"{name}.mp3", f"s{n}", text, "", "2", "0", "", "", "", "", lang, ""])
            corpus.utts[name] = Utt(text, duration, client or None, split)
            n += 1
        _write_tsv(root / f"{split}.tsv", rows)
        rows_all += rows
    _write_tsv(root / "validated.tsv", rows_all)
    _write_tsv(root / "invalidated.tsv", [])
    _write_tsv(root / "other.tsv", [])
    return corpus


def _write_tsv(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [CV_HEADER] + rows) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- Kaldi

def make_kaldi(parent: Path) -> Corpus:
    """A Kaldi recipe dir ``parent/s5`` with ``data/{train,dev,test}`` and audio in ``s5/wav``.

    * train: one wav per utterance, wav.scp paths relative to the recipe dir (Kaldi convention),
      a ``<NOISE>`` marker in one transcript, utt2spk + spk2utt;
    * dev: two 16 kHz recordings cut by a ``segments`` file (one segment ends with -1);
    * test: absolute flac paths, no utt2spk.

    The corpus root (SRC) is ``parent/s5/data``.
    """
    recipe = parent / "s5"
    data = recipe / "data"
    corpus = Corpus(data)
    _kaldi_train(recipe, data / "train", corpus)
    _kaldi_dev(recipe, data / "dev", corpus)
    _kaldi_test(recipe, data / "test", corpus)
    return corpus


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in sorted(lines)), encoding="utf-8")


def _write_speakers(data_dir: Path, utt2spk: dict[str, str]) -> None:
    _write_lines(data_dir / "utt2spk", [f"{u} {s}" for u, s in utt2spk.items()])
    spk2utt: dict[str, list[str]] = {}
    for u, s in sorted(utt2spk.items()):
        spk2utt.setdefault(s, []).append(u)
    _write_lines(data_dir / "spk2utt", [f"{s} {' '.join(us)}" for s, us in spk2utt.items()])


def _kaldi_train(recipe: Path, data_dir: Path, corpus: Corpus) -> None:
    wav_scp, text, utt2spk = [], [], {}
    for i in range(3):
        speaker = f"spk{i % 2}"
        utt = f"{speaker}-utt{i}"
        duration = write_tone(recipe / "wav" / f"{utt}.wav", 0.3 + 0.05 * i)
        transcript = sentence(i) + (" <NOISE>" if i == 1 else "")
        wav_scp.append(f"{utt} wav/{utt}.wav")
        text.append(f"{utt} {transcript}")
        utt2spk[utt] = speaker
        corpus.utts[utt] = Utt(sentence(i), duration, speaker, "train")
    _write_lines(data_dir / "wav.scp", wav_scp)
    _write_lines(data_dir / "text", text)
    _write_speakers(data_dir, utt2spk)


def _kaldi_dev(recipe: Path, data_dir: Path, corpus: Corpus) -> None:
    wav_scp, segments, text, utt2spk = [], [], [], {}
    for r in range(2):
        rec = f"rec{r}"
        rec_duration = write_tone(recipe / "wav" / f"{rec}.wav", 1.0)
        wav_scp.append(f"{rec} {(recipe / 'wav' / f'{rec}.wav').resolve()}")
        for s, (start, end) in enumerate([(0.0, 0.4), (0.45, -1.0 if r else 0.95)]):
            utt = f"spk{r}-{rec}-{s}"
            segments.append(f"{utt} {rec} {start:.2f} {end:.2f}")
            text.append(f"{utt} {sentence(r + s)}")
            utt2spk[utt] = f"spk{r}"
            stop = rec_duration if end == -1 else end
            corpus.utts[utt] = Utt(sentence(r + s), stop - start, f"spk{r}", "dev", offset=start)
    _write_lines(data_dir / "wav.scp", wav_scp)
    _write_lines(data_dir / "segments", segments)
    _write_lines(data_dir / "text", text)
    _write_speakers(data_dir, utt2spk)


def _kaldi_test(recipe: Path, data_dir: Path, corpus: Corpus) -> None:
    wav_scp, text = [], []
    for i in range(2):
        utt = f"test{i}"
        path = (recipe / "flac" / f"{utt}.flac").resolve()
        duration = write_tone(path, 0.35)
        wav_scp.append(f"{utt} {path}")
        text.append(f"{utt} {sentence(5 + i)}")
        corpus.utts[utt] = Utt(sentence(5 + i), duration, None, "test")
    _write_lines(data_dir / "wav.scp", wav_scp)
    _write_lines(data_dir / "text", text)


# ``--set`` overrides for a tiny model that trains in seconds (tests only)
TINY_MODEL = [
    "model.encoder_conf.d_model=32", "model.encoder_conf.n_heads=2", "model.encoder_conf.n_layers=2",
    "model.encoder_conf.ffn_dim=64", "model.encoder_conf.kernel_size=5",
    "model.decoder_conf.n_layers=1", "model.decoder_conf.n_heads=2", "model.decoder_conf.ffn_dim=64",
    "tokenizer.kind=char", "data.num_workers=0", "data.max_batch_seconds=8", "data.cmvn_utterances=20",
    "train.log_interval=1", "train.save_interval=2", "optim.warmup_steps=5",
]
