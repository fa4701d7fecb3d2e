"""``s2s-media caption DIR|FILES...``: images -> one caption per image, optional attention maps and gallery."""
from __future__ import annotations

import sys
import time

from s2s_media.cli.transcribe import add_ray_arguments, ray_setup

FORMATS = ("jsonl", "csv")
CSV_COLUMNS = ("path", "caption", "score", "error")

EPILOG = """\
output:
  One record per image: {"path","caption","score"} or {"path","error"}, written as each batch
  finishes, in sorted path order. score is the caption's length-normalised log-probability (closer
  to 0 = surer). The format comes from --format, else --out's extension (.jsonl or .csv), else
  jsonl on stdout. csv has the columns path,caption,score,error (failed images are rows with an
  error) and keeps the list of finished images in OUT.done.jsonl. --resume skips every image
  already in the output, failed ones included.

inputs:
  Files are read whatever their extension; folders contribute their .jpg .jpeg .png .gif .bmp
  .webp .tif .tiff .ppm .pgm files (--recursive: their subfolders' too). Grayscale, CMYK, palette,
  alpha (composited on white), 16-bit and animated images (first frame) are converted to RGB; very
  large images are decoded downscaled (JPEG) or refused; corrupt, truncated and non-image files
  get an error record and the run goes on.

attention maps and gallery:
  --attention-maps OUTDIR writes OUTDIR/<name>/<k>_<word>.png for every word of each caption: the
  image as the model saw it (centre crop) with the decoder's attention for that word as a heat map
  (red = most). <name> is the image's path relative to its folder, without extension.
  --html report.html writes a self-contained gallery of thumbnails and captions, with each image's
  overlays when --attention-maps is given; with --resume it covers the earlier images too.

exit status: 0 all images captioned, 1 some failed, 2 bad usage, 130 interrupted (everything
finished so far is kept; run again with --resume).
"""


def add_parser(sub) -> None:
    import argparse
    p = sub.add_parser(
        "caption",
        description="Caption images with a captioning checkpoint (beam search over the image encoder's grid).\n"
                    "Without --model the bundled default caption model is used.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--model", help="captioning checkpoint (.pt) from train, average or export "
                   "(default: the bundled caption model)")
    p.add_argument("--out", help="output file, .jsonl or .csv (default: jsonl on stdout)")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from --out's extension, else jsonl)")
    p.add_argument("--beam", type=int, help="beam size (default: the model's decode.beam; 1 = greedy)")
    p.add_argument("--max-len", type=int, help="most tokens per caption (default: the model's decode.caption_max_len)")
    p.add_argument("--batch-size", type=int, default=16, help="images per decoding batch (default 16)")
    p.add_argument("--workers", type=int, default=1, help="threads reading images (0 = main thread)")
    p.add_argument("--recursive", action="store_true", help="descend into subfolders of folder inputs")
    p.add_argument("--attention-maps", metavar="OUTDIR", help="write per-word attention overlays (PNG) here")
    p.add_argument("--html", metavar="REPORT", help="write an HTML gallery of the results here")
    p.add_argument("--resume", action="store_true", help="skip images already in --out and append the rest")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_ray_arguments(p, "images")
    p.set_defaults(run=run)


def load_captioner(model: str | None, device: str, options):
    """What each Ray actor runs once: the model and its captioner."""
    from s2s_media import load_model
    return load_model(model, device, task="caption").captioner(options)


def run(args) -> int:
    from s2s_media import load_model
    from s2s_media.inference.captioner import CaptionOptions
    from s2s_media.inference.inputs import discover_images
    from s2s_media.progress import progress_bar
    from s2s_media.inference.writers import infer_format, open_writer, read_records
    from s2s_media.inference.report import Entry, map_files, save_attention_maps, write_html

    fmt = infer_format(args.out, args.format, FORMATS)
    if args.ray and args.attention_maps:
        from s2s_media.errors import UserError
        raise UserError("--attention-maps does not run with --ray (the maps stay on the actors); leave one out")
    options = CaptionOptions(beam=args.beam, max_len=args.max_len, batch_size=args.batch_size,
                             workers=args.workers, attention=bool(args.attention_maps))
    items = discover_images(args.paths, args.recursive)
    writer = open_writer(args.out, fmt, len(items), args.resume, columns=CSV_COLUMNS)
    done = writer.done()
    todo = [it for it in items if it.key not in done]
    info = sys.stderr if args.out is None else sys.stdout
    try:
        captioner = load_model(args.model, "cpu" if args.ray else args.device, task="caption").captioner(options)
        if args.ray:   # the model loaded here checks the model and options; each actor loads its own
            import functools

            from s2s_media.inference import on_ray
            actors = ray_setup(args)
            load = functools.partial(load_captioner, args.model, args.device, options)
            from s2s_media.inference.captioner import Captioned
            results = (Captioned(item, rec) for item, rec in
                       on_ray.caption(todo, load, captioner.image_cfg.max_pixels, actors, args.ray_batch))
        else:
            results = captioner.run(todo)
    except BaseException:
        writer.close()
        raise
    names = {it.key: it.name for it in items}
    entries: dict[str, Entry] = {}
    if args.html and done:  # the gallery covers what earlier runs wrote too
        for rec in read_records(args.out, fmt):
            key = rec.get("path", "")
            if key in done and key in names:
                entries[key] = Entry(rec, map_files(args.attention_maps, names[key]) if args.attention_maps else [])
    start, failed, interrupted, n = time.time(), 0, False, 0
    bar = progress_bar(total=len(todo), unit="img", desc="captioning", records_on_stdout=args.out is None)
    try:
        for result in results:
            rec = result.record
            writer.write(rec, result.item.name)
            maps = []
            if "error" in rec:
                failed += 1
                bar.write(f"error: {rec['error']}", file=sys.stderr)
            elif result.maps is not None:
                maps = save_attention_maps(result.maps, args.attention_maps, result.item.name)
            entries[result.item.key] = Entry(rec, maps)
            bar.set_postfix(failed=failed, refresh=False)
            bar.update(1)
            n += 1
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        writer.close()
    if args.html:
        order = {it.key: i for i, it in enumerate(items)}
        write_html(args.html, sorted(entries.values(), key=lambda e: order.get(e.record.get("path"), len(order))))
    if len(todo) < len(items):
        print(f"resumed: {len(items) - len(todo)} images already in {args.out} were skipped", file=info)
    print(f"{'interrupted after ' if interrupted else ''}{n} images, {time.time() - start:.1f} s, {failed} failed"
          + (f"; gallery in {args.html}" if args.html else ""), file=info)
    if interrupted:
        print(f"interrupted: everything finished so far is in {args.out or 'stdout'}"
              + ("; run again with --resume to continue" if args.out else ""), file=sys.stderr)
        return 130
    return 1 if failed else 0

