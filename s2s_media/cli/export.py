"""``s2s-media export CKPT OUT``: a smaller checkpoint for inference, optionally dynamic int8."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export", help="shrink a checkpoint for inference (int8/fp16 storage, dynamic int8)",
        description="Write an inference copy of a checkpoint: weight matrices stored as int8 with per-row "
                    "scales (or float16), and a flag that makes load_model/transcribe run the Linear layers "
                    "with dynamic int8 quantisation on the CPU. Still a plain dict, loaded like any checkpoint: "
                    "s2s-media transcribe --model OUT. Measure WER and speed before adopting it "
                    "(scripts/bench_transcribe.py --model OUT).")
    p.add_argument("checkpoint", help="checkpoint (.pt) from train or average")
    p.add_argument("out", help="the exported checkpoint to write")
    p.add_argument("--weights", default="int8", choices=["int8", "float16"],
                   help="storage of the weights (default int8)")
    p.add_argument("--no-quantize", action="store_true", help="run in float32 at load time (storage only)")
    p.add_argument("--lm", metavar="LM.pt", help="store this language model (from s2s-media lm) with the model: "
                   "transcribe, evaluate and serve then fuse it into the CTC searches")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="decode.KEY=VALUE",
                   help="change a decoding default stored with the model, e.g. --set decode.beam=4 (repeatable)")
    p.set_defaults(run=run)


def run(args) -> int:
    from s2s_media.inference.export import export_checkpoint
    s = export_checkpoint(args.checkpoint, args.out, args.weights, quantize=not args.no_quantize,
                          decode=args.overrides, lm=args.lm)
    print(f"{s['dst']}: {s['dst_bytes'] / 1e6:.1f} MB (from {s['src_bytes'] / 1e6:.1f} MB), weights {s['weights']}, "
          f"runtime {'dynamic int8 on CPU' if s['quantize'] else 'float32'}"
          f"{', with a language model' if s['lm'] else ''}")
    return 0
