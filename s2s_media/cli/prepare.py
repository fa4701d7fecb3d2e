"""``s2s-media prepare NAME SRC OUT``: write train/dev/test manifests for a corpus
(``prepare synthetic_shapes OUT`` for the generator that needs no SRC).

The work is done by :data:`s2s_media.data.preparers.PREPARERS`; this module only parses the
command line, passes each preparer the options it takes, and prints a per-split summary.
"""
from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Callable

from s2s_media.data.captions import is_caption_manifest, read_caption_manifest
from s2s_media.data.manifest import read_manifest
from s2s_media.data.preparers import NO_SOURCE, PREPARERS
from s2s_media.errors import UserError

EPILOG = """\
datasets and the SRC layout each one expects:

  librispeech  SRC = the LibriSpeech/ folder, or the folder that contains it:
                 SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER-UTT.flac
                 SUBSET/SPEAKER/CHAPTER/SPEAKER-CHAPTER.trans.txt   ("UTT-ID TRANSCRIPT" lines)
               every train-* subset present -> train.jsonl; dev-clean -> dev.jsonl;
               test-clean -> test.jsonl; dev-other / test-other -> dev_other.jsonl / test_other.jsonl

  commonvoice  SRC = a Common Voice language folder (cv-corpus-*/en), or a release folder holding one:
                 clips/*.mp3, train.tsv, dev.tsv, test.tsv   (tab separated, header row;
                 columns 'path' and 'sentence' required, 'client_id' used as speaker)
               manifests point at the mp3 clips; --convert decodes them once to 16 kHz FLAC
               in OUT/audio/ (recommended: mp3 decoding is slow at training time);
               --language TAG (default: the folder's name, e.g. de, zh-CN) picks the normaliser and marks
               every record; languages other than English keep digits (records marked "digits": true)

  kaldi        SRC = a folder with Kaldi data dirs train/, dev/ (or valid/) and test/ (or eval/), each with
                 wav.scp ("RECID PATH"), text ("UTTID TRANSCRIPT"),
                 optional segments ("UTTID RECID START END") and utt2spk ("UTTID SPEAKER")
               or SRC = one data dir, written as OUT/<name of SRC>.jsonl.
               Pipe entries in wav.scp ("RECID cmd ... |") are rejected: convert them to files.
               Relative paths in wav.scp are resolved against the current directory (Kaldi's
               convention: the recipe dir), then the data dir's grandparent, parent and itself.

  synthetic    SRC = "fortunes" (the system fortune files), "wordnet" (WordNet's example sentences,
               apt wordnet-base), a text file with one sentence per line, or several joined by "+"
               (fortunes+wordnet); plain numbers are read as the words the transcript holds;
               the sentences are synthesised to speech (options --hours ... --max-words) by
               hibari, Piper, festival, espeak-ng and flite voices, many with moved formants
               (speakers "engine:voice+vtl<factor>"), through simulated rooms, microphones,
               noise, telephone and codecs; see OUT/voices.json. 50 h: about 1 h on 2 idle cores

  lhotse       SRC = a Lhotse CutSet manifest (cuts.jsonl.gz), a recordings manifest with its supervisions
                 beside it (recordings_X.jsonl.gz + supervisions_X.jsonl.gz), or a folder of them;
               one utterance per supervision, located in the recording's file by offset and duration;
               OUT/<file name without the word cuts/recordings>.jsonl (cuts.jsonl.gz -> all.jsonl)

  nemo         SRC = a NeMo manifest (JSON lines: audio_filepath, duration, text, optional offset)
                 or a folder of .json/.jsonl manifests; train_manifest.json -> OUT/train.jsonl

captioning (caption manifests train.jsonl, val.jsonl, test.jsonl: id, image, captions, split):

  coco         SRC = a folder with train2014/ and val2014/ (COCO 2014 images) and Karpathy's
                 dataset_coco.json (in SRC or SRC/caption_datasets/); restval goes to train
  flickr8k     SRC = a folder with Flicker8k_Dataset/ (or Images/) and dataset_flickr8k.json
  flickr30k    SRC = a folder with flickr30k-images/ (or Images/) and dataset_flickr30k.json
  image_folder SRC = a folder of images (or SRC/images/) with captions.csv (columns image,caption;
                 one row per caption; optional split column) or captions.jsonl, or --captions FILE;
                 without a split column --val/--test images are drawn at random (--seed)
  synthetic_shapes  no SRC: 's2s-media prepare synthetic_shapes OUT --train N --val N --test N
                 --seed S --size 64' draws scenes of coloured shapes with five captions each; some
                 (colour, shape) pairs occur only in test (see OUT/shapes.json, OUT/test_heldout.jsonl)

Transcripts and captions are normalised (lower case, numbers spelled out in English, punctuation removed);
entries with an empty transcript, missing audio or image, or a missing transcript are skipped
with a counted warning.

examples:
  s2s-media prepare librispeech /data/LibriSpeech data/librispeech
  s2s-media prepare commonvoice /data/cv-corpus-17.0/en data/cv_en --convert --workers 2
  s2s-media prepare commonvoice /data/cv-corpus-17.0/zh-CN data/cv_zh --convert --language zh-CN
  s2s-media prepare kaldi ~/kaldi/egs/mini_librispeech/s5/data data/mini
  s2s-media prepare lhotse data/lhotse/librispeech_cuts_train-clean-100.jsonl.gz data/ls
  s2s-media prepare nemo data/an4/train_manifest.json data/an4
  s2s-media prepare synthetic fortunes data/synth --hours 2
  s2s-media prepare coco /data/coco data/coco
  s2s-media prepare synthetic_shapes data/shapes --train 20000 --val 500 --test 1000 --size 64
"""

# option attribute -> flag, for the "does not apply" message
OPTION_FLAGS = {
    "hours": "--hours", "dev_utts": "--dev-utts", "test_utts": "--test-utts", "seed": "--seed",
    "workers": "--workers", "min_words": "--min-words", "max_words": "--max-words", "convert": "--convert",
    "train_images": "--train", "val_images": "--val", "test_images": "--test", "size": "--size",
    "captions": "--captions", "language": "--language",
}


def _number(kind: type, zero_ok: bool = False) -> Callable[[str], float]:
    """An argparse ``type`` accepting numbers of ``kind`` above zero (or from zero with ``zero_ok``)."""
    def parse(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {value!r}") from None
        if number < 0 or (number == 0 and not zero_ok):
            raise argparse.ArgumentTypeError(f"must be {'>=' if zero_ok else '>'} 0, got {value}")
        return number
    parse.__name__ = f"{'non-negative' if zero_ok else 'positive'} {kind.__name__}"
    return parse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``prepare`` subcommand; its ``run`` default is :func:`run`."""
    parser = subparsers.add_parser(
        "prepare",
        description="Scan a corpus and write OUT/train.jsonl, OUT/dev.jsonl and OUT/test.jsonl "
                    "(JSONL manifests: id, audio, text, duration, speaker, offset), then print "
                    "utterances and hours per split.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", metavar="NAME", choices=sorted(PREPARERS),
                        help=f"dataset: {', '.join(sorted(PREPARERS))}")
    parser.add_argument("src", metavar="SRC", help="the corpus folder (see below); for synthetic: 'fortunes' or a text "
                        "file; synthetic_shapes takes no SRC")
    parser.add_argument("out", metavar="OUT", type=Path, nargs="?",
                        help="output folder for the manifests (created if missing)")

    synth = parser.add_argument_group("synthetic")
    synth.add_argument("--hours", type=_number(float, zero_ok=True),
                       help="hours of training speech to synthesise; 0 = no train split (generator default: 10)")
    synth.add_argument("--dev-utts", type=_number(int, zero_ok=True), help="utterances in dev (generator default: 300)")
    synth.add_argument("--test-utts", type=_number(int, zero_ok=True), help="utterances in test (generator default: 300)")
    synth.add_argument("--seed", type=int, help="random seed (generator default: 0)")
    synth.add_argument("--min-words", type=_number(int), help="shortest sentence in words (generator default: 3)")
    synth.add_argument("--max-words", type=_number(int), help="longest sentence in words (generator default: 16)")

    cv = parser.add_argument_group("commonvoice")
    cv.add_argument("--convert", action="store_true",
                    help="decode the mp3 clips once to 16 kHz mono FLAC in OUT/audio/ and point the manifests there")
    cv.add_argument("--language", metavar="TAG",
                    help="the corpus language (en, de, ru, zh-CN, ...), which picks the text normaliser and is "
                         "written into every record (default: the language folder's name)")

    images = parser.add_argument_group("captioning (synthetic_shapes, image_folder)")
    images.add_argument("--train", dest="train_images", type=_number(int),
                        help="synthetic_shapes: training images (default 20000)")
    images.add_argument("--val", dest="val_images", type=_number(int, zero_ok=True),
                        help="validation images (synthetic_shapes default 500; image_folder default 5%%)")
    images.add_argument("--test", dest="test_images", type=_number(int, zero_ok=True),
                        help="test images (synthetic_shapes default 1000; image_folder default 5%%)")
    images.add_argument("--size", type=_number(int), help="synthetic_shapes: image side in pixels (default 64)")
    images.add_argument("--captions", help="image_folder: the captions CSV or JSONL (default SRC/captions.csv|jsonl|txt)")

    both = parser.add_argument_group("synthetic, synthetic_shapes and commonvoice --convert")
    both.add_argument("--workers", type=_number(int), help="worker processes (default: all CPU cores)")
    parser.set_defaults(run=run)
    return parser


def preparer_options(name: str, args: argparse.Namespace) -> dict:
    """The options the user gave, checked against what preparer ``name`` accepts.

    Raises :class:`UserError` for an option the preparer does not take (rather than ignoring it).
    """
    given = {key: getattr(args, key, None) for key in OPTION_FLAGS}
    given = {key: value for key, value in given.items() if value is not None and value is not False}  # 0 is a value
    accepted = set(inspect.signature(PREPARERS[name]).parameters) - {"src", "out"}
    unknown = [OPTION_FLAGS[key] for key in given if key not in accepted]
    if unknown:
        takes = ", ".join(OPTION_FLAGS[k] for k in OPTION_FLAGS if k in accepted) or "no options"
        raise UserError(f"{', '.join(unknown)} does not apply to '{name}' (it takes: {takes})")
    if given.get("min_words") and given.get("max_words") and given["min_words"] > given["max_words"]:
        raise UserError(f"--min-words {given['min_words']} is larger than --max-words {given['max_words']}")
    return given


def summarize(manifests: dict[str, Path]) -> str:
    """A table of utterances and hours (or images and captions) per split, read back from the manifests."""
    jsonl = [p for p in manifests.values() if Path(p).suffix == ".jsonl"]
    if jsonl and is_caption_manifest(jsonl[0]):
        return summarize_captions(manifests)
    lines = [f"  {'split':<12} {'utterances':>10} {'hours':>8}  manifest"]
    total_utts, total_hours = 0, 0.0
    for split, path in manifests.items():
        if Path(path).suffix != ".jsonl":
            continue
        records = read_manifest(path)
        hours = sum(r.duration for r in records) / 3600
        total_utts, total_hours = total_utts + len(records), total_hours + hours
        lines.append(f"  {split:<12} {len(records):>10} {hours:>8.2f}  {path}")
    lines.append(f"  {'total':<12} {total_utts:>10} {total_hours:>8.2f}")
    return "\n".join(lines)


def summarize_captions(manifests: dict[str, Path]) -> str:
    """A table of images and captions per split."""
    lines = [f"  {'split':<12} {'images':>8} {'captions':>9}  manifest"]
    for split, path in manifests.items():
        records = read_caption_manifest(path)
        lines.append(f"  {split:<12} {len(records):>8} {sum(len(r.captions) for r in records):>9}  {path}")
    return "\n".join(lines)


def source_and_out(args: argparse.Namespace) -> tuple[Path | None, Path]:
    """``(SRC, OUT)``; generators in NO_SOURCE take the one positional as OUT."""
    if args.name in NO_SOURCE:
        if args.out is not None:
            raise UserError(f"'{args.name}' generates its data and takes no SRC: s2s-media prepare {args.name} OUT")
        return None, Path(args.src)
    if args.out is None:
        raise UserError(f"'{args.name}' needs SRC and OUT: s2s-media prepare {args.name} SRC OUT")
    return Path(args.src), Path(args.out)


def run(args: argparse.Namespace) -> int:
    """Run the preparer named by ``args.name``; print the summary. Returns the exit code."""
    options = preparer_options(args.name, args)
    src, out = source_and_out(args)
    manifests = PREPARERS[args.name](src, out, **options)
    print(f"prepared {args.name}: {src if src is not None else 'generated'} -> {out}")
    print(summarize(manifests))
    return 0
