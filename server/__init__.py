"""The streaming speech-to-text server: protocol v1, the Vosk protocol, and OpenAI's transcription
and realtime APIs, on one port.

``s2s-media serve`` is the command; :class:`App` is the server itself, usable from Python::

    from s2s_media.inference.streaming import StreamingRecognizer
    app = App(StreamingRecognizer(load_model_file(path)), ServerConfig(port=8765), Punctuator.load())
    asyncio.run(app.run(install_signals=True))

Decoding on N cores: ``App(recognizer, config, pool=WorkerPool(build, N))``, where ``build`` (a picklable
function) returns each worker's recognizer and punctuator (``s2s_media.cli.serve.build_decoder``).

Modules: ``protocol`` (wire formats), ``engine`` (batched decoding in a worker thread), ``workers``
(engines in worker processes),
``session`` (one websocket connection), ``realtime`` (OpenAI's realtime transcription sessions),
``openai_http`` (``POST /v1/audio/transcriptions``), ``transport`` (websockets and plain HTTP on one
port), ``metrics`` (Prometheus text), ``app`` (routes and life cycle). ``server/README.md``
specifies the protocols.
"""
from server.app import App
from server.config import ServerConfig
from server.engine import EngineConfig
from server.workers import WorkerPool

__all__ = ["App", "ServerConfig", "EngineConfig", "WorkerPool"]
