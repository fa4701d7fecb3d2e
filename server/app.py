"""The server: websocket routes, HTTP routes on the same port, admission, and clean shutdown.

``/v1/stream`` and ``/vosk`` are websocket endpoints (one :class:`~server.session.Session` per
connection); ``GET /``, ``/static/*``, ``/healthz`` (liveness), ``/readyz`` (readiness) and
``/metrics`` are answered during the handshake by ``process_request``, so one port serves both;
they answer GET and HEAD only. With ``token`` set, the websocket
endpoints need ``Authorization: Bearer TOKEN`` or ``?token=TOKEN`` (else HTTP 401); the page,
health and metrics stay open.
"""
from __future__ import annotations

import asyncio
import hmac
import http
import logging
import mimetypes
import signal
import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from s2s_media.inference.events import Recognizer
from server.config import ServerConfig
from server.engine import Engine
from server.metrics import CONTENT_TYPE as METRICS_TYPE, Metrics
from server.protocol import MAX_MESSAGE_BYTES
from server.session import Session, V1Session, VoskSession

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
ROUTES = {"/v1/stream": V1Session, "/vosk": VoskSession}
HTTP_METHODS = ("GET", "HEAD")    # what the HTTP routes answer; anything else is 405
# Frames websockets buffers per connection before it stops reading the socket (its default is 16). With
# messages of at most 1 MiB, a session holds at most this many MiB of unread messages (see README's budget).
RECV_QUEUE_FRAMES = 4


class App:
    """One model, one engine, many sessions. ``await App(...).run()`` serves until stopped."""

    def __init__(self, recognizer: Recognizer, config: ServerConfig | None = None):
        self.config = config or ServerConfig()
        self.metrics = Metrics()
        self.engine = Engine(recognizer, self.config.engine, self.metrics)
        self.sessions: set[Session] = set()
        self.per_client: dict[str, int] = {}   # client address -> sessions open
        self.port: int | None = None
        self.ready = asyncio.Event()   # set once listening (``port`` is known)
        self.draining = False          # set when a clean shutdown begins
        self._stop: asyncio.Event | None = None

    # ---------------------------------------------------------------- sessions
    def admit(self, session: Session, client: str) -> str | None:
        """Admit a session from address ``client``, or return the limit that refuses it."""
        cfg = self.config
        if cfg.max_per_client and self.per_client.get(client, 0) >= cfg.max_per_client:
            return "max_per_client"
        if len(self.sessions) >= cfg.max_sessions:
            return "max_sessions"
        self.sessions.add(session)
        self.per_client[client] = self.per_client.get(client, 0) + 1
        self.metrics.session_opened()
        return None

    def release(self, session: Session, client: str) -> None:
        if session in self.sessions:
            self.sessions.discard(session)
            self.per_client[client] -= 1
            if not self.per_client[client]:
                del self.per_client[client]
            self.metrics.session_closed()

    async def handle(self, ws: ServerConnection) -> None:
        """One connection: admitted as a session of its route (or refused with ``overloaded``), served, released."""
        session = ROUTES[urlsplit(ws.request.path).path](self, ws)
        client = ws.remote_address[0] if ws.remote_address else ""
        refused = self.admit(session, client)
        if refused:
            await session.refuse(refused)
            return
        try:
            await session.run()
        finally:
            self.release(session, client)

    # ---------------------------------------------------------------- HTTP
    def process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path in ROUTES:
            if self.config.token and not self._authorized(request, url.query):
                self.metrics.error("unauthorized")
                self.metrics.refused("unauthorized")
                return _response(http.HTTPStatus.UNAUTHORIZED, "unauthorized: give Authorization: Bearer TOKEN "
                                 "or ?token=TOKEN\n", extra=[("WWW-Authenticate", "Bearer")])
            return None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return _response(http.HTTPStatus.NOT_FOUND, f"no websocket endpoint at {url.path}; "
                                                        f"use {' or '.join(ROUTES)}\n")
        if request.method not in HTTP_METHODS:
            return _response(http.HTTPStatus.METHOD_NOT_ALLOWED, f"{request.method} is not allowed; use GET or "
                             "HEAD\n", extra=[("Allow", ", ".join(HTTP_METHODS))])
        return _head(self._get(url.path)) if request.method == "HEAD" else self._get(url.path)

    def _get(self, path: str) -> Response:
        if path == "/healthz":
            return _response(http.HTTPStatus.OK, "ok\n")
        if path == "/readyz":
            return self._readiness()
        if path == "/metrics":
            return _response(http.HTTPStatus.OK, self.metrics.render(), METRICS_TYPE)
        if path == "/":
            return _static("index.html")
        if path.startswith("/static/"):
            return _static(path[len("/static/"):])
        return _response(http.HTTPStatus.NOT_FOUND, f"not found: {path}\n")

    def _readiness(self) -> Response:
        """200 while a new session would be admitted; 503 when draining or when every slot is taken."""
        if self.draining:
            return _response(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining: the server is shutting down\n")
        if len(self.sessions) >= self.config.max_sessions:
            return _response(http.HTTPStatus.SERVICE_UNAVAILABLE, f"full: {len(self.sessions)} of "
                             f"{self.config.max_sessions} sessions\n")
        return _response(http.HTTPStatus.OK, "ready\n")

    def _authorized(self, request: Request, query: str) -> bool:
        token = self.config.token.encode()
        given = [v.encode() for v in parse_qs(query).get("token", [])]
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            given.append(auth[len("Bearer "):].strip().encode())
        return any(hmac.compare_digest(g, token) for g in given)

    # ---------------------------------------------------------------- life cycle
    def stop(self) -> None:
        """Begin a clean shutdown (what SIGTERM/SIGINT do)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, install_signals: bool = False) -> None:
        """Serve until :meth:`stop` (or SIGTERM/SIGINT when ``install_signals``), then shut down cleanly."""
        cfg = self.config
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if install_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        self.engine.start()
        try:
            # Bounded memory per connection: websockets refuses a message over the protocol's 1 MiB at
            # its frame header (close 1009) without reading it, buffers at most RECV_QUEUE_FRAMES frames,
            # and compression is off (a 1 MiB deflated frame costs its sender ~1 KB).
            async with serve(self.handle, cfg.host, cfg.port, process_request=self.process_request,
                             max_size=MAX_MESSAGE_BYTES, max_queue=RECV_QUEUE_FRAMES, compression=None,
                             ssl=_ssl_context(cfg), server_header=None) as server:
                self.port = server.sockets[0].getsockname()[1]
                scheme = "wss" if cfg.certfile else "ws"
                log.info("listening on %s://%s:%d (/v1/stream, /vosk; page at /)", scheme, cfg.host, self.port)
                self.ready.set()
                await self._stop.wait()
                self.draining = True
                log.info("shutting down: %d session(s) get up to %g s to finish", len(self.sessions),
                         cfg.shutdown_grace_s)
                server.close(close_connections=False)     # stop accepting
                for session in list(self.sessions):
                    session.shutdown()
                try:
                    await asyncio.wait_for(server.wait_closed(), cfg.shutdown_grace_s)
                except TimeoutError:
                    log.warning("sessions still open after %g s; closing them", cfg.shutdown_grace_s)
                    for conn in list(server.connections):
                        await conn.close(1001, "server shutting down")
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            self.engine.stop()
        log.info("stopped")


def _response(status: http.HTTPStatus, body: str | bytes, content_type: str = "text/plain; charset=utf-8",
              extra: list[tuple[str, str]] = ()) -> Response:
    data = body.encode() if isinstance(body, str) else body
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))),
                       ("Cache-Control", "no-store"), ("Connection", "close"), *extra])
    return Response(status.value, status.phrase, headers, data)


def _head(response: Response) -> Response:
    """The answer to HEAD: GET's status and headers (its Content-Length too), no body."""
    return Response(response.status_code, response.reason_phrase, response.headers, b"")


def _static(name: str) -> Response:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file():
        return _response(http.HTTPStatus.NOT_FOUND, f"not found: /static/{name}\n")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind.endswith("javascript"):
        kind += "; charset=utf-8"
    return _response(http.HTTPStatus.OK, path.read_bytes(), kind)


def _ssl_context(cfg: ServerConfig) -> ssl.SSLContext | None:
    if not cfg.certfile:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cfg.certfile, cfg.keyfile)
    return ctx
