"""A synthetic speech corpus: sentences read by espeak-ng and flite voices.

``generate_corpus(text_source, out_dir)`` turns text (the Debian ``fortunes`` or a UTF-8 file)
into a train/dev/test speech corpus for smoke-testing and pre-training ASR models:

* **Text.** Fortunes are joined into paragraphs (attributions ``-- Author`` dropped), split into
  sentences, and only sentences that a TTS engine reads the same way as :func:`normalize_text`
  writes them are kept (see :func:`clean_sentence`). Sentences are deduplicated by normalised text
  and are disjoint across the splits.
* **Voices.** An espeak-ng voice is an English language plus a variant (``espeak:en-us+f3``); a
  flite voice is one of its built-in voices (``flite:slt``). About 30% of the utterances are read
  by flite, and 40% of the espeak ones by female variants. Each utterance gets a random speaking
  rate (x0.78..1.2), pitch shift (-4..+4 semitones), peak level (-12..-1 dBFS) and edge silences
  (0.1..0.2 s).
* **Held-out voices.** espeak variants come in families that share formant settings (m7, m8 and
  Nguyen are one speaker at different pitches). Test holds out 2 male families and 1 female
  family, dev 1 and 1 (its own, not test's), each read in all 8 languages; no held-out family
  ever reads training data. One of flite's distinct CG voices (awb, rms, slt) is held out of
  train and reads in both dev and test (flite has too few voices to hold out two). So every dev
  and test voice is unseen in train; ``out_dir/voices.json`` lists the voices of every split.
* **Determinism.** The whole plan (sentence, voice, prosody of each utterance id) is drawn up
  front from ``random.Random(seed)``, so the corpus does not depend on the number of workers.
  Growing ``hours`` with the same seed keeps the earlier utterances (the plan only gets longer).
* **Resumable.** An existing non-empty FLAC is not synthesised again; a failing utterance is
  logged and left out of the manifest, never stopping the run.

Layout: ``out_dir/audio/{train,dev,test}/<id>.flac`` (16 kHz mono, 16-bit FLAC) and
``out_dir/{train,dev,test}.jsonl`` whose audio paths are relative to ``out_dir``.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import soundfile as sf
from tqdm import tqdm

from s2s_media.frontend.audio import SAMPLE_RATE, resample
from s2s_media.data.manifest import AudioRecord, write_manifest
from s2s_media.errors import UserError
from s2s_media.text.normalize import normalize_text

log = logging.getLogger(__name__)

FORTUNES_DIR = Path("/usr/share/games/fortunes")
SPLITS = ("train", "dev", "test")
PLAN_VERSION = 1  # bump when the planning changes, so old output dirs are not silently reused

# --------------------------------------------------------------------------- text

MAX_WORD_LETTERS = 15
_ALLOWED_CHARS = re.compile(r"[A-Za-z ,.!?';:\"-]+")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)*")
_ATTRIBUTION = re.compile(r"^\s*--\s*\S")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*$")
_INNER_PERIOD = re.compile(r"[A-Za-z]\.[A-Za-z]")      # e.g. i.e. U.S. a.m.
_TRIPLE_LETTER = re.compile(r"([a-z])\1\1")             # zzz, sooo: spelled or stretched by TTS
_ABBREVIATIONS = frozenset(
    "mr mrs ms messrs dr st jr sr vs etc prof gen col lt capt sgt cpl rev gov sen rep pres "
    "inc ltd co corp bros dept univ assn mt ft ave blvd rd approx est fig vol ch pp op cf al "
    "jan feb aug sept oct nov dec mon tues thurs fri".split())
_EXPANDED_WORDS = frozenset({"etc", "ok"})              # read as "etcetera", "okay"


def is_abbreviation(token: str) -> bool:
    """True for a whitespace token that is an abbreviation ending in a period.

    ``Mr.``, ``etc.,``, ``e.g.``, ``U.S.`` and initials like ``J.`` are; ``I.`` and ordinary
    sentence-final words are not. Surrounding quotes and brackets and trailing ``,;:!?`` are ignored.
    """
    core = token.strip("\"'()[]").rstrip(",;:!?")
    if not core.endswith("."):
        return False
    word = core.rstrip(".")
    if _INNER_PERIOD.search(word):
        return True
    if len(word) == 1 and word.isalpha():
        return word != "I"
    return word.lower() in _ABBREVIATIONS


def split_sentences(text: str) -> list[str]:
    """Split running text into sentences after ``.``, ``!`` or ``?`` (not after abbreviations).

    Whitespace is collapsed; a closing quote or bracket stays with its sentence.
    """
    sentences: list[str] = []
    current: list[str] = []
    for token in text.split():
        current.append(token)
        if _SENTENCE_END.search(token) and not is_abbreviation(token):
            sentences.append(" ".join(current))
            current = []
    if current:
        sentences.append(" ".join(current))
    return sentences


def _word_is_readable(word: str) -> bool:
    """A word TTS reads as a word and the normaliser keeps as that word."""
    letters = word.replace("'", "")
    if len(letters) > MAX_WORD_LETTERS:
        return False
    if re.search(r"[A-Z]{2,}", letters):                    # acronyms (IBM's, NMU'ed) are spelled out
        return False
    lower = letters.lower()
    if lower in _EXPANDED_WORDS:
        return False
    if not re.search(r"[aeiouy]", lower):                    # hmm, shh, nth, Q are spelled out
        return False
    return not _TRIPLE_LETTER.search(lower)


def clean_sentence(sentence: str, min_words: int = 3, max_words: int = 16) -> str | None:
    """Return the sentence tidied up, or ``None`` if TTS and :func:`normalize_text` may disagree.

    Kept: ASCII letters, spaces and ``, . ! ? ' ; : - "`` only; no digits; no words with two
    capitals in a row (acronyms); no abbreviations or dotted words (``a.out``); no vowel-less
    or stretched words (``hmm``, ``Q``, ``sooo``: spelled out or drawn out); no ``etc``/``ok``
    (read expanded); no word longer than :data:`MAX_WORD_LETTERS` letters;
    ``min_words..max_words`` words after normalisation. ````quotes''`` become ``"``, and
    unbalanced double quotes are dropped.
    """
    text = " ".join(sentence.replace("``", '"').replace("''", '"').split())
    if text.count('"') % 2:
        text = " ".join(text.replace('"', " ").split())
    if not text or not _ALLOWED_CHARS.fullmatch(text):
        return None
    if _INNER_PERIOD.search(text) or any(is_abbreviation(token) for token in text.split()):
        return None                                          # e.g., U.S., a.out, Mr.
    words = _WORD.findall(text)
    if not words or not all(_word_is_readable(w) for w in words):
        return None
    n_words = len(normalize_text(text).split())
    if not min_words <= n_words <= max_words:
        return None
    return text


def read_fortunes(root: Path = FORTUNES_DIR) -> list[str]:
    """All fortunes under ``root`` as single-line paragraphs, attributions dropped.

    Fortune files are plain text with fortunes separated by lines holding only ``%``; the
    ``*.dat`` indexes, the ``*.u8`` links and the offensive ``off/`` folder are skipped.
    """
    paragraphs: list[str] = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix in (".dat", ".u8") or "off" in path.relative_to(root).parts[:-1]:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        for fortune in re.split(r"^%\s*$", text, flags=re.MULTILINE):
            lines: list[str] = []
            for line in fortune.splitlines():
                if _ATTRIBUTION.match(line):
                    break                                    # the attribution ends the quote
                lines.append(line.strip())
            paragraph = " ".join(line for line in lines if line)
            if paragraph:
                paragraphs.append(paragraph)
    return paragraphs


def source_paragraphs(text_source: str) -> list[str]:
    """Paragraphs of ``text_source`` ("fortunes" or a text file); raises UserError if missing."""
    if text_source == "fortunes":
        if not FORTUNES_DIR.is_dir():
            raise UserError(f"fortunes: {FORTUNES_DIR} not found; install it with `apt-get install fortunes` "
                            "or pass a UTF-8 text file as the text source")
        return read_fortunes(FORTUNES_DIR)
    path = Path(text_source)
    if not path.is_file():
        raise UserError(f"{path}: text source not found; pass 'fortunes' or a UTF-8 text file "
                        "with one or more sentences per line")
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}); convert it with iconv") from None


def load_sentences(text_source: str, min_words: int = 3, max_words: int = 16) -> list[str]:
    """Clean, filtered sentences of ``text_source``, deduplicated by normalised text, in source order.

    Raises :class:`UserError` if the source is missing or yields no usable sentence.
    """
    seen: set[str] = set()
    sentences: list[str] = []
    for paragraph in source_paragraphs(text_source):
        for raw in split_sentences(paragraph):
            sentence = clean_sentence(raw, min_words, max_words)
            if sentence is None:
                continue
            key = normalize_text(sentence)
            if key not in seen:
                seen.add(key)
                sentences.append(sentence)
    if not sentences:
        hint = " (is the fortunes package installed? `apt-get install fortunes`)" if text_source == "fortunes" else ""
        raise UserError(f"{text_source}: no usable sentences{hint}; sentences need {min_words}-{max_words} "
                        "words of plain ASCII letters without digits, acronyms or abbreviations")
    return sentences


# --------------------------------------------------------------------------- voices

ESPEAK_LANGUAGES = ("en-us", "en-gb", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp",
                    "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
# espeak-ng variants (voices/!v/) in families that share formant settings, i.e. one "speaker"
# up to pitch and effects. Dev/test hold out whole families, so no relative of a held-out voice
# reads training data. Left out entirely as hard to understand: heavy echo (RicishayMax*,
# robosoft*, anikaRobot, UniRobot, Demonic, Alicia, announcer), missing upper formants (Jacky,
# Lee), the female whisper, ``fast`` (not a voice) and ``Mr serious`` (a space in its name).
ESPEAK_MALE_FAMILIES = (
    ("m1",), ("m2",), ("m3",), ("m4",), ("m5",), ("m6",), ("m7", "m8", "Nguyen"), ("Alex",),
    ("Andy", "AnxiousAndy"), ("Denis", "victor", "Storm"), ("Diogo", "Henrique", "Hugo", "michel", "miguel", "anika"),
    ("Gene", "Gene2"), ("Michael", "Mario", "gustave", "marcelo"), ("iven", "iven2", "iven3", "iven4"),
    ("max", "paul"), ("rob", "robert", "quincy"), ("antonio",), ("boris",), ("ed",), ("sandro",),
    ("travis",), ("kaukovalta",))
ESPEAK_FEMALE_FAMILIES = (
    ("f1",), ("f2", "f5"), ("f3",), ("f4", "aunty"), ("belinda", "linda"), ("Andrea",), ("Annie",),
    ("steph", "steph2", "steph3"), ("shelby",), ("grandma",))
# Always in train, never held out: the Klatt glottal sources, voice effects (whisper, croak, a
# child), and near-copies of the default voice, none of which would make a fair unseen voice.
# "" is each language's own default voice.
ESPEAK_TRAIN_ONLY_VARIANTS = (
    "", "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6", "adam", "benjamin", "david", "edward",
    "edward2", "caleb", "croak", "grandpa", "whisper", "zac", "john", "Tweaky", "norbert", "pablo", "pedro", "Mike")
# flite's built-in voices with their mean F0 in Hz; rms ignores int_f0_target_mean (None).
# awb_time only tells the time and is left out; kal and kal16 are the same speaker.
FLITE_VOICES: dict[str, float | None] = {"kal": 88.0, "kal16": 92.0, "awb": 130.0, "rms": None, "slt": 167.0}
FLITE_HELD_OUT_CHOICES = ("awb", "rms", "slt")
FLITE_SHARE = 0.3            # share of utterances read by flite (when the split has flite voices)
FEMALE_SHARE = 0.4           # share of the espeak utterances read by female families
HELD_OUT_FAMILIES = {"test": (2, 1), "dev": (1, 1)}  # (male, female) espeak families held out per split

RATE_RANGE = (0.78, 1.2)     # speaking-rate factor: espeak 137..210 wpm, flite duration_stretch 0.83..1.28
SEMITONE_RANGE = (-4.0, 4.0)  # pitch shift: espeak -p 25..75, flite F0 x0.79..1.26
LEVEL_DB_RANGE = (-12.0, -1.0)  # peak level in dBFS
EDGE_SILENCE_RANGE = (0.1, 0.2)  # seconds of silence kept/added before and after the speech
SYNTH_TIMEOUT = 60.0


@dataclass(frozen=True)
class Prosody:
    """How one utterance is read; the same meaning for every engine."""
    rate: float        # speaking-rate factor, 1.0 = the engine's default speed
    semitones: float   # pitch shift relative to the voice's default


class Voice(ABC):
    """One TTS voice; ``synthesize`` returns ``(wav: (samples,) float32, sample_rate)``."""
    engine: str
    words_per_second: float  # at rate 1.0, for planning durations

    def __init__(self, name: str):
        self.name = name

    @property
    def id(self) -> str:
        """The speaker id written to manifests, e.g. ``espeak:en-us+f3``."""
        return f"{self.engine}:{self.name}"

    @abstractmethod
    def command(self, text: str, prosody: Prosody) -> tuple[list[str], bytes | None]:
        """The command line that writes a WAV to stdout, and the bytes to feed its stdin."""

    def synthesize(self, text: str, prosody: Prosody) -> tuple[np.ndarray, int]:
        """Run the engine; raises RuntimeError (or TimeoutExpired) if it fails."""
        cmd, stdin = self.command(text, prosody)
        proc = subprocess.run(cmd, input=stdin, capture_output=True, timeout=SYNTH_TIMEOUT)
        if proc.returncode != 0:
            reason = proc.stderr.decode(errors="replace").strip().splitlines()
            raise RuntimeError(f"{cmd[0]} exited with {proc.returncode}: {reason[-1] if reason else 'no message'}")
        wav, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=False)
        return np.asarray(wav, dtype=np.float32), int(sr)


class EspeakVoice(Voice):
    """espeak-ng ``language+variant`` (``en-gb-scotland+f3``); 22.05 kHz output."""
    engine = "espeak"
    words_per_second = 3.45

    def command(self, text: str, prosody: Prosody) -> tuple[list[str], bytes | None]:
        wpm = round(175 * prosody.rate)
        pitch = int(np.clip(round(50 + 6.25 * prosody.semitones), 0, 99))  # 25 steps ~ 4 semitones
        return (["espeak-ng", "-v", self.name, "-s", str(wpm), "-p", str(pitch), "--stdin", "--stdout"],
                text.encode("utf-8"))


class FliteVoice(Voice):
    """A flite built-in voice; kal is 8 kHz, the others 16 kHz."""
    engine = "flite"
    words_per_second = 3.4

    def command(self, text: str, prosody: Prosody) -> tuple[list[str], bytes | None]:
        cmd = ["flite", "-voice", self.name, "--setf", f"duration_stretch={1.0 / prosody.rate:.3f}"]
        base_f0 = FLITE_VOICES[self.name]
        if base_f0 is not None:
            cmd += ["--setf", f"int_f0_target_mean={base_f0 * 2 ** (prosody.semitones / 12):.1f}"]
        return cmd + ["-t", text, "-o", "/dev/stdout"], None


def make_voice(voice_id: str) -> Voice:
    """``"espeak:en-us+f3"`` or ``"flite:slt"`` -> the voice."""
    engine, _, name = voice_id.partition(":")
    if engine == "espeak":
        return EspeakVoice(name)
    if engine == "flite" and name in FLITE_VOICES:
        return FliteVoice(name)
    raise ValueError(f"unknown voice {voice_id!r}")


def espeak_voice_ids(families: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """Every language combined with every variant of ``families`` (``""`` = the default voice)."""
    variants = sorted({v for family in families for v in family})
    return tuple(f"espeak:{lang}{'+' + v if v else ''}" for lang in ESPEAK_LANGUAGES for v in variants)


@dataclass(frozen=True)
class VoicePool:
    """The voices one split reads with, as voice ids."""
    male: tuple[str, ...]      # espeak: male families (and, in train, the train-only variants)
    female: tuple[str, ...]    # espeak: female families
    flite: tuple[str, ...]

    @property
    def voices(self) -> list[str]:
        return [*self.male, *self.female, *self.flite]

    def draw(self, rng: random.Random) -> str:
        """One voice: flite with probability FLITE_SHARE, else espeak female with FEMALE_SHARE."""
        if self.flite and rng.random() < FLITE_SHARE:
            return rng.choice(self.flite)
        if self.female and (not self.male or rng.random() < FEMALE_SHARE):
            return rng.choice(self.female)
        return rng.choice(self.male)


def assign_voices(rng: random.Random) -> dict[str, VoicePool]:
    """Seeded voice pools ``{split: VoicePool}``.

    Test and dev each get their own espeak variant families (numbers in :data:`HELD_OUT_FAMILIES`),
    read in every language; these families never occur in train. One flite voice from
    :data:`FLITE_HELD_OUT_CHOICES` is held out of train and read in dev and test.
    """
    male, female = list(ESPEAK_MALE_FAMILIES), list(ESPEAK_FEMALE_FAMILIES)
    rng.shuffle(male)
    rng.shuffle(female)
    flite_held = (f"flite:{rng.choice(FLITE_HELD_OUT_CHOICES)}",)
    pools: dict[str, VoicePool] = {}
    for split, (n_male, n_female) in HELD_OUT_FAMILIES.items():
        pools[split] = VoicePool(espeak_voice_ids(male[:n_male]), espeak_voice_ids(female[:n_female]), flite_held)
        del male[:n_male], female[:n_female]
    pools["train"] = VoicePool(espeak_voice_ids([*male, ESPEAK_TRAIN_ONLY_VARIANTS]), espeak_voice_ids(female),
                               tuple(f"flite:{v}" for v in FLITE_VOICES if f"flite:{v}" not in flite_held))
    return pools


# --------------------------------------------------------------------------- plan

@dataclass(frozen=True)
class Utterance:
    """Everything needed to synthesise one utterance, drawn up front."""
    id: str
    split: str
    text: str
    voice: str          # voice id, e.g. "espeak:en-us+f3"
    rate: float
    semitones: float
    level_db: float     # peak level, dBFS
    lead: float         # seconds of silence before the speech
    trail: float        # seconds of silence after the speech

    def estimated_seconds(self) -> float:
        """A duration estimate from the word count, used to fill ``hours`` while planning."""
        wps = (EspeakVoice if self.voice.startswith("espeak:") else FliteVoice).words_per_second
        return len(normalize_text(self.text).split()) / (wps * self.rate) + self.lead + self.trail


def _draw_utterance(rng: random.Random, utt_id: str, split: str, text: str, voice: str) -> Utterance:
    return Utterance(id=utt_id, split=split, text=text, voice=voice,
                     rate=round(rng.uniform(*RATE_RANGE), 3),
                     semitones=round(rng.uniform(*SEMITONE_RANGE), 2),
                     level_db=round(rng.uniform(*LEVEL_DB_RANGE), 2),
                     lead=round(rng.uniform(*EDGE_SILENCE_RANGE), 3),
                     trail=round(rng.uniform(*EDGE_SILENCE_RANGE), 3))


def _plan_split(rng: random.Random, split: str, sentences: list[str], pool: VoicePool) -> list[Utterance]:
    return [_draw_utterance(rng, f"syn-{split}-{i:07d}", split, text, pool.draw(rng))
            for i, text in enumerate(sentences)]


def _plan_train(rng: random.Random, sentences: list[str], pool: VoicePool, hours: float) -> list[Utterance]:
    """Train utterances until their estimated duration reaches ``hours``.

    When the sentences run out, they are read again (reshuffled) by voices that have not read
    them yet.
    """
    target = hours * 3600.0
    plan: list[Utterance] = []
    used: dict[str, set[str]] = {}
    total, passes = 0.0, 0
    while total < target and sentences:
        order = list(sentences)
        if passes:
            rng.shuffle(order)
            log.warning("synthetic: the %d train sentences are read again (pass %d) by other voices to reach %.2f h",
                        len(sentences), passes + 1, hours)
        for text in order:
            if total >= target:
                break
            voice = pool.draw(rng)
            for _ in range(10):
                if voice not in used.get(text, ()):
                    break
                voice = pool.draw(rng)
            used.setdefault(text, set()).add(voice)
            utt = _draw_utterance(rng, f"syn-train-{len(plan):07d}", "train", text, voice)
            plan.append(utt)
            total += utt.estimated_seconds()
        passes += 1
    return plan


def make_plan(sentences: list[str], *, hours: float, dev_utts: int, test_utts: int,
              seed: int) -> tuple[dict[str, list[Utterance]], dict[str, VoicePool]]:
    """The whole corpus plan ``{split: [Utterance]}`` and the voice pools, from ``seed`` alone.

    Sentences are shuffled and dealt to test, dev, then train, so the splits share none. Test and
    dev are drawn before train so that a larger ``hours`` only appends train utterances.
    """
    if dev_utts + test_utts >= len(sentences):
        raise UserError(f"synthetic: the text source has only {len(sentences)} usable sentences, not enough for "
                        f"{dev_utts} dev + {test_utts} test utterances and a train set; use more text or fewer "
                        "dev/test utterances")
    rng = random.Random(seed)
    order = list(sentences)
    rng.shuffle(order)
    pools = assign_voices(rng)
    n_held = test_utts + dev_utts
    plan = {"test": _plan_split(rng, "test", order[:test_utts], pools["test"]),
            "dev": _plan_split(rng, "dev", order[test_utts:n_held], pools["dev"])}
    plan["train"] = _plan_train(rng, order[n_held:], pools["train"], hours)
    return {split: plan[split] for split in SPLITS}, pools


# --------------------------------------------------------------------------- synthesis

def trim_silence(wav: np.ndarray, sr: int, lead: float, trail: float, threshold_db: float = -40.0) -> np.ndarray:
    """Cut the edges quieter than ``threshold_db`` below the peak, keeping ``lead``/``trail`` s.

    Silence is padded with zeros where the engine gave less. ``wav: (samples,)``.
    """
    frame = max(1, sr // 100)                                   # 10 ms frames
    n = len(wav) // frame
    if n == 0:
        return wav
    rms = np.sqrt(np.mean(wav[: n * frame].reshape(n, frame) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    if loud.size == 0:
        return wav
    start, end = loud[0] * frame, min(len(wav), (loud[-1] + 1) * frame)
    n_lead, n_trail = int(round(lead * sr)), int(round(trail * sr))
    kept = wav[max(0, start - n_lead): end + n_trail]
    pad_lead = max(0, n_lead - start)
    pad_trail = max(0, end + n_trail - len(wav))
    return np.pad(kept, (pad_lead, pad_trail))


def render(utt: Utterance) -> np.ndarray:
    """Synthesise ``utt`` as 16 kHz mono float32 ``(samples,)``, trimmed and peak-normalised."""
    wav, sr = make_voice(utt.voice).synthesize(utt.text, Prosody(utt.rate, utt.semitones))
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak <= 1e-4:
        raise RuntimeError("the engine produced no audible audio")
    wav = resample(wav, sr, SAMPLE_RATE)
    wav = trim_silence(wav, SAMPLE_RATE, utt.lead, utt.trail)
    return (wav * (10 ** (utt.level_db / 20) / np.abs(wav).max())).astype(np.float32)


def write_flac(path: Path, wav: np.ndarray) -> None:
    """Write 16-bit FLAC atomically, so an interrupted run never leaves a truncated file behind."""
    tmp = path.with_name(path.name + ".tmp")
    sf.write(str(tmp), wav, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)


def _synthesize_job(job: tuple[Utterance, str]) -> tuple[str, float | None, str | None]:
    """Worker: make one FLAC unless it exists. Returns ``(id, duration or None, error or None)``."""
    utt, out = job
    path = Path(out)
    if path.is_file() and path.stat().st_size > 0:
        try:
            return utt.id, sf.info(str(path)).duration, None
        except sf.LibsndfileError:
            pass                                             # unreadable: synthesise it again
    try:
        wav = render(utt)
        write_flac(path, wav)
        return utt.id, len(wav) / SAMPLE_RATE, None
    except Exception as e:  # noqa: BLE001 - one bad utterance must never stop the run
        return utt.id, None, f"{type(e).__name__}: {e}"


def _run_jobs(jobs: list[tuple[Utterance, str]], workers: int) -> Iterator[tuple[str, float | None, str | None]]:
    """Run :func:`_synthesize_job` over ``jobs`` in ``workers`` processes, yielding results as they finish."""
    # resample() lazily imports librosa's audio module (3-8 s); do it once here so forked workers inherit it
    resample(np.zeros(441, dtype=np.float32), 22050, SAMPLE_RATE)
    if workers <= 1:
        yield from map(_synthesize_job, jobs)
        return
    with Pool(workers) as pool:
        yield from pool.imap_unordered(_synthesize_job, jobs, chunksize=4)


def synthesize(plan: list[Utterance], out_dir: Path, workers: int) -> dict[str, float]:
    """Synthesise every planned utterance (resuming); returns ``{id: duration}`` of those that worked."""
    jobs = [(utt, str(out_dir / audio_path(utt))) for utt in plan]
    for split in {utt.split for utt in plan}:
        (out_dir / "audio" / split).mkdir(parents=True, exist_ok=True)
    durations: dict[str, float] = {}
    failed = 0
    seconds = 0.0
    by_id = {utt.id: utt for utt in plan}
    start = time.monotonic()
    with tqdm(total=len(jobs), desc="synthesising", unit="utt", disable=None, dynamic_ncols=True) as bar:
        for utt_id, duration, error in _run_jobs(jobs, workers):
            if error is None and duration is not None:
                durations[utt_id] = duration
                seconds += duration
            else:
                failed += 1
                if failed <= 20:
                    utt = by_id[utt_id]
                    log.warning("synthetic: %s (%s, %r) failed and is skipped: %s", utt_id, utt.voice, utt.text, error)
            bar.set_postfix_str(f"{seconds / 3600:.2f} h", refresh=False)
            bar.update(1)
    if failed:
        log.warning("synthetic: %d of %d utterances failed and are left out of the manifests", failed, len(plan))
    elapsed = time.monotonic() - start
    log.info("synthetic: %d utterances (%.2f h of audio) ready in %.0f s with %d workers",
             len(durations), seconds / 3600, elapsed, workers)
    return durations


def audio_path(utt: Utterance) -> str:
    """The FLAC path of ``utt`` relative to the output directory."""
    return f"audio/{utt.split}/{utt.id}.flac"


# --------------------------------------------------------------------------- corpus

def _check_options(hours: float, dev_utts: int, test_utts: int, min_words: int, max_words: int) -> None:
    if hours < 0:
        raise UserError(f"synthetic: hours must be >= 0, got {hours}")
    if dev_utts < 0 or test_utts < 0:
        raise UserError(f"synthetic: dev_utts and test_utts must be >= 0, got {dev_utts} and {test_utts}")
    if not 1 <= min_words <= max_words:
        raise UserError(f"synthetic: need 1 <= min_words <= max_words, got {min_words} and {max_words}")


def _check_reuse(voices_json: Path, settings: dict) -> None:
    """Refuse to resume into an ``out_dir`` made from a different text or different settings."""
    if not voices_json.is_file():
        return
    try:
        old = json.loads(voices_json.read_text(encoding="utf-8")).get("settings")
    except (json.JSONDecodeError, AttributeError):
        old = None
    if old != settings:
        raise UserError(f"{voices_json.parent}: holds a corpus generated from other text or settings "
                        f"({voices_json.name} differs); use a new output directory or delete this one")


def generate_corpus(text_source: str, out_dir: str | Path, *, hours: float = 10.0, dev_utts: int = 300,
                    test_utts: int = 300, seed: int = 0, workers: int | None = None,
                    min_words: int = 3, max_words: int = 16) -> dict[str, Path]:
    """Synthesise a train/dev/test speech corpus from ``text_source`` into ``out_dir``.

    ``text_source`` is ``"fortunes"`` (the Debian fortunes files) or a UTF-8 text file. Train
    holds about ``hours`` of audio (planned from word counts; the manifests have the real
    durations), dev and test ``dev_utts``/``test_utts`` utterances read by held-out voices.
    ``workers`` processes synthesise (default: all CPUs); the output does not depend on it.
    Returns ``{"train": path_to_train.jsonl, "dev": ..., "test": ...}``.
    """
    _check_options(hours, dev_utts, test_utts, min_words, max_words)
    out_dir = Path(out_dir)
    sentences = load_sentences(text_source, min_words, max_words)
    plan, pools = make_plan(sentences, hours=hours, dev_utts=dev_utts, test_utts=test_utts, seed=seed)
    settings = {"plan_version": PLAN_VERSION, "seed": seed, "dev_utts": dev_utts, "test_utts": test_utts,
                "min_words": min_words, "max_words": max_words,
                "sentences_sha1": hashlib.sha1("\n".join(sentences).encode("utf-8")).hexdigest()}
    voices_json = out_dir / "voices.json"
    _check_reuse(voices_json, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    voices_json.write_text(json.dumps(_voices_summary(pools, settings), indent=2) + "\n", encoding="utf-8")
    log.info("synthetic: %d sentences; planned %s", len(sentences),
             ", ".join(f"{split} {len(utts)} utts" for split, utts in plan.items()))

    all_utts = [utt for split in SPLITS for utt in plan[split]]
    durations = synthesize(all_utts, out_dir, workers or os.cpu_count() or 1)
    manifests: dict[str, Path] = {}
    for split in SPLITS:
        records = [AudioRecord(id=utt.id, audio=audio_path(utt), text=utt.text,
                               duration=round(durations[utt.id], 4), speaker=utt.voice)
                   for utt in plan[split] if utt.id in durations]
        manifests[split] = out_dir / f"{split}.jsonl"
        write_manifest(manifests[split], records)
        log.info("synthetic: %s: %d utterances, %.2f h", split, len(records), sum(r.duration for r in records) / 3600)
    return manifests


def _voices_summary(pools: dict[str, VoicePool], settings: dict) -> dict:
    """The content of ``voices.json``: the held-out voices and every split's voice list."""
    def variants(voice_ids: Iterable[str]) -> list[str]:
        return sorted({v.partition("+")[2] for v in voice_ids})
    return {
        "held_out": {split: {"espeak_male_variants": variants(pools[split].male),
                             "espeak_female_variants": variants(pools[split].female),
                             "espeak_languages": list(ESPEAK_LANGUAGES),
                             "flite": list(pools[split].flite)}
                     for split in ("dev", "test")},
        "note": ("dev and test each read with their own espeak variant families (in every language), which never "
                 "occur in train; the held-out flite voice is read in both dev and test and never in train"),
        "voices": {split: pools[split].voices for split in SPLITS},
        "settings": settings,
    }
