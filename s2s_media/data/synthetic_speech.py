"""A synthetic speech corpus: sentences read by neural, diphone and formant TTS voices.

``generate_corpus(text_source, out_dir)`` turns text (the Debian ``fortunes`` or a UTF-8 file)
into a train/dev/test speech corpus for training ASR models that must hear voices they never met:

* **Text.** Fortunes are joined into paragraphs (attributions ``-- Author`` dropped), split into
  sentences, and only sentences that a TTS engine reads the same way as :func:`normalize_text`
  writes them are kept (see :func:`clean_sentence`). Sentences are deduplicated by normalised text
  and are disjoint across the splits (the LM recipe excludes dev/test sentences).
* **Voices** (:data:`ENGINE_SHARES` of the utterances; ``tts_voices`` for the engines):
  hibari's ``heart`` (neural, Kokoro-distilled, 50 %), Piper's ``joe`` (neural VITS, 6 %; its
  ``noise_scale``/``noise_w`` drawn per utterance), festival's ``ked_diphone`` (6 %), espeak-ng
  (an English language plus a variant, ``espeak:en-us+f3``, 28 %) and flite (``awb``, ``rms``, 10 %).
  Measured audio-seconds per CPU-second, speaker and channel changes included: espeak-ng 52,
  hibari 31, flite 28, festival 27, Piper 5; the mix 26.5, so 50 h take about 57 minutes of
  2 idle cores. Piper costs a third of that with 6 % of the audio; :data:`ENGINE_SHARES` is the knob.
* **Reserved voices.** festival's kal (festvox-kallpc16k/8k) and slt (festvox-us-slt-hts) voices
  and flite's slt, kal and kal16 belong to an independent evaluation: they are never planned in
  any split (:func:`is_reserved`, checked by :func:`assign_voices`).
* **Speakers.** Each utterance gets a speaking rate (x0.78..1.2), a pitch shift (-4..+4 semitones;
  native in espeak-ng, flite and hibari, Praat PSOLA for Piper and festival), a peak level
  (-12..-1 dBFS) and edge silences (0.1..0.2 s). Half the utterances are read by a *perturbed
  speaker*: the formants move by a vocal-tract factor (Praat's "Change gender",
  ``speakers.change_voice``), and the manifest speaker becomes ``engine:voice+vtl<factor>``.
* **Channels.** Each utterance gets a recording channel drawn in the plan (``channels``): 30 %
  clean, the rest a mix of simulated room reverb, microphone colouring, background noise or
  babble at 3..25 dB SNR, and a telephone band (8 kHz, mu-law) or an MP3/Opus round trip. It is
  baked into the FLAC, so features can be cached.
* **Held-out voices and speakers: WER per family.** espeak variants come in families that share
  formant settings (m7, m8 and Nguyen are one speaker at different pitches). Test holds out 2 male
  families and 1 female family, dev 1 and 1 (its own, not test's), each read in all 8 languages;
  no held-out family ever reads training data. One of flite's awb and rms is held out of train
  and reads in dev and test. Piper, hibari and festival have one voice each, so they read in
  every split; their unseen part is the perturbed speakers: train draws vocal-tract factors from
  ``speakers.VTL_FACTORS["train"]`` and dev/test from values at least 0.02 away that train never
  uses. So dev and test report WER per family (``voice_family.voice_family(speaker)``): espeak-ng
  and flite (unseen voices), festival, piper and hibari (seen voices, unseen sentences), and
  perturbed (unseen speakers); the perturbed neural utterances (``voice_family.is_natural_voice``)
  are the natural-voice part. ``out_dir/voices.json`` lists the voices and factors of every split.
* **Determinism.** The whole plan (sentence, voice, prosody, speaker, channel of each utterance
  id) is drawn up front from ``random.Random(seed)``, and the random parts of synthesis are seeded
  by the utterance id, so the corpus does not depend on the number of workers. One exception:
  Piper draws its noise inside its ONNX graph, which cannot be seeded, so a Piper utterance made
  twice differs slightly (its plan and text do not; resuming never remakes it). Growing ``hours``
  with the same seed keeps the earlier utterances (the plan only gets longer).
* **Resumable.** FLACs are written atomically, so a killed run loses nothing written; an existing
  non-empty FLAC is not synthesised again. A failing utterance is logged, counted per voice and
  left out of the manifest, never stopping the run. A missing engine stops the run before it
  starts with a one-line error naming the package to install.

Layout: ``out_dir/audio/{train,dev,test}/<id>.flac`` (16 kHz mono, 16-bit FLAC) and
``out_dir/{train,dev,test}.jsonl`` whose audio paths are relative to ``out_dir``.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import random
import re
import resource
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

from s2s_media.data import channels, speakers, tts_voices
from s2s_media.data.manifest import AudioRecord, write_manifest
from s2s_media.data.voice_family import PERTURBED_MARK, voice_family
from s2s_media.errors import UserError
from s2s_media.frontend.audio import SAMPLE_RATE, resample
from s2s_media.text.normalize import normalize_text

log = logging.getLogger(__name__)

FORTUNES_DIR = Path("/usr/share/games/fortunes")
WORDNET_DIR = Path("/usr/share/wordnet")      # apt wordnet-base: example sentences in the glosses
TEXT_SOURCES = {"fortunes": "fortunes", "wordnet": "wordnet-base"}   # named source -> apt package
SPLITS = ("train", "dev", "test")
PLAN_VERSION = 2  # bump when the planning changes, so old output dirs are not silently reused

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


# a plain number token: 7, 1984, 1,200, 3.5, 2nd (not $5, 5pm, 1990s, 4x4, 10:30, v1.2)
_NUMBER_TOKEN = re.compile(r"(?<![\w$%.,:/-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(st|nd|rd|th)?(?![\w$%:/]|[.,]\d)")


def verbalize_numbers(text: str) -> str:
    """Plain numbers spelled the way :func:`normalize_text` spells them: ``"In 1984 he was 3rd."`` ->
    ``"In nineteen eighty four he was third."``, so the TTS reads exactly the transcript's words."""
    return _NUMBER_TOKEN.sub(lambda m: normalize_text(m.group(0)), text)


def clean_sentence(sentence: str, min_words: int = 3, max_words: int = 16) -> str | None:
    """Return the sentence tidied up, or ``None`` if TTS and :func:`normalize_text` may disagree.

    Plain numbers (``7``, ``1984``, ``1,200``, ``3.5``, ``2nd``) are first written as the words that
    :func:`normalize_text` makes of them (:func:`verbalize_numbers`); any digit left over
    (``$5``, ``5pm``, ``10:30``) rejects the sentence.
    Kept: ASCII letters, spaces and ``, . ! ? ' ; : - "`` only; no digits; no words with two
    capitals in a row (acronyms); no abbreviations or dotted words (``a.out``); no vowel-less
    or stretched words (``hmm``, ``Q``, ``sooo``: spelled out or drawn out); no ``etc``/``ok``
    (read expanded); no word longer than :data:`MAX_WORD_LETTERS` letters;
    ``min_words..max_words`` words after normalisation. ````quotes''`` become ``"``, and
    unbalanced double quotes are dropped.
    """
    text = " ".join(verbalize_numbers(sentence.replace("``", '"').replace("''", '"')).split())
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


def read_wordnet_examples(root: Path = WORDNET_DIR) -> list[str]:
    """WordNet's example sentences (the quoted parts of its glosses), as sentences.

    They are mostly lower-case fragments without a full stop (``"he ran to the store"``); the first
    letter is capitalised and a full stop added where no ``.!?`` ends them.
    """
    examples: list[str] = []
    for pos in ("noun", "verb", "adj", "adv"):
        path = root / f"data.{pos}"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith(" ") or "|" not in line:
                continue                                     # the licence header
            for example in re.findall(r'"([^"]+)"', line.partition("|")[2]):
                example = example.strip()
                if not example or "..." in example:
                    continue
                example = example[0].upper() + example[1:]
                examples.append(example if example[-1] in ".!?" else example + ".")
    return examples


def source_paragraphs(text_source: str) -> list[str]:
    """Paragraphs of ``text_source``; raises UserError if missing.

    ``text_source``: "fortunes", "wordnet" (WordNet's example sentences), a UTF-8 text file, or
    several of these joined by ``+`` (``fortunes+wordnet``).
    """
    if "+" in text_source and not Path(text_source).is_file():
        return [p for part in text_source.split("+") for p in source_paragraphs(part)]
    if text_source == "wordnet":
        if not (WORDNET_DIR / "data.noun").is_file():
            raise UserError(f"wordnet: {WORDNET_DIR}/data.noun not found; install it with `apt-get install wordnet-base`")
        return read_wordnet_examples(WORDNET_DIR)
    if text_source == "fortunes":
        if not FORTUNES_DIR.is_dir():
            raise UserError(f"fortunes: {FORTUNES_DIR} not found; install it with `apt-get install fortunes` "
                            "or pass a UTF-8 text file as the text source")
        return read_fortunes(FORTUNES_DIR)
    path = Path(text_source)
    if not path.is_file():
        raise UserError(f"{path}: text source not found; pass 'fortunes', 'wordnet', a UTF-8 text file "
                        "with one or more sentences per line, or several joined by '+'")
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
# awb_time only tells the time and is left out. kal, kal16 and slt are reserved (below).
FLITE_VOICES: dict[str, float | None] = {"awb": 130.0, "rms": None}
FLITE_HELD_OUT_CHOICES = ("awb", "rms")
# Reserved for an independent evaluation, never planned in any split: festival's kal
# (festvox-kallpc16k/8k) and slt (festvox-us-slt-hts) voices and flite's slt, and flite's kal/kal16
# (the same kal diphone speaker). :func:`is_reserved` also refuses any other kal or slt voice.
RESERVED_VOICES = frozenset({"flite:slt", "flite:kal", "flite:kal16", "festival:kal_diphone",
                             "festival:cmu_us_slt_arctic_hts", "festival:cmu_us_slt_cg"})
_RESERVED_SPEAKERS = ("kal", "slt")

# Share of the utterances each engine reads (the split's voices decide among what is left when an
# engine has no voice in a split). The neural voices get the largest share; Piper's is limited by
# its cost: 5 audio-seconds per CPU-second against hibari 31, festival 27, flite 28, espeak-ng 52
# (speaker and channel changes included), the mix 26.5: 50 h in about 57 minutes of 2 idle cores.
ENGINE_SHARES: dict[str, float] = {"hibari": 0.50, "piper": 0.06, "festival": 0.06, "flite": 0.10, "espeak": 0.28}
FEMALE_SHARE = 0.4           # share of the espeak utterances read by female families
PERTURB_SHARE = 0.5          # share of utterances whose formants move (a new speaker of the voice)
PIPER_NOISE_SCALE = (0.35, 0.9)   # Piper's generator noise (its default 0.667)
PIPER_NOISE_W = (0.4, 1.0)        # Piper's phoneme-duration noise (its default 0.8)
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
    formant: float = 1.0      # vocal-tract factor (>1 raises the formants); applied by render() unless native
    noise_scale: float = 0.667  # Piper only
    noise_w: float = 0.8        # Piper only
    seed: int = 0               # for engines with random noise (hibari)


class Voice(ABC):
    """One TTS voice; ``synthesize`` returns ``(wav: (samples,) float32, sample_rate)``."""
    engine: str
    words_per_second: float  # at rate 1.0, for planning durations
    native_pitch = True      # synthesize() applies prosody.semitones itself
    native_formant = False   # synthesize() applies prosody.formant itself (else render() does)

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


def is_reserved(voice_id: str) -> bool:
    """True for a voice of the independent evaluation (kal and slt in any engine): never planned."""
    engine, _, name = voice_id.partition(":")
    return voice_id in RESERVED_VOICES or (engine in ("flite", "festival")
                                           and any(r in name.lower() for r in _RESERVED_SPEAKERS))


@functools.lru_cache(maxsize=None)
def make_voice(voice_id: str):
    """``"espeak:en-us+f3"``, ``"flite:awb"``, ``"piper:joe"``, ``"hibari:heart"``, ``"festival:ked_diphone"``
    -> the voice, made once per process (the neural ones load their model on first use)."""
    engine, _, name = voice_id.partition(":")
    if is_reserved(voice_id):
        raise ValueError(f"{voice_id!r} is reserved for the independent evaluation and is never synthesised")
    if engine == "espeak":
        return EspeakVoice(name)
    if engine == "flite" and name in FLITE_VOICES:
        return FliteVoice(name)
    if engine in tts_voices.IN_PROCESS_VOICES:
        cls, names = tts_voices.IN_PROCESS_VOICES[engine]
        if name in names:
            return cls(name)
    raise ValueError(f"unknown voice {voice_id!r}")


def espeak_voice_ids(families: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """Every language combined with every variant of ``families`` (``""`` = the default voice)."""
    variants = sorted({v for family in families for v in family})
    return tuple(f"espeak:{lang}{'+' + v if v else ''}" for lang in ESPEAK_LANGUAGES for v in variants)


NEURAL_VOICES = tuple(f"{engine}:{name}" for engine in ("hibari", "piper")
                      for name in tts_voices.IN_PROCESS_VOICES[engine][1])
FESTIVAL_VOICE_IDS = tuple(f"festival:{name}" for name in tts_voices.FESTIVAL_VOICES)


@dataclass(frozen=True)
class VoicePool:
    """The voices one split reads with, as voice ids."""
    male: tuple[str, ...]      # espeak: male families (and, in train, the train-only variants)
    female: tuple[str, ...]    # espeak: female families
    flite: tuple[str, ...]
    others: tuple[str, ...] = ()   # piper, hibari, festival voices

    @property
    def voices(self) -> list[str]:
        return [*self.male, *self.female, *self.flite, *self.others]

    def by_engine(self) -> dict[str, tuple[str, ...]]:
        engines: dict[str, tuple[str, ...]] = {"espeak": (*self.male, *self.female), "flite": self.flite}
        for voice in self.others:
            engine = voice.partition(":")[0]
            engines[engine] = (*engines.get(engine, ()), voice)
        return {engine: voices for engine, voices in engines.items() if voices}

    def draw(self, rng: random.Random) -> str:
        """One voice: an engine by :data:`ENGINE_SHARES`, then espeak female with FEMALE_SHARE."""
        engines = self.by_engine()
        names = [e for e in ENGINE_SHARES if e in engines]
        engine = rng.choices(names, weights=[ENGINE_SHARES[e] for e in names])[0]
        if engine != "espeak":
            return rng.choice(engines[engine])
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
        pools[split] = VoicePool(espeak_voice_ids(male[:n_male]), espeak_voice_ids(female[:n_female]), flite_held,
                                 NEURAL_VOICES + FESTIVAL_VOICE_IDS)
        del male[:n_male], female[:n_female]
    pools["train"] = VoicePool(espeak_voice_ids([*male, ESPEAK_TRAIN_ONLY_VARIANTS]), espeak_voice_ids(female),
                               tuple(f"flite:{v}" for v in FLITE_VOICES if f"flite:{v}" not in flite_held),
                               NEURAL_VOICES + FESTIVAL_VOICE_IDS)
    for pool in pools.values():
        assert not any(is_reserved(v) for v in pool.voices), "a reserved voice was planned"
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
    formant: float = 1.0          # vocal-tract factor; != 1 makes a perturbed speaker
    noise_scale: float = 0.667    # Piper's generator noise
    noise_w: float = 0.8          # Piper's duration noise
    channel: str = channels.CLEAN  # recording channel, see s2s_media.data.channels

    @property
    def speaker(self) -> str:
        """The manifest speaker: the voice id, plus ``+vtl<factor>`` for a perturbed speaker."""
        return self.voice + (f"{PERTURBED_MARK}{self.formant:.2f}" if self.formant != 1.0 else "")

    @property
    def engine(self) -> str:
        return self.voice.partition(":")[0]

    def estimated_seconds(self) -> float:
        """A duration estimate from the word count, used to fill ``hours`` while planning."""
        wps = _WORDS_PER_SECOND[self.engine]
        return len(normalize_text(self.text).split()) / (wps * self.rate) + self.lead + self.trail


_WORDS_PER_SECOND = {"espeak": EspeakVoice.words_per_second, "flite": FliteVoice.words_per_second,
                     **{e: cls.words_per_second for e, (cls, _) in tts_voices.IN_PROCESS_VOICES.items()}}


def _draw_utterance(rng: random.Random, utt_id: str, split: str, text: str, voice: str) -> Utterance:
    utt = Utterance(id=utt_id, split=split, text=text, voice=voice,
                    rate=round(rng.uniform(*RATE_RANGE), 3),
                    semitones=round(rng.uniform(*SEMITONE_RANGE), 2),
                    level_db=round(rng.uniform(*LEVEL_DB_RANGE), 2),
                    lead=round(rng.uniform(*EDGE_SILENCE_RANGE), 3),
                    trail=round(rng.uniform(*EDGE_SILENCE_RANGE), 3))
    formant = rng.choice(speakers.VTL_FACTORS[split]) if rng.random() < PERTURB_SHARE else 1.0
    noise_scale = round(rng.uniform(*PIPER_NOISE_SCALE), 3)
    noise_w = round(rng.uniform(*PIPER_NOISE_W), 3)
    channel = channels.draw_channel(rng)
    if utt.engine != "piper":
        noise_scale, noise_w = Utterance.noise_scale, Utterance.noise_w
    return dataclasses.replace(utt, formant=formant, noise_scale=noise_scale, noise_w=noise_w, channel=channel)


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
    """Synthesise ``utt`` as 16 kHz mono float32 ``(samples,)``: voice, speaker change, channel, level.

    The engine reads the text at the planned rate (and pitch and formants where it can); what it
    cannot do, :func:`speakers.change_voice` does. Then edges are trimmed, the channel applied
    (seeded by the utterance id) and the peak set to the planned level.
    """
    voice = make_voice(utt.voice)
    prosody = Prosody(utt.rate, utt.semitones, utt.formant, utt.noise_scale, utt.noise_w,
                      seed=channels.channel_seed(utt.id))
    wav, sr = voice.synthesize(utt.text, prosody)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    peak = float(np.abs(wav).max()) if wav.size else 0.0
    if peak <= 1e-4:
        raise RuntimeError("the engine produced no audible audio")
    wav = resample(wav / peak, sr, SAMPLE_RATE)
    pitch = 1.0 if voice.native_pitch else 2.0 ** (utt.semitones / 12.0)
    formant = 1.0 if voice.native_formant else utt.formant
    wav = speakers.change_voice(wav, SAMPLE_RATE, pitch=pitch, formant=formant, seed=prosody.seed)
    wav = trim_silence(wav, SAMPLE_RATE, utt.lead, utt.trail)
    wav = channels.apply_channel(wav, utt.channel, channels.channel_seed(utt.id))
    peak = float(np.abs(wav).max())
    if not np.isfinite(peak) or peak <= 1e-6:
        raise RuntimeError("no audible audio after the speaker and channel changes")
    return (wav * (10 ** (utt.level_db / 20) / peak)).astype(np.float32)


def write_flac(path: Path, wav: np.ndarray) -> None:
    """Write 16-bit FLAC atomically, so an interrupted run never leaves a truncated file behind."""
    tmp = path.with_name(path.name + ".tmp")
    sf.write(str(tmp), wav, SAMPLE_RATE, subtype="PCM_16", format="FLAC")
    os.replace(tmp, path)


def _cpu_seconds() -> float:
    """CPU time of this process, its finished children (espeak-ng, flite) and its live festival."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime + tts_voices.helper_cpu_seconds()


def _synthesize_job(job: tuple[Utterance, str]) -> tuple[str, float | None, str | None, float]:
    """Worker: make one FLAC unless it exists.

    Returns ``(id, duration or None, error or None, cpu_seconds)``; ``cpu_seconds`` is 0 for a
    file that already existed.
    """
    utt, out = job
    path = Path(out)
    if path.is_file() and path.stat().st_size > 0:
        try:
            return utt.id, sf.info(str(path)).duration, None, 0.0
        except sf.LibsndfileError:
            pass                                             # unreadable: synthesise it again
    start = _cpu_seconds()
    try:
        wav = render(utt)
        write_flac(path, wav)
        return utt.id, len(wav) / SAMPLE_RATE, None, _cpu_seconds() - start
    except Exception as e:  # noqa: BLE001 - one bad utterance must never stop the run
        return utt.id, None, f"{type(e).__name__}: {e}", _cpu_seconds() - start


def _run_jobs(jobs: list[tuple[Utterance, str]], workers: int) -> Iterator[tuple[str, float | None, str | None, float]]:
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
    failed: dict[str, int] = {}
    seconds = 0.0
    made: dict[str, list[float]] = {}         # engine -> [audio seconds, cpu seconds] made in this run
    by_id = {utt.id: utt for utt in plan}
    start = time.monotonic()
    with tqdm(total=len(jobs), desc="synthesising", unit="utt", disable=None, dynamic_ncols=True) as bar:
        for utt_id, duration, error, cpu in _run_jobs(jobs, workers):
            utt = by_id[utt_id]
            if error is None and duration is not None:
                durations[utt_id] = duration
                seconds += duration
                if cpu > 0:
                    totals = made.setdefault(utt.engine, [0.0, 0.0])
                    totals[0] += duration
                    totals[1] += cpu
            else:
                failed[utt.voice] = failed.get(utt.voice, 0) + 1
                if sum(failed.values()) <= 20:
                    log.warning("synthetic: %s (%s, %r) failed and is skipped: %s", utt_id, utt.voice, utt.text, error)
            bar.set_postfix_str(f"{seconds / 3600:.2f} h", refresh=False)
            bar.update(1)
    if failed:
        log.warning("synthetic: %d of %d utterances failed and are left out of the manifests (by voice: %s)",
                    sum(failed.values()), len(plan), ", ".join(f"{v} {n}" for v, n in sorted(failed.items())))
    elapsed = time.monotonic() - start
    log.info("synthetic: %d utterances (%.2f h of audio) ready in %.0f s with %d workers",
             len(durations), seconds / 3600, elapsed, workers)
    if made:
        audio, cpu = (sum(t[i] for t in made.values()) for i in (0, 1))
        log.info("synthetic: audio-seconds per CPU-second: %s; all %.1f",
                 ", ".join(f"{e} {a / max(c, 1e-9):.1f} ({a / 3600:.2f} h)" for e, (a, c) in sorted(made.items())),
                 audio / max(cpu, 1e-9))
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
    for engine in sorted({utt.engine for utt in all_utts}):
        tts_voices.check_engine(engine)
    if any(utt.formant != 1.0 for utt in all_utts):
        speakers.require_parselmouth()
    durations = synthesize(all_utts, out_dir, workers or os.cpu_count() or 1)
    manifests: dict[str, Path] = {}
    for split in SPLITS:
        records = [AudioRecord(id=utt.id, audio=audio_path(utt), text=utt.text,
                               duration=round(durations[utt.id], 4), speaker=utt.speaker)
                   for utt in plan[split] if utt.id in durations]
        manifests[split] = out_dir / f"{split}.jsonl"
        write_manifest(manifests[split], records)
        families: dict[str, int] = {}
        for record in records:
            families[voice_family(record.speaker)] = families.get(voice_family(record.speaker), 0) + 1
        log.info("synthetic: %s: %d utterances, %.2f h; by family: %s", split, len(records),
                 sum(r.duration for r in records) / 3600, ", ".join(f"{f} {n}" for f, n in sorted(families.items())))
    return manifests


def _voices_summary(pools: dict[str, VoicePool], settings: dict) -> dict:
    """The content of ``voices.json``: the held-out voices and every split's voice list."""
    def variants(voice_ids: Iterable[str]) -> list[str]:
        return sorted({v.partition("+")[2] for v in voice_ids})
    return {
        "held_out": {split: {"espeak_male_variants": variants(pools[split].male),
                             "espeak_female_variants": variants(pools[split].female),
                             "espeak_languages": list(ESPEAK_LANGUAGES),
                             "flite": list(pools[split].flite),
                             "vtl_factors": list(speakers.VTL_FACTORS[split])}
                     for split in ("dev", "test")},
        "train_vtl_factors": list(speakers.VTL_FACTORS["train"]),
        "engine_shares": ENGINE_SHARES,
        "perturb_share": PERTURB_SHARE,
        "reserved_never_used": sorted(RESERVED_VOICES),
        "note": ("dev and test each read with their own espeak variant families (in every language), which never "
                 "occur in train; the held-out flite voice is read in both dev and test and never in train. "
                 "The neural voices (piper, hibari) and festival read in every split; a share of every split's "
                 "utterances is read by a perturbed speaker (speaker id '+vtl<factor>', family 'perturbed'), and "
                 "dev/test draw their vocal-tract factors from values train never uses, so perturbed dev/test "
                 "speakers (above all the perturbed neural voices: the natural-voice part) are unseen. "
                 "Family of a speaker id: s2s_media.data.voice_family.voice_family."),
        "voices": {split: pools[split].voices for split in SPLITS},
        "settings": settings,
    }
