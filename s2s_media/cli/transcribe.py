"""``s2s-media transcribe PATH...``: audio files, folders and manifests -> transcripts with timestamps."""
from __future__ import annotations

import os
import sys
import time

from s2s_media.cli.runtime import add_runtime_arguments
from s2s_media.methods import DECODING_METHODS

EPILOG = """\
output:
  One record per input: {"path","text","duration","words":[{"word","start","end","confidence"}],
  "segments":[{"start","end","text"}]} ("id" added for manifest entries), or {"path","error"}.
  Times are seconds; a word's confidence is the lowest CTC posterior of its tokens, calibrated to the
  probability that the word is right when the model has MODEL.calibration.json beside it (the bundled
  one does). Text and words are written with capitals and . , ? ! restored (each word keeps its times; --no-punctuation: raw).
  Records are written as each file finishes. The format comes from --format, else from --out's
  extension (.jsonl .txt .tsv .srt .vtt), else jsonl on stdout. srt/vtt with several inputs:
  --out is a folder that gets one subtitle file per input. Formats other than jsonl keep the list
  of finished inputs (and the error records) in OUT.done.jsonl (OUT/done.jsonl for a folder).
  --resume skips every input already in the output, failed ones included.

hotwords:
  --hotwords FILE (one PHRASE or PHRASE:BOOST a line) and --hotword "Kubernetes:3.0" (repeatable)
  bias the search toward rare words and names: each token of a phrase earns BOOST (default 2.0)
  while the hypothesis spells it, and gives it back if the phrase is not completed. Phrases with
  characters the model cannot write are named on stderr and left out. They act in the CTC prefix
  searches (rescoring, ctc_prefix_beam).

alternatives:
  --alternatives N adds "alternatives": [{"text","confidence"}] (best first) to every record and
  segment of jsonl output: the N best hypotheses, each with its share of the probability of all
  the hypotheses the search kept.

long recordings:
  Recordings longer than --max-segment seconds are split on silence (--vad: Silero VAD by
  default, the energy detector without it) into pieces of at most that length, decoded in batches and stitched back with
  absolute timestamps. Silence longer than a second between pieces is not decoded.

several machines:
  --shard I/N takes every N-th file of the sorted input list, starting at I (0-based), so
  shards 0/N .. N-1/N together cover every file exactly once. Under torchrun, --shard auto reads
  RANK and WORLD_SIZE and writes OUT.rankK; merge the parts afterwards:

    torchrun --nnodes 2 --node_rank R --master_addr host0 --nproc_per_node 8 \\
      -m s2s_media.cli.main transcribe /data/audio --recursive --shard auto --out out.jsonl
    s2s-media transcribe --merge out.jsonl.rank* --out out.jsonl

  Each rank uses GPU LOCAL_RANK when CUDA is present; ranks never talk to each other. With
  several nodes, copy the OUT.rankK parts to one machine before merging.

exit status: 0 all files transcribed, 1 some failed, 2 bad usage, 130 interrupted (Ctrl-C keeps
everything written so far; run again with --resume).
"""


def add_parser(sub) -> None:
    import argparse
    p = sub.add_parser(
        "transcribe",
        description="Transcribe audio files, folders (wav, flac, ogg; mp3 and m4a where they can be\n"
                    "decoded) and JSONL manifests (then WER and CER are printed too), with word timestamps\n"
                    "and confidences. Without --model the bundled default model is used.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="*", metavar="PATH", help="audio files, folders or .jsonl manifests "
                   "(with --merge: the OUT.rankK parts)")
    p.add_argument("--model", help="checkpoint (.pt) from train, average or export, or an ONNX model directory "
                   "(export --format onnx) (default: the bundled model)")
    p.add_argument("--out", help="output file (default: stdout, jsonl); a folder for srt/vtt with several inputs")
    p.add_argument("--format", choices=["jsonl", "txt", "srt", "vtt", "tsv"],
                   help="output format (default: from --out's extension, else jsonl)")
    p.add_argument("--decoding", choices=DECODING_METHODS,
                   help="search method (default: the model's, usually rescoring)")
    p.add_argument("--beam", type=int, help="beam size (default: the model's decode.beam)")
    p.add_argument("--lm-weight", type=float, help="weight of the model's language model, if it has one "
                   "(default: its decode.lm_weight; 0 turns it off)")
    p.add_argument("--batch-seconds", type=float, help="padded seconds of audio per decoding batch "
                   "(default: the model's decode.batch_seconds)")
    p.add_argument("--max-segment", type=float, default=20.0, metavar="S",
                   help="longest piece a long recording is cut into, in seconds (default 20)")
    p.add_argument("--vad", default="auto", metavar="{auto,silero,energy}",
                   help="voice activity detector that splits long recordings: silero (the silero-vad package), "
                        "energy (no model), or auto: silero when installed, else energy (default: %(default)s)")
    p.add_argument("--no-punctuation", dest="punctuation", action="store_false",
                   help="leave the text as the model writes it (lower-case, no marks); by default the bundled "
                        "punctuation model restores capitals and . , ? ! (models writing normalised English)")
    p.add_argument("--punctuation-model", metavar="FILE",
                   help="punctuation model file (s2s-media punctuation train) instead of the bundled one")
    p.add_argument("--workers", type=int, default=1, help="threads loading and cutting audio (0 = main thread)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_hotword_arguments(p)
    p.add_argument("--alternatives", type=int, default=0, metavar="N",
                   help="also list the N best hypotheses with confidences (jsonl output)")
    add_runtime_arguments(p)
    p.add_argument("--recursive", action="store_true", help="descend into subfolders of folder inputs")
    p.add_argument("--resume", action="store_true", help="skip inputs already in --out and append the rest")
    p.add_argument("--shard", metavar="I/N", help="transcribe every N-th file starting at I (0-based), or "
                   "'auto' under torchrun (RANK/WORLD_SIZE; writes OUT.rankK)")
    p.add_argument("--merge", action="store_true", help="merge the OUT.rankK parts given as PATHs into --out")
    add_ray_arguments(p, "files")
    p.set_defaults(run=run)


def add_hotword_arguments(p) -> None:
    """``--hotwords FILE``, ``--hotword PHRASE[:BOOST]`` (repeatable), ``--max-hotwords``: shared with evaluate."""
    from s2s_media.decoding.context import DEFAULT_BOOST, MAX_HOTWORDS
    p.add_argument("--hotwords", metavar="FILE", help="words or phrases to favour, one PHRASE or PHRASE:BOOST a line")
    p.add_argument("--hotword", action="append", default=[], metavar="PHRASE[:BOOST]",
                   help=f"a word or phrase to favour, with its bonus per token (default {DEFAULT_BOOST}); repeatable")
    p.add_argument("--max-hotwords", type=int, default=MAX_HOTWORDS, metavar="N",
                   help="refuse more hotwords than this (default %(default)s; 0: no limit)")


def hotwords_from_args(args) -> tuple:
    """The hotwords of ``--hotwords FILE`` then ``--hotword``; () when none was given."""
    from s2s_media.decoding.context import Hotword, read_hotwords
    from s2s_media.errors import UserError
    found = list(read_hotwords(args.hotwords)) if args.hotwords else []
    found += [Hotword.parse(h) for h in args.hotword]
    if args.hotwords and not found:
        raise UserError(f"--hotwords {args.hotwords}: the file lists no phrase; write one PHRASE[:BOOST] a line")
    return tuple(found)


def add_ray_arguments(p, unit: str) -> None:
    """``--ray [ADDRESS]``, ``--ray-actors``, ``--ray-batch``: shared by transcribe and caption."""
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray Data: reading in Ray tasks, decoding in a pool of actors that load the model "
                        "once each. ADDRESS: HOST:PORT of a cluster's head, ray://HOST:PORT, or auto; none starts "
                        "a local Ray (write --ray last or as --ray=ADDRESS). Needs pip install 's2s-media[ray]'")
    p.add_argument("--ray-actors", type=int, metavar="N",
                   help="decoding actors, one CPU each (default: the cluster's CPUs)")
    p.add_argument("--ray-batch", type=int, default=16, metavar="N",
                   help=f"{unit} an actor decodes per call (default %(default)s)")


def ray_setup(args) -> int:
    """Join (or start) Ray for ``--ray``; returns the number of decoding actors."""
    from pathlib import Path

    from s2s_media.errors import UserError
    from s2s_media.inference import on_ray
    if args.ray != "local" and Path(args.ray).exists():
        raise UserError(f"--ray {args.ray}: that is an input, not a Ray address; put --ray after the inputs "
                        "or write --ray=ADDRESS")
    on_ray.connect(None if args.ray == "local" else args.ray)
    import ray
    actors = args.ray_actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    print(f"ray: {actors} decoding actors on a cluster of {ray.cluster_resources().get('CPU', 0):g} CPUs",
          file=sys.stderr)
    return actors


def load_transcriber(model: str | None, device: str, options, runtime: str = "auto", threads: int = 0):
    """What each Ray actor runs once: the model on ``runtime`` (as the plain command loads it) and its transcriber."""
    from s2s_media.api import load
    return load(model, device, task="asr", runtime=runtime, threads=threads).transcriber(options)


def run(args) -> int:
    from s2s_media.errors import UserError
    from s2s_media.frontend.vad import VadConfig
    from s2s_media.inference.inputs import discover
    from s2s_media.inference.sharding import merge_outputs, parse_shard, rank_path, shard
    from s2s_media.inference.transcriber import TranscribeOptions
    from s2s_media.inference.writers import infer_format, open_writer

    fmt = infer_format(args.out, args.format)
    if args.merge:
        if not args.out:
            raise UserError("--merge needs --out: the merged output file")
        n = merge_outputs(args.paths, args.out, fmt)
        print(f"merged {n} parts into {args.out}")
        return 0
    if not args.paths:
        raise UserError("no PATH given: name audio files, folders or .jsonl manifests to transcribe")
    try:
        vad = VadConfig(args.vad, max_segment_s=args.max_segment)
    except ValueError as e:
        flag = "--vad" if "method" in str(e) else "--max-segment"
        raise UserError(f"{flag} {args.vad if flag == '--vad' else args.max_segment}: {e}") from None
    options = TranscribeOptions(decoding=args.decoding, beam=args.beam, batch_seconds=args.batch_seconds,
                                lm_weight=args.lm_weight, workers=args.workers, vad=vad,
                                punctuation=args.punctuation, punctuation_model=args.punctuation_model,
                                hotwords=hotwords_from_args(args), max_hotwords=args.max_hotwords,
                                alternatives=args.alternatives)
    index, count, auto = parse_shard(args.shard)
    out = args.out
    if auto:
        if not out:
            raise UserError("--shard auto needs --out: each rank writes OUT.rankK")
        out = str(rank_path(out, index))
    items = discover(args.paths, args.recursive)
    n_all = len(items)
    items = shard(items, index, count)
    writer = open_writer(out, fmt, n_all, args.resume)
    done = writer.done()
    skipped = sum(it.key in done for it in items)
    items = [it for it in items if it.key not in done]
    info = sys.stderr if out is None else sys.stdout
    try:
        from s2s_media.api import load
        model = load(args.model, "cpu" if args.ray else args.device, task="asr", runtime=args.runtime,
                     threads=args.threads)
        transcriber = model.transcriber(options)
        for warning in transcriber.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if args.ray:   # the model loaded here checks the model and options; each actor loads its own
            import functools

            from s2s_media.inference import on_ray
            actors = ray_setup(args)
            # each actor has one CPU (on_ray): onnxruntime gets one thread unless --threads says otherwise
            make = functools.partial(load_transcriber, args.model, args.device, options, args.runtime,
                                     args.threads or 1)
            records = on_ray.transcribe(items, make, actors, args.ray_batch)
        else:
            records = transcriber.run(items)
    except BaseException:
        writer.close()
        raise
    stats = _Stats(time.time())  # the RTF leaves model loading out
    interrupted = False
    try:
        stats.loop(records, writer, len(items), records_on_stdout=out is None)
    except KeyboardInterrupt:
        interrupted = True
    except BrokenPipeError:  # stdout closed by the reader (e.g. | head): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    finally:
        writer.close()
    if skipped:
        print(f"resumed: {skipped} inputs already in {out} were skipped", file=info)
    stats.report(info, interrupted)
    if interrupted:
        print(f"interrupted: everything finished so far is in {out or 'stdout'}"
              + ("; run again with --resume to continue" if out else ""), file=sys.stderr)
        return 130
    return 1 if stats.failed else 0


class _Stats:
    """Counts for the progress bar and the summary; collects manifest references for WER/CER."""

    def __init__(self, start: float):
        self.start = start
        self.files = self.failed = 0
        self.audio_s = 0.0
        self.refs: list[str] = []
        self.hyps: list[str] = []

    @property
    def rtf(self) -> float:
        return (time.time() - self.start) / self.audio_s if self.audio_s else 0.0

    def loop(self, records, writer, total: int, records_on_stdout: bool) -> None:
        from s2s_media.progress import progress_bar
        bar = progress_bar(total=total, unit="file", desc="transcribing", records_on_stdout=records_on_stdout)
        try:
            for item, rec in records:
                writer.write(rec, item.name)
                self.files += 1
                if "error" in rec:
                    self.failed += 1
                    bar.write(f"error: {rec['error']}", file=sys.stderr)
                else:
                    self.audio_s += rec["duration"]
                    if item.ref is not None:
                        self.refs.append(item.ref)
                        self.hyps.append(rec["text"])
                bar.set_postfix(rtf=f"{self.rtf:.3f}", failed=self.failed, refresh=False)
                bar.update(1)
        finally:
            bar.close()

    def report(self, out, interrupted: bool) -> None:
        wall = time.time() - self.start
        if self.refs:
            from s2s_media.metrics import cer, wer
            w, c = wer(self.refs, self.hyps), cer(self.refs, self.hyps)
            print(f"manifest entries: {len(self.refs)} scored (failed ones excluded)  "
                  f"WER {100 * w.rate:.2f}%  CER {100 * c.rate:.2f}%  ({w})", file=out)
        from s2s_media.progress import duration_text
        print(f"{'interrupted after ' if interrupted else ''}{self.files} files, {duration_text(self.audio_s)} of audio, "
              f"{wall:.1f} s wall, RTF {self.rtf:.4f}, {self.failed} failed", file=out)
