"""``s2s-media mic``: stream the default microphone to an ``s2s-media serve`` server until Ctrl-C.

The client of :mod:`s2s_media.cli.stream` with the microphone as its source (sounddevice, an
optional extra: ``pip install 's2s-media[mic]'``).
"""
from __future__ import annotations

import argparse

from s2s_media.cli.stream import add_client_args, check_chunk_ms, check_mic, mic_chunks, send


def add_parser(sub) -> None:
    p = sub.add_parser(
        "mic",
        description="Stream the default microphone to a streaming server (protocol v1) until Ctrl-C and print "
                    "what it recognises: partial text redrawn on one line, each final on its own line. Needs "
                    "the sounddevice package and PortAudio.")
    add_client_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    check_chunk_ms(args.chunk_ms)
    return send(args, mic_chunks(check_mic(), args.chunk_ms))
