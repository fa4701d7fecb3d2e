"""``s2s-media``: entry point and subcommand table."""
from __future__ import annotations

import argparse
import logging
import sys

from s2s_media import __version__
from s2s_media.errors import UserError

SUBCOMMANDS = ["prepare", "shard", "features", "tokenizer", "train", "average", "lm", "punctuation", "evaluate",
               "transcribe", "align", "caption", "export", "serve", "stream", "mic"]


def build_parser() -> argparse.ArgumentParser:
    import importlib
    parser = argparse.ArgumentParser(
        prog="s2s-media",
        description="Streaming speech-to-text and image captioning: one shared attention decoder over "
                    "audio and image front-ends. Run 's2s-media COMMAND --help' for each command.")
    parser.add_argument("--version", action="version", version=f"s2s-media {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"s2s_media.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    try:
        code = args.run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except OSError as e:  # a path the user gave: exists, not writable, disk full, ...
        print(f"error: {e.filename or ''}: {e.strerror or e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
