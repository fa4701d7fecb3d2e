"""``s2s-media stream`` and ``s2s-media mic``: thin protocol-v1 clients that stream a file or the
default microphone to a server.

Partials are redrawn on one line (on a terminal; elsewhere only finals are printed unless
``--json``), finals get a line each. A file goes at real-time pace, or as fast as the server takes
it with ``--fast``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from s2s_media.errors import UserError

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
SAMPLE_RATE = 16000


def add_parser(sub) -> None:
    p = sub.add_parser(
        "stream",
        description="Stream an audio file to a streaming server (protocol v1) at real-time pace and print what "
                    "it recognises: partial text redrawn on one line, each final on its own line.")
    p.add_argument("file", type=Path, help="audio file (any format s2s-media transcribe reads)")
    p.add_argument("--fast", action="store_true", help="send as fast as the server takes it, not in real time")
    add_client_args(p)
    p.set_defaults(run=run)


def add_client_args(p: argparse.ArgumentParser) -> None:
    """The options ``stream`` and ``mic`` share."""
    p.add_argument("--url", default=DEFAULT_URL, help="server endpoint (default: %(default)s)")
    p.add_argument("--token", help="token for a server started with --token")
    p.add_argument("--chunk-ms", type=int, default=100, help="audio per message in ms (default: %(default)s)")
    p.add_argument("--no-partials", action="store_true", help="ask the server for finals only")
    p.add_argument("--json", action="store_true", help="print every server message as one JSON line")


def run(args: argparse.Namespace) -> int:
    from s2s_media.frontend.audio import load_audio
    check_chunk_ms(args.chunk_ms)
    return send(args, file_chunks(load_audio(args.file, sr=SAMPLE_RATE), args.chunk_ms, fast=args.fast))


def check_chunk_ms(chunk_ms: int) -> None:
    if not 10 <= chunk_ms <= 10000:
        raise UserError(f"--chunk-ms: {chunk_ms} is out of range; give 10..10000")


def send(args: argparse.Namespace, source) -> int:
    """Stream ``source`` (async PCM16 chunks) with the client options of ``args``; print the replies."""
    printer = Printer(sys.stdout, as_json=args.json)
    return asyncio.run(stream(args.url, source, printer, token=args.token, partials=not args.no_partials))


async def file_chunks(wav: np.ndarray, chunk_ms: int, fast: bool = False):
    """PCM16 chunks of ``wav`` (16 kHz), paced at real time unless ``fast``."""
    step = SAMPLE_RATE * chunk_ms // 1000
    t0 = time.monotonic()
    for i in range(0, len(wav), step):
        if not fast:
            await asyncio.sleep(max(0.0, t0 + i / SAMPLE_RATE - time.monotonic()))
        yield to_pcm16(wav[i:i + step])


def check_mic():
    """The ``sounddevice`` module, once it is known to have an input device; else a one-line UserError."""
    try:
        import sounddevice as sd
    except ImportError:
        raise UserError("mic needs the sounddevice package: pip install 's2s-media[mic]'") from None
    except OSError as e:   # sounddevice is installed but PortAudio is not
        raise UserError(f"mic: {e}; install PortAudio (Debian: apt-get install libportaudio2)") from None
    try:
        sd.query_devices(kind="input")
    except (sd.PortAudioError, ValueError) as e:
        raise UserError(f"mic: no input device ({e}); plug in a microphone or stream a file") from None
    return sd


async def mic_chunks(sd, chunk_ms: int):
    """PCM16 chunks from the default input device (``sd``: the sounddevice module) until cancelled."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def callback(indata, frames, when, status):
        loop.call_soon_threadsafe(queue.put_nowait, bytes(indata))

    with sd.RawInputStream(samplerate=SAMPLE_RATE, channels=1, dtype="int16",
                           blocksize=SAMPLE_RATE * chunk_ms // 1000, callback=callback):
        print("listening; Ctrl-C to stop", file=sys.stderr)
        while True:
            yield await queue.get()


def to_pcm16(wav: np.ndarray) -> bytes:
    from server.client import pcm16
    return pcm16(wav)


class Printer:
    """Partials on one redrawn line (terminals only), finals on lines of their own; or JSON lines."""

    def __init__(self, out, as_json: bool = False):
        self.out, self.as_json = out, as_json
        self.tty = out.isatty()
        self.width = 0

    def __call__(self, msg: dict) -> None:
        if self.as_json:
            print(json.dumps(msg, ensure_ascii=False), file=self.out, flush=True)
            return
        if msg["type"] == "partial" and self.tty:
            line = msg["text"]
            self.out.write("\r" + line + " " * max(0, self.width - len(line)))
            self.width = len(line)
            self.out.flush()
        elif msg["type"] == "final":
            clear = "\r" + " " * self.width + "\r" if self.tty and self.width else ""
            self.out.write(f"{clear}[{msg['start']:.2f}-{msg['end']:.2f}] {msg['text']}\n")
            self.width = 0
            self.out.flush()


async def stream(url: str, chunks, printer, token: str | None = None, partials: bool = True) -> int:
    """Send ``chunks`` (an async iterator of PCM16 bytes) to ``url``; print the replies. Returns 0."""
    from server.client import ClientError, connect, start_message, stream as run_session
    loop = asyncio.get_running_loop()

    def on_sending(sender: asyncio.Task) -> None:
        def interrupted():   # Ctrl-C: stop sending, still print the last final; a second Ctrl-C aborts
            loop.remove_signal_handler(signal.SIGINT)
            sender.cancel()
        loop.add_signal_handler(signal.SIGINT, interrupted)

    try:
        async with await connect(url, token) as ws:
            sender = await run_session(ws, chunks, printer, start_message(SAMPLE_RATE, partials=partials, words=True),
                                       on_sending)
    except ClientError as e:
        raise UserError(str(e)) from None
    finally:
        loop.remove_signal_handler(signal.SIGINT)
    if not sender.cancelled() and sender.exception() is not None:
        raise sender.exception()   # e.g. the microphone failed mid-stream
    return 0
