"""``s2s-media evaluate --model CKPT --manifest M``: WER/CER per decoding method, with hypotheses;
for a caption manifest, BLEU-1..4, ROUGE-L, CIDEr-D (and METEOR with java) of the captions."""
from __future__ import annotations

import json
import logging
from pathlib import Path

from s2s_media.methods import DECODING_METHODS

log = logging.getLogger("s2s_media.evaluate")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        description="Audio manifest: decode every utterance and print WER and CER (jiwer, on normalised "
                    "text) for each decoding method. Per-utterance hypotheses go to OUT/<method>.jsonl and the "
                    "scores to OUT/scores.json. One encoder pass serves all methods.\n"
                    "Caption manifest (lines with id, image, captions, split): caption every image and print the "
                    "COCO metrics as JSON: BLEU-1..4, ROUGE-L, CIDEr-D, plus METEOR when java is installed "
                    "(coco-caption's definitions, captions PTB-tokenised; see s2s_media.caption_metrics). "
                    "Captions go to OUT/captions.jsonl and the scores to OUT/scores.json.")
    p.add_argument("--model", help="checkpoint (.pt) written by train, average or export (default: the bundled "
                                   "model of the manifest's task)")
    p.add_argument("--manifest", required=True, help="JSONL manifest: audio (id, audio, text, duration) or "
                   "captions (id, image, captions, split)")
    p.add_argument("--decoding", default="rescoring",
                   help=f"{', '.join(DECODING_METHODS)}, a comma list, or all (default rescoring)")
    p.add_argument("--beam", type=int, default=None, help="beam size (default: the model's decode.beam)")
    p.add_argument("--ctc-weight", type=float, default=None, help="CTC share of the rescoring score")
    p.add_argument("--ctc-search", choices=["python", "native"], default=None,
                   help="CTC prefix search implementation (default: the model's decode.ctc_search)")
    p.add_argument("--lm", metavar="LM.pt", help="fuse this language model (from s2s-media lm) into the CTC "
                   "searches, instead of the one stored in the checkpoint, if any")
    p.add_argument("--lm-weight", type=float, default=None,
                   help="language model weight (default: the model's decode.lm_weight; 0 turns the LM off)")
    p.add_argument("--lm-bonus", type=float, default=None,
                   help="reward per token with the language model on (default: the model's decode.lm_bonus)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="decode the encoder in chunks of this many frames (streaming); 0 = full context")
    p.add_argument("--batch-seconds", type=float, default=None, help="seconds of audio per batch")
    p.add_argument("--out", help="output folder (default: next to the checkpoint, decode_<manifest name>)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--workers", type=int, default=1, help="feature-extraction worker processes")
    p.add_argument("--limit", type=int, default=0, help="score only the first N utterances (0 = all)")
    from s2s_media.cli.transcribe import add_hotword_arguments
    add_hotword_arguments(p)
    p.add_argument("--show", type=int, default=0, metavar="N",
                   help="audio: print what was said beside what was heard for N utterances (first method)")
    cap = p.add_argument_group("caption manifests")
    cap.add_argument("--split", help="score only the entries of this split (e.g. test; default: all)")
    cap.add_argument("--batch-size", type=int, default=16, help="images per decoding batch (default 16)")
    cap.add_argument("--no-meteor", action="store_true", help="skip METEOR (it starts java, ~15 s)")
    p.set_defaults(run=run)


def run(args) -> int:
    """Dispatch on the manifest kind: caption manifests to :func:`run_captions`, audio to :func:`run_audio`."""
    from s2s_media.data.captions import is_caption_manifest
    from s2s_media.inference.checkpoint import bundled_model_path

    task = "caption" if is_caption_manifest(args.manifest) else "asr"
    if args.model is None:
        args.model = bundled_model_path(task)
        args.out = args.out or f"decode_{Path(args.manifest).stem}"     # not inside the installed package
    return run_captions(args) if task == "caption" else run_audio(args)


def run_captions(args) -> int:
    """Caption the manifest's images (the ``caption`` pipeline) and print the caption metrics as JSON."""
    from s2s_media import load_model
    from s2s_media.inference.captioner import CaptionOptions
    from s2s_media.inference.evaluate import evaluate_captions
    from s2s_media.data.captions import read_caption_manifest
    from s2s_media.errors import UserError

    records = read_caption_manifest(args.manifest)
    if args.split:
        splits = sorted({r.split for r in records})
        records = [r for r in records if r.split == args.split]
        if not records:
            raise UserError(f"--split {args.split}: no entries of {args.manifest} have it; its splits: "
                            f"{', '.join(splits)}")
    if args.limit:
        records = records[: args.limit]
    model = load_model(args.model, args.device, task="caption")
    options = CaptionOptions(beam=args.beam, batch_size=args.batch_size, workers=args.workers)
    out_dir = Path(args.out) if args.out else Path(args.model).parent / f"decode_{Path(args.manifest).stem}"
    captioner = model.captioner(options)
    result = evaluate_captions(captioner, records, out_dir / "captions.jsonl",
                               use_meteor=False if args.no_meteor else None)
    summary = {"model": str(args.model), "manifest": str(args.manifest), "split": args.split,
               "beam": captioner.beam, **result}
    (out_dir / "scores.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    for error in result["errors"][:5]:
        log.warning("skipped: %s", error)
    return 1 if result["skipped"] else 0


def show_pairs(hyp_file: Path, speakers: dict[str, str | None], n: int) -> None:
    """Print what was said beside what was heard for the first ``n`` utterances of ``hyp_file``."""
    with open(hyp_file, encoding="utf-8") as f:
        for line, _ in zip(f, range(n)):
            row = json.loads(line)
            print(f"{row['id']} ({speakers.get(row['id']) or 'speaker unknown'})\n  said:  {row['ref']}\n"
                  f"  heard: {row['hyp']}")


def score_line(method: str, w, c, headline: str) -> str:
    """One method's scores, the headline metric (``wer`` or ``cer``) first with its edit counts."""
    if headline == "cer":
        return f"{method:16s} CER {100 * c.rate:6.2f}%  WER {100 * w.rate:6.2f}%  ({c})"
    return f"{method:16s} WER {100 * w.rate:6.2f}%  CER {100 * c.rate:6.2f}%  ({w})"


def run_audio(args) -> int:
    """Decode the audio manifest with every asked method (one encoder pass) and print WER/CER."""
    from s2s_media.cli.transcribe import hotwords_from_args
    from s2s_media.data.manifest import read_manifest
    from s2s_media.decoding.context import compile_hotwords
    from s2s_media.decoding.search import parse_methods
    from s2s_media.device import pick_device
    from s2s_media.inference.checkpoint import load_model_file
    from s2s_media.inference.evaluate import evaluate_asr
    from s2s_media.inference.pipeline import Searcher
    from s2s_media.progress import duration_text

    methods = parse_methods(args.decoding)
    device = pick_device(args.device)
    loaded = load_model_file(args.model, quantize=device.type == "cpu", lm=args.lm)
    dcfg = loaded.config.decode.override(beam=args.beam, ctc_weight=args.ctc_weight, chunk_size=args.chunk_size,
                                         batch_seconds=args.batch_seconds, lm_weight=args.lm_weight,
                                         lm_bonus=args.lm_bonus, ctc_search=args.ctc_search)
    loaded.model.to(device)
    hotwords, compiled = hotwords_from_args(args), None
    if hotwords:
        compiled = compile_hotwords(loaded.tokenizer, hotwords, loaded.config.tokenizer.language,
                                    max_hotwords=args.max_hotwords)
        for warning in compiled.skipped:
            log.warning(warning)
    searcher = Searcher(loaded, dcfg, task="asr", methods=methods, context=compiled.context if compiled else None)
    records = read_manifest(args.manifest)
    if args.limit:
        records = records[: args.limit]
    out_dir = Path(args.out) if args.out else Path(args.model).parent / f"decode_{Path(args.manifest).stem}"
    result = evaluate_asr(loaded, searcher, records, out_dir, device, args.workers, where=args.manifest,
                          hotwords=compiled.phrases if compiled else ())
    rates = result.pop("rates")
    if not result["utterances"]:
        print(f"no utterance of {args.manifest} could be decoded ({result['skipped']} skipped)")
        return 1
    for m, (w, c) in rates.items():
        print(score_line(m, w, c, result["headline"]))
    if result["headline"] == "cer":
        print(f"language {result['language']} is written without spaces: CER is the headline figure "
              "(spaces ignored), WER is shown for reference")
    for m, r in result.get("hotwords", {}).items():
        print(f"{m:16s} hotword recall {100 * r['recall']:6.2f}% ({r['hits']}/{r['total']} in the references), "
              f"{r['false_alarms']} inserted where the reference has none")
    for m, table in result["by_group"].items():
        print(f"{m} by voice family:")
        for group, g in table.items():
            print(f"  {group:28s} WER {100 * g['wer']:6.2f}%  CER {100 * g['cer']:6.2f}%  "
                  f"({g['utterances']} utterances, {g['words']} words)")
    if args.show:
        show_pairs(out_dir / f"{methods[0]}.jsonl", {r.id: r.speaker for r in records}, args.show)
    summary = {"model": str(args.model), "manifest": str(args.manifest), **result}
    (out_dir / "scores.json").write_text(json.dumps(summary, indent=1))
    print(f"{result['utterances']} utterances, {duration_text(result['audio_seconds'])}, RTF {result['rtf']:.3f}; "
          f"{result['skipped']} skipped; hypotheses in {out_dir}")
    return 1 if result["skipped"] else 0
