"""The server's settings: what ``s2s-media serve`` takes its defaults from."""
from __future__ import annotations

from dataclasses import dataclass, field

from server.engine import EngineConfig
from server.protocol import MAX_HOTWORDS


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8765                   # 0 picks a free port (see App.port)
    max_sessions: int = 64             # concurrent sessions; more are refused with ``overloaded``
    token: str | None = None           # required from websocket and transcription clients when set
    certfile: str | None = None        # TLS (wss://, https://) when both are set
    keyfile: str | None = None
    idle_timeout_s: float = 30.0       # a session that sends nothing for this long ends with ``timeout``
    start_timeout_s: float = 5.0       # a connection must start its session (v1 ``start``, any Vosk message) this soon
    min_audio_rate: float = 0.2        # a started session must send at least this many seconds of audio per second...
    rate_window_s: float = 30.0        # ...over each window of this many seconds the server waits for it; 0 rate: off
    max_per_client: int = 16           # concurrent sessions from one client address; 0: no cap (behind a proxy)
    max_session_s: float = 3600.0      # a session's maximum length (wall clock from connecting)
    shutdown_grace_s: float = 30.0     # on SIGTERM/SIGINT, how long sessions get to send their finals
    max_upload_mb: float = 25.0        # POST /v1/audio/transcriptions: largest request body (OpenAI's limit)...
    max_audio_s: float = 600.0         # ...and longest audio it may hold
    max_hotwords: int = MAX_HOTWORDS   # hotwords (v1, Vosk, an OpenAI prompt) or phrase_list entries per session
    engine: EngineConfig = field(default_factory=EngineConfig)   # batching and back-pressure
