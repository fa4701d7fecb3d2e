"""The streaming speech-to-text server: protocol v1, the Vosk protocol, and OpenAI's transcription
and realtime APIs, on one port.

``s2s-media serve`` is the command; :class:`App` is the server itself, usable from Python::

    from s2s_media.inference.streaming import StreamingRecognizer
    app = App(StreamingRecognizer(load_model_file(path)), ServerConfig(port=8765), Punctuator.load())
    asyncio.run(app.run(install_signals=True))

Modules: ``protocol`` (wire formats), ``engine`` (batched decoding in a worker thread),
``session`` (one websocket connection), ``realtime`` (OpenAI's realtime transcription sessions),
``openai_http`` (``POST /v1/audio/transcriptions``), ``transport`` (websockets and plain HTTP on one
port), ``metrics`` (Prometheus text), ``app`` (routes and life cycle). ``server/README.md``
specifies the protocols.
"""
from server.app import App
from server.config import ServerConfig
from server.engine import EngineConfig

__all__ = ["App", "ServerConfig", "EngineConfig"]
