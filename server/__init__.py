"""The streaming speech-to-text server: protocol v1 and the Vosk protocol over websockets.

``s2s-media serve`` is the command; :class:`App` is the server itself, usable from Python::

    from s2s_media.inference.streaming import StreamingRecognizer
    app = App(StreamingRecognizer(load_model_file(path)), ServerConfig(port=8765))
    asyncio.run(app.run(install_signals=True))

Modules: ``protocol`` (wire formats), ``engine`` (batched decoding in a worker thread),
``session`` (one connection), ``metrics`` (Prometheus text), ``app`` (routes and life cycle).
``server/README.md`` specifies the protocol.
"""
from server.app import App
from server.config import ServerConfig
from server.engine import EngineConfig

__all__ = ["App", "ServerConfig", "EngineConfig"]
