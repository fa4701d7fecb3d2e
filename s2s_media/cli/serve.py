"""``s2s-media serve``: the streaming server (protocol v1, Vosk, OpenAI's transcription and realtime APIs, browser page)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from s2s_media.cli.runtime import add_runtime_arguments
from s2s_media.device import DEVICES
from s2s_media.errors import UserError
from server.config import ServerConfig
from server.engine import EngineConfig

_SERVER, _ENGINE = ServerConfig(), EngineConfig()   # the defaults the options show


def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve",
        description="Serve streaming recognition: protocol v1 at ws://HOST:PORT/v1/stream, the Vosk protocol at "
                    "/vosk, OpenAI's realtime transcription at /v1/realtime?intent=transcription and its "
                    "POST /v1/audio/transcriptions, a microphone page at /, /healthz and Prometheus /metrics (see "
                    "server/README.md). Finals are written with capitals and . , ? ! (--no-punctuation: raw). "
                    "SIGTERM/SIGINT stop it cleanly: open sessions get their last final.")
    p.add_argument("--model", type=Path, help="checkpoint, or an ONNX model directory (export --format onnx) "
                   "(default: the bundled s2s_media/assets/asr_default.pt)")
    p.add_argument("--host", default=_SERVER.host, help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=int, default=_SERVER.port, help="port; 0 picks a free one (default: %(default)s)")
    p.add_argument("--max-sessions", type=int, default=_SERVER.max_sessions,
                   help="concurrent sessions; more are refused with 'overloaded' (default: %(default)s)")
    p.add_argument("--token", default=os.environ.get("S2S_MEDIA_TOKEN"),
                   help="require this token from websocket and transcription clients (Authorization: Bearer T or "
                        "?token=T); "
                        "default: $S2S_MEDIA_TOKEN, else none")
    p.add_argument("--certfile", type=Path, help="TLS certificate (PEM) for wss:// and https://; needs --keyfile")
    p.add_argument("--keyfile", type=Path, help="TLS private key (PEM)")
    p.add_argument("--chunk-size", type=int, default=None,
                   help="encoder frames per decoding chunk (40 ms each); default: the streaming library's")
    p.add_argument("--beam", type=int, default=None, help="CTC prefix beam (default: the model's decode.beam)")
    p.add_argument("--lm-weight", type=float, default=None,
                   help="weight of the model's language model, if it has one; 0 turns it off (default: the model's)")
    p.add_argument("--vad", default="auto", metavar="{auto,silero,energy,ctc}",
                   help="what judges the silence that ends a segment: silero (the silero-vad package) or energy "
                        "run over the audio, ctc the model's blank posterior; auto: silero when installed, else "
                        "energy (default: %(default)s; a v1 session may choose its own)")
    p.add_argument("--trailing-silence", type=float, default=None, metavar="S",
                   help="seconds of silence after speech that end a segment (default: the streaming library's "
                        "1.2; a v1 session may choose its own)")
    p.add_argument("--max-segment", type=float, default=None, metavar="S",
                   help="longest segment in seconds: a final is forced at this length (default: the streaming "
                        "library's 20; a v1 session may choose a shorter one)")
    p.add_argument("--idle-timeout", type=float, default=_SERVER.idle_timeout_s,
                   help="end a session that sends nothing for this many seconds (default: %(default)s)")
    p.add_argument("--max-session", type=float, default=_SERVER.max_session_s,
                   help="maximum length of a session in seconds (default: %(default)s)")
    p.add_argument("--start-timeout", type=float, default=_SERVER.start_timeout_s,
                   help="end a connection that has not started its session within this many seconds "
                        "(default: %(default)s)")
    p.add_argument("--min-audio-rate", type=float, default=_SERVER.min_audio_rate,
                   help="end a started session that sends less audio than this fraction of real time over a "
                        "--rate-window; 0 turns the check off (default: %(default)s)")
    p.add_argument("--rate-window", type=float, default=_SERVER.rate_window_s,
                   help="seconds of waiting over which --min-audio-rate is judged (default: %(default)s)")
    p.add_argument("--max-per-client", type=int, default=_SERVER.max_per_client,
                   help="concurrent sessions from one client address; 0: no cap, e.g. behind a reverse proxy "
                        "(default: %(default)s)")
    p.add_argument("--max-buffered", type=float, default=_ENGINE.max_buffered_s,
                   help="seconds of audio a session may queue ahead of the decoder before the server stops reading "
                        "it (default: %(default)s)")
    p.add_argument("--max-batch", type=int, default=_ENGINE.max_batch, help="streams decoded per encoder call (default: %(default)s)")
    p.add_argument("--max-wait-ms", type=float, default=_ENGINE.max_wait_ms,
                   help="how long a ready chunk waits for others to join its batch (default: %(default)s)")
    p.add_argument("--workers", default="auto", metavar="N",
                   help="decoding processes, each with its own model and dynamic batching; auto: one per core "
                        "(one on a GPU); 1: decode in the server process (default: %(default)s)")
    p.add_argument("--no-punctuation", dest="punctuation", action="store_false",
                   help="send finals raw; by default the bundled punctuation model restores capitals and . , ? ! "
                        "(models writing normalised English; a v1 session can turn it off with punctuation: false)")
    p.add_argument("--punctuation-model", metavar="FILE",
                   help="punctuation model file (s2s-media punctuation train) instead of the bundled one")
    p.add_argument("--max-hotwords", type=int, default=_SERVER.max_hotwords, metavar="N",
                   help="hotwords or Vosk phrase_list entries one session may give; more are refused with "
                        "bad_request (default: %(default)s)")
    p.add_argument("--max-upload", type=float, default=_SERVER.max_upload_mb, metavar="MB",
                   help="POST /v1/audio/transcriptions: largest request body in MB (default: %(default)s)")
    p.add_argument("--max-audio", type=float, default=_SERVER.max_audio_s, metavar="S",
                   help="POST /v1/audio/transcriptions: longest audio in seconds (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=DEVICES,
                   help="auto (CUDA when present), cpu or cuda (default: %(default)s)")
    add_runtime_arguments(p)
    p.set_defaults(run=run)


def server_config(args: argparse.Namespace):
    """The :class:`server.ServerConfig` for the parsed arguments (checked, with one-line errors)."""
    if (args.certfile is None) != (args.keyfile is None):
        raise UserError("--certfile and --keyfile go together: give both for TLS, or neither")
    for path in (args.certfile, args.keyfile):
        if path is not None and not path.is_file():
            raise UserError(f"{path}: TLS file not found")
    checks = [("--port", args.port, 0 <= args.port <= 65535),
              ("--max-sessions", args.max_sessions, args.max_sessions >= 1),
              ("--idle-timeout", args.idle_timeout, args.idle_timeout > 0),
              ("--max-session", args.max_session, args.max_session > 0),
              ("--start-timeout", args.start_timeout, args.start_timeout > 0),
              ("--min-audio-rate", args.min_audio_rate, 0 <= args.min_audio_rate <= 1),
              ("--rate-window", args.rate_window, args.rate_window > 0),
              ("--max-per-client", args.max_per_client, args.max_per_client >= 0),
              ("--max-buffered", args.max_buffered, args.max_buffered > 0),
              ("--max-batch", args.max_batch, args.max_batch >= 1),
              ("--max-wait-ms", args.max_wait_ms, args.max_wait_ms >= 0),
              ("--max-upload", args.max_upload, args.max_upload > 0),
              ("--max-audio", args.max_audio, args.max_audio > 0),
              ("--max-hotwords", args.max_hotwords, args.max_hotwords >= 1)]
    for name, value, ok in checks:
        if not ok:
            raise UserError(f"{name}: {value} is out of range")
    if args.token is not None and not args.token.strip():
        raise UserError("--token is empty; give a token or leave it out")
    return ServerConfig(host=args.host, port=args.port, max_sessions=args.max_sessions, token=args.token or None,
                        certfile=str(args.certfile) if args.certfile else None,
                        keyfile=str(args.keyfile) if args.keyfile else None,
                        idle_timeout_s=args.idle_timeout, max_session_s=args.max_session,
                        start_timeout_s=args.start_timeout, min_audio_rate=args.min_audio_rate,
                        rate_window_s=args.rate_window, max_per_client=args.max_per_client,
                        max_upload_mb=args.max_upload, max_audio_s=args.max_audio, max_hotwords=args.max_hotwords,
                        engine=EngineConfig(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                                            max_buffered_s=args.max_buffered))


def endpoint_rules(args: argparse.Namespace) -> dict:
    """The endpoint rules the flags set, as fields of
    :class:`~s2s_media.inference.streaming.config.EndpointConfig` (only those given)."""
    rules = {"vad": args.vad, "rule1_min_trailing_silence": args.trailing_silence,
             "rule3_max_utterance": args.max_segment}
    return {k: v for k, v in rules.items() if v is not None}


def load_recognizer(model: Path | None, chunk_size: int | None, device: str = "auto", beam: int | None = None,
                    lm_weight: float | None = None, runtime: str = "auto", threads: int = 0,
                    endpoint: dict | None = None):
    """One :class:`~s2s_media.inference.streaming.StreamingRecognizer` for the checkpoint (default: the bundled
    model); ``endpoint``: fields of its :class:`~s2s_media.inference.streaming.config.EndpointConfig`."""
    import dataclasses

    from s2s_media.errors import ConfigError
    from s2s_media.inference.loaded import bundled_model_path
    from s2s_media.inference.loader import load_on_device
    from s2s_media.inference.streaming import StreamingConfig, StreamingRecognizer
    config = StreamingConfig()
    if chunk_size is not None:
        if chunk_size < 1:
            raise UserError(f"--chunk-size: {chunk_size} is out of range; give encoder frames >= 1")
        config = StreamingConfig(chunk_size=chunk_size)
    config = dataclasses.replace(config, beam=beam, lm_weight=lm_weight,
                                 endpoint=dataclasses.replace(config.endpoint, **(endpoint or {})))
    try:
        config.validate("serve")
    except ConfigError as e:
        flags = {"endpoint.rule1_min_trailing_silence": "trailing_silence", "endpoint.rule3_max_utterance": "max_segment",
                 "endpoint.vad": "vad"}
        message = str(e)
        for field, flag in flags.items():
            message = message.replace(field, flag)
        raise UserError(message.replace("serve.", "--").replace("_", "-")) from None
    path = model if model is not None else bundled_model_path("asr", runtime)
    loaded, dev = load_on_device(path, device, runtime, threads)
    return StreamingRecognizer(loaded, config, device=dev)


def load_punctuator(recognizer, enabled: bool = True, path: str | None = None):
    """The :class:`~s2s_media.inference.punctuation.Punctuator` the server writes finals with, chosen as
    ``transcribe`` chooses it (the bundled one for models writing normalised English); None when off."""
    from s2s_media.inference.transcriber import TranscribeOptions, punctuator_for
    return punctuator_for(TranscribeOptions(punctuation=enabled, punctuation_model=path), recognizer.loaded)


def worker_count(value: str, device: str) -> int:
    """``--workers``: a number >= 1, or ``auto``: the cores this process may use (1 on a GPU, ``device``)."""
    if value == "auto":
        return 1 if device == "cuda" else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
            else os.cpu_count() or 1
    if not value.isdigit() or int(value) < 1:
        raise UserError(f"--workers: {value!r} is out of range; give a number of processes >= 1, or auto")
    return int(value)


def build_decoder(model: Path | None, chunk_size: int | None, device: str, beam: int | None, lm_weight: float | None,
                  runtime: str, threads: int, endpoint: dict, punctuation: bool, punctuation_model: str | None):
    """What each decoding worker (``--workers N``) loads: the recognizer on ``threads`` threads (with the
    endpoint rules of :func:`endpoint_rules`), and its punctuator."""
    recognizer = load_recognizer(model, chunk_size, device, beam, lm_weight, runtime, threads, endpoint)
    torch = sys.modules.get("torch")
    if torch is not None:            # a checkpoint's model (an ONNX one took ``threads`` when it loaded)
        torch.set_num_threads(threads)
    return recognizer, load_punctuator(recognizer, punctuation, punctuation_model)


def run(args: argparse.Namespace) -> int:
    """Serve until SIGTERM/SIGINT; after a clean shutdown the process exits at once (:func:`exit_now`)."""
    import functools

    from server import App
    from server.workers import WorkerPool
    config = server_config(args)
    workers = worker_count(args.workers, "cpu") if args.workers != "auto" else None   # checked before loading
    recognizer = load_recognizer(args.model, args.chunk_size, args.device, args.beam, args.lm_weight, args.runtime,
                                 args.threads, endpoint_rules(args))
    device = "cuda" if str(recognizer.device).startswith("cuda") else "cpu"
    workers = workers or worker_count("auto", device)
    if workers == 1:
        app = App(recognizer, config, load_punctuator(recognizer, args.punctuation, args.punctuation_model))
    else:   # the model loaded here checks the options and compiles each session's hotwords; the workers decode
        threads = args.threads or max(1, worker_count("auto", "cpu") // workers)
        build = functools.partial(build_decoder, args.model, args.chunk_size, device, args.beam, args.lm_weight,
                                  args.runtime, threads, endpoint_rules(args), args.punctuation,
                                  args.punctuation_model)
        app = App(recognizer, config, pool=WorkerPool(build, workers))
    try:
        asyncio.run(app.run(install_signals=True))
    except OSError as e:  # the port is taken, the address is not ours, a TLS file is unreadable
        raise UserError(f"cannot serve on {args.host}:{args.port}: {e.strerror or e}") from None
    exit_now(0)


def exit_now(code: int) -> None:
    """Flush the logs and output, then end the process without the interpreter's teardown.

    Tearing down a served model's objects took 3 s on a quiet host and 23-60 s under load
    (issue #17), long enough for a container's stop grace period to SIGKILL the server and lose
    its exit code. Measured on 2 loaded cores, from the last session's close to the exit:
    a plain exit 31 s, ``gc.freeze()`` first 9 s, ``os._exit`` 1.6 s (``tests/server/test_serve_cli.py``
    checks < 2 s). Every session has its final and every connection is closed by now, and nothing
    else is kept in memory, so nothing is lost.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):   # closed or gone: there is nothing left to save
            pass
    os._exit(code)
