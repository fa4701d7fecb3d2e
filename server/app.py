"""The server: websocket routes, HTTP routes on the same port, admission, and clean shutdown.

``/v1/stream``, ``/vosk`` and ``/v1/realtime`` are websocket endpoints (one :class:`~server.session.Session`
per connection), served by websockets; every other request is plain HTTP (:mod:`server.transport`
tells them apart on the port): ``POST /v1/audio/transcriptions`` (:mod:`server.openai_http`), and
``GET /``, ``/static/*``, ``/healthz`` (liveness), ``/readyz`` (readiness) and ``/metrics``, which
answer GET and HEAD only. With ``token`` set, the websocket endpoints and the transcription
endpoint need ``Authorization: Bearer TOKEN`` (or ``?token=TOKEN``; else HTTP 401); the page,
health and metrics stay open.
"""
from __future__ import annotations

import asyncio
import functools
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
from s2s_media.inference.punctuation import Punctuator
from server import openai_http
from server.config import ServerConfig
from server.engine import Engine
from server.metrics import CONTENT_TYPE as METRICS_TYPE, Metrics, worker_lines
from server.protocol import MAX_MESSAGE_BYTES
from server.realtime import RealtimeSession
from server.session import Session, V1Session, VoskSession
from server.transport import Connection, HttpRequest, HttpResponse, serve_http
from server.workers import WorkerPool

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
ROUTES = {"/v1/stream": V1Session, "/vosk": VoskSession, "/v1/realtime": RealtimeSession}   # websockets
HTTP_METHODS = ("GET", "HEAD")    # what the page, health and metrics answer; anything else is 405
# Frames websockets buffers per connection before it stops reading the socket (its default is 16). With
# messages of at most 1 MiB, a session holds at most this many MiB of unread messages (see README's budget).
RECV_QUEUE_FRAMES = 4


class App:
    """One model, one engine, many sessions. ``await App(...).run()`` serves until stopped."""

    def __init__(self, recognizer: Recognizer, config: ServerConfig | None = None,
                 punctuator: Punctuator | None = None, pool: WorkerPool | None = None):
        """``punctuator`` writes every final (capitals, ``. , ? !``; a v1 session may turn it off); None: raw.
        ``pool``: decode in its worker processes (``serve --workers N``) instead of a thread of this process;
        ``recognizer`` then only checks and compiles the sessions' options, and the workers punctuate."""
        self.config = config or ServerConfig()
        self.metrics = Metrics()
        if pool is not None:
            pool.attach(recognizer, self.config.engine, self.metrics)
        self.engine = pool or Engine(recognizer, self.config.engine, self.metrics, punctuator)
        self.metrics.add_collector(lambda: worker_lines(self.engine.worker_stats(), self.engine.restarts))
        self.sessions: set[Session | openai_http.Transcription] = set()   # websocket sessions and HTTP transcriptions
        self._http_tasks: set[asyncio.Task] = set()
        self.per_client: dict[str, int] = {}   # client address -> sessions open
        self.port: int | None = None
        self.ready = asyncio.Event()   # set once listening (``port`` is known)
        self.draining = False          # set when a clean shutdown begins
        self._stop: asyncio.Event | None = None

    # ---------------------------------------------------------------- sessions
    def admit(self, session: Session | openai_http.Transcription, client: str) -> str | None:
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

    def release(self, session: Session | openai_http.Transcription, client: str) -> None:
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
        """A websocket handshake: to a known endpoint, with the token when one is set."""
        url = urlsplit(request.path)
        if url.path not in ROUTES:
            return _websocket_refusal(http.HTTPStatus.NOT_FOUND, f"no websocket endpoint at {url.path}; use "
                                                                  f"{', '.join(ROUTES)}\n")
        if self.config.token and not self.authorized(request.headers.get("Authorization", ""), url.query):
            self.metrics.error("unauthorized")
            self.metrics.refused("unauthorized")
            return _websocket_refusal(http.HTTPStatus.UNAUTHORIZED, "unauthorized: give Authorization: Bearer "
                                      "TOKEN or ?token=TOKEN\n", extra=[("WWW-Authenticate", "Bearer")])
        return None

    async def http(self, request: HttpRequest) -> HttpResponse:
        """A plain HTTP request (anything but a websocket upgrade)."""
        if request.path in openai_http.ROUTES:
            return await openai_http.handle(self, request)
        if request.path in ROUTES:
            return HttpResponse.text(http.HTTPStatus.UPGRADE_REQUIRED, f"{request.path} is a websocket endpoint; "
                                     "connect with a websocket client\n", [("Upgrade", "websocket")])
        if request.method not in HTTP_METHODS:
            return HttpResponse.text(http.HTTPStatus.METHOD_NOT_ALLOWED, f"{request.method} is not allowed; use "
                                     "GET or HEAD\n", [("Allow", ", ".join(HTTP_METHODS))])
        if request.path == "/healthz":
            return HttpResponse.text(http.HTTPStatus.OK, "ok\n")
        if request.path == "/readyz":
            return self._readiness()
        if request.path == "/metrics":
            return HttpResponse(http.HTTPStatus.OK, self.metrics.render().encode(), METRICS_TYPE)
        if request.path == "/":
            return _static("index.html")
        if request.path.startswith("/static/"):
            return _static(request.path[len("/static/"):])
        return HttpResponse.text(http.HTTPStatus.NOT_FOUND, f"not found: {request.path}\n")

    def _readiness(self) -> HttpResponse:
        """200 while a new session would be admitted; 503 when draining or when every slot is taken."""
        if self.draining:
            return HttpResponse.text(http.HTTPStatus.SERVICE_UNAVAILABLE, "draining: the server is shutting down\n")
        if len(self.sessions) >= self.config.max_sessions:
            return HttpResponse.text(http.HTTPStatus.SERVICE_UNAVAILABLE, f"full: {len(self.sessions)} of "
                                     f"{self.config.max_sessions} sessions\n")
        return HttpResponse.text(http.HTTPStatus.OK, "ready\n")

    def authorized(self, authorization: str, query: str) -> bool:
        """The server's token is given as ``Authorization: Bearer TOKEN`` or in the query as ``token=TOKEN``."""
        token = self.config.token.encode()
        given = [v.encode() for v in parse_qs(query).get("token", [])]
        if authorization.startswith("Bearer "):
            given.append(authorization[len("Bearer "):].strip().encode())
        return any(hmac.compare_digest(g, token) for g in given)

    def _serve_http(self, transport, head: bytes) -> None:
        """Take a connection whose first request is plain HTTP (see :class:`server.transport.Connection`)."""
        peer = transport.get_extra_info("peername")
        task = serve_http(transport, head, self.http, self.config.idle_timeout_s, peer[0] if peer else "")
        self._http_tasks.add(task)
        task.add_done_callback(self._http_tasks.discard)

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
                             ssl=_ssl_context(cfg), server_header=None,
                             create_connection=functools.partial(Connection, http=self._serve_http)) as server:
                self.port = server.sockets[0].getsockname()[1]
                scheme = "wss" if cfg.certfile else "ws"
                log.info("listening on %s://%s:%d (/v1/stream, /vosk, /v1/realtime, POST /v1/audio/transcriptions; "
                         "page at /)", scheme, cfg.host, self.port)
                self.ready.set()
                await self._stop.wait()
                self.draining = True
                log.info("shutting down: %d session(s) get up to %g s to finish", len(self.sessions),
                         cfg.shutdown_grace_s)
                server.close(close_connections=False)     # stop accepting
                for session in list(self.sessions):
                    session.shutdown()
                try:
                    await asyncio.wait_for(asyncio.gather(server.wait_closed(), self._http_idle()),
                                           cfg.shutdown_grace_s)
                except TimeoutError:
                    log.warning("sessions still open after %g s; closing them", cfg.shutdown_grace_s)
                    for conn in list(server.connections):
                        await conn.close(1001, "server shutting down")
                for task in list(self._http_tasks):
                    task.cancel()
        finally:
            if install_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)
            self.engine.stop()
        log.info("stopped")

    async def _http_idle(self) -> None:
        """Wait for the HTTP requests in progress (transcriptions decode what they were sent)."""
        while self._http_tasks:
            await asyncio.wait(list(self._http_tasks))


def _websocket_refusal(status: http.HTTPStatus, body: str, extra: list[tuple[str, str]] = ()) -> Response:
    """A websocket handshake answered with an HTTP error instead of the upgrade."""
    response = HttpResponse.text(status, body, extra)
    return Response(status.value, status.phrase, Headers(response.header_list()), response.body)


def _static(name: str) -> HttpResponse:
    path = (STATIC / name).resolve()
    if path.parent != STATIC or not path.is_file():
        return HttpResponse.text(http.HTTPStatus.NOT_FOUND, f"not found: /static/{name}\n")
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if kind.startswith("text/") or kind.endswith("javascript"):
        kind += "; charset=utf-8"
    return HttpResponse(http.HTTPStatus.OK, path.read_bytes(), kind)


def _ssl_context(cfg: ServerConfig) -> ssl.SSLContext | None:
    if not cfg.certfile:
        return None
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cfg.certfile, cfg.keyfile)
    return ctx
