"""``s2s-media export CKPT OUT``: a smaller checkpoint for inference (optionally dynamic int8), or with
``--format onnx`` an ONNX model directory that onnxruntime runs without torch."""
from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        description="Write an inference copy of a checkpoint. --format torch (default): weight matrices stored as "
                    "int8 with per-row scales (or float16), and a flag that makes load_model/transcribe run the "
                    "Linear layers with dynamic int8 quantisation on the CPU; still a plain dict, loaded like any "
                    "checkpoint. --format onnx: OUT is a directory with the chunked streaming encoder (caches as "
                    "explicit inputs and outputs), the CTC head and the rescoring decoder as ONNX graphs (weight-only "
                    "int8 by default), the language model and a manifest.json; transcribe and serve run it with "
                    "onnxruntime (--model OUT). Measure WER and speed before adopting either "
                    "(scripts/bench_transcribe.py --model OUT).")
    p.add_argument("checkpoint", help="checkpoint (.pt) from train or average")
    p.add_argument("out", help="the exported checkpoint to write (--format onnx: a new directory)")
    p.add_argument("--format", default="torch", choices=["torch", "onnx"], help="what to write (default: torch)")
    p.add_argument("--weights", default="int8", choices=["int8", "float16", "float32"],
                   help="storage of the weights: int8 (default) or float16 for torch, int8 or float32 for onnx")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset of --format onnx (default: 17)")
    p.add_argument("--no-quantize", action="store_true", help="run in float32 at load time (storage only; torch)")
    p.add_argument("--lm", metavar="LM.pt", help="store this language model (from s2s-media lm) with the model: "
                   "transcribe, evaluate and serve then fuse it into the CTC searches")
    p.add_argument("--punctuation-model", metavar="FILE", help="--format onnx: the punctuation model to ship "
                   "(default: the bundled one, for a model writing normalised English)")
    p.add_argument("--no-punctuation", dest="punctuation", action="store_false",
                   help="--format onnx: ship no punctuation model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="decode.KEY=VALUE",
                   help="change a decoding default stored with the model, e.g. --set decode.beam=4 (repeatable; torch)")
    p.set_defaults(run=run)


def run(args) -> int:
    if args.format == "onnx":
        from s2s_media.errors import UserError
        from s2s_media.inference.onnx_export import export_onnx_checkpoint
        if args.overrides or args.no_quantize:
            raise UserError("--set and --no-quantize apply to --format torch; export the ONNX directory from a "
                            "checkpoint that has the decoding defaults you want")
        s = export_onnx_checkpoint(args.checkpoint, args.out, args.weights, args.opset, lm=args.lm,
                                   punctuation=args.punctuation, punctuation_model=args.punctuation_model)
        print(f"{s['dst']}: {s['dst_bytes'] / 1e6:.1f} MB in all (from {s['src_bytes'] / 1e6:.1f} MB), weights "
              f"{s['weights']}{', with a language model' if s['lm'] else ''}"
              f"{', with a punctuation model' if s['punctuation'] else ''}; run it with "
              f"s2s-media transcribe --model {s['dst']}")
        return 0
    from s2s_media.inference.export import export_checkpoint
    s = export_checkpoint(args.checkpoint, args.out, args.weights, quantize=not args.no_quantize,
                          decode=args.overrides, lm=args.lm)
    print(f"{s['dst']}: {s['dst_bytes'] / 1e6:.1f} MB (from {s['src_bytes'] / 1e6:.1f} MB), weights {s['weights']}, "
          f"runtime {'dynamic int8 on CPU' if s['quantize'] else 'float32'}"
          f"{', with a language model' if s['lm'] else ''}")
    return 0
