"""``s2s-media``: entry point and subcommand table.

The table holds each command's one-line summary, so ``s2s-media --help`` imports no command module (nor torch);
a command's module (``s2s_media.cli.NAME``, with its ``add_parser(sub)`` and ``run(args)``) is imported only
when that command runs or shows its own help.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from s2s_media import __version__
from s2s_media.errors import UserError
from s2s_media.extras import is_train_module, needs_train

# name -> the summary that `s2s-media --help` lists; the module s2s_media.cli.NAME builds the rest
COMMANDS = {
    "prepare": "write train/dev/test manifests for a corpus",
    "shard": "write a manifest's audio as WebDataset tar shards (FLAC + JSON) to train from",
    "features": "compute log-mel features once into a cache folder (data.feature_cache)",
    "tokenizer": "train and save the tokenizer of a config",
    "train": "train a model from a YAML config",
    "average": "average the last or best N checkpoints of an experiment",
    "lm": "train a token n-gram language model on text (shallow fusion into the CTC search)",
    "punctuation": "train, score or apply the punctuation and casing model",
    "evaluate": "decode a manifest and score WER/CER, or caption one and score BLEU/ROUGE-L/CIDEr-D",
    "transcribe": "transcribe audio files, folders or a manifest",
    "align": "align a known transcript to its audio (word and token timings)",
    "caption": "caption image files or folders",
    "export": "shrink a checkpoint for inference (int8/fp16 storage, dynamic int8) or export it to ONNX",
    "serve": "streaming speech-to-text server over websockets",
    "stream": "stream an audio file to an 's2s-media serve' server",
    "mic": "stream the microphone to an 's2s-media serve' server",
}
SUBCOMMANDS = list(COMMANDS)


class _Commands:
    """The subparsers action, giving each command the summary of :data:`COMMANDS`."""

    def __init__(self, action):
        self.action = action

    def add_parser(self, name: str, **kwargs) -> argparse.ArgumentParser:
        return self.action.add_parser(name, help=COMMANDS[name], **kwargs)


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with the full options of ``commands`` (default: all, importing every command module);
    the other commands are listed with their summary only."""
    parser = argparse.ArgumentParser(
        prog="s2s-media",
        description="Streaming speech-to-text and image captioning: one shared attention decoder over "
                    "audio and image front-ends. Run 's2s-media COMMAND --help' for each command.")
    parser.add_argument("--version", action="version", version=f"s2s-media {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = _Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    for name in SUBCOMMANDS:
        if commands is None or name in commands:
            importlib.import_module(f"s2s_media.cli.{name}").add_parser(sub)
        else:
            sub.add_parser(name, add_help=False)
    return parser


def _command(argv: list[str]) -> str | None:
    """The command named in ``argv`` (the first argument that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = _command(argv)
    try:
        parser = build_parser([command] if command in COMMANDS else [])
    except ModuleNotFoundError as e:      # the command's module needs torch (train, export, caption, ...)
        if not is_train_module(e):
            raise
        print(f"error: {needs_train(f's2s-media {command}')}", file=sys.stderr)
        return 2
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
    except ModuleNotFoundError as e:
        if not is_train_module(e):
            raise
        print(f"error: {needs_train(f's2s-media {args.command}')}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        code = 130
    return code


if __name__ == "__main__":
    sys.exit(main())
