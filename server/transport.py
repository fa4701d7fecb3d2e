"""One port, two protocols: websocket upgrades go to websockets, every other request to HTTP/1.1 on h11.

websockets serves websockets well (its limits are the server's hardening: README's "Limits") but
answers plain HTTP only without a body, so ``POST /v1/audio/transcriptions`` cannot go through it.
:class:`Connection` is the connection class handed to websockets' ``serve``: before websockets sees
a byte, it reads the first request's head (up to its blank line). A websocket upgrade
(``Upgrade: websocket``) goes on to websockets exactly as it came; any other request is served by
:func:`serve_http`, one request per connection: the handler's :class:`HttpResponse`, then close.

:class:`HttpRequest` gives the handler the body as it arrives (:meth:`HttpRequest.chunks`), so an
upload is never held whole in memory by this layer; a response sent before the body was read
(an error, a refusal) is followed by reading and dropping what the client still sends for up to
``LINGER_S``, so the client sees the response rather than a reset connection.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import urlsplit

import h11
from websockets.asyncio.server import ServerConnection

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024   # a request head (request line and headers) longer than this is answered 431
HEAD_TIMEOUT_S = 10.0        # the request head must arrive this soon (websockets' open_timeout)
READ_BYTES = 64 * 1024       # read size, and the stream buffer past which the socket is not read
LINGER_S = 5.0               # after an early response, how long the rest of a body is read and dropped


@dataclass
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def text(cls, status: int, text: str, headers: list[tuple[str, str]] = ()) -> HttpResponse:
        return cls(status, text.encode(), headers=list(headers))

    def header_list(self) -> list[tuple[str, str]]:
        """Every header sent: the content's type and length, no caching, and this connection closes."""
        return [("Content-Type", self.content_type), ("Content-Length", str(len(self.body))),
                ("Cache-Control", "no-store"), ("Connection", "close"), *self.headers]


class HttpRequest:
    """One request as its handler sees it: method, path, query and headers at once, the body as it comes."""

    def __init__(self, conn: _Http, head: h11.Request, client: str):
        self._conn = conn
        url = urlsplit(head.target.decode("latin-1"))
        self.method = head.method.decode("ascii")
        self.path, self.query = url.path, url.query
        self.headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}   # names lower-case
        self.client = client

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)

    @property
    def content_length(self) -> int | None:
        value = self.headers.get("content-length")
        return int(value) if value is not None else None   # h11 checked it is a number

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive. TimeoutError when the client sends nothing for the idle
        timeout; ConnectionError when it goes away before the end."""
        conn = self._conn.h11
        if conn.they_are_waiting_for_100_continue:
            self._conn.send(h11.InformationalResponse(status_code=100, headers=[]))
        while True:
            event = await self._conn.next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return
            else:
                raise ConnectionError("the client closed the connection before the end of the body")


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class _Http:
    """The h11 state machine over one connection's stream reader and writer."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle_timeout: float):
        self.reader, self.writer, self.idle_timeout = reader, writer, idle_timeout
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def next_event(self, timeout: float | None = None):
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            async with asyncio.timeout(timeout or self.idle_timeout):
                data = await self.reader.read(READ_BYTES)
            self.h11.receive_data(data)      # b"": the client closed its side

    def send(self, event) -> None:
        self.writer.write(self.h11.send(event))

    def respond(self, response: HttpResponse, head_only: bool) -> None:
        self.send(h11.Response(status_code=response.status, headers=response.header_list(),
                               reason=HTTPStatus(response.status).phrase))
        if response.body and not head_only:
            self.send(h11.Data(data=response.body))
        self.send(h11.EndOfMessage())

    async def linger(self) -> None:
        """Read and drop what the client still sends (a body the handler did not read), then close."""
        if self.h11.their_state is not h11.SEND_BODY:
            return
        with contextlib.suppress(TimeoutError, ConnectionError):
            async with asyncio.timeout(LINGER_S):
                while await self.reader.read(READ_BYTES):
                    pass


def serve_http(transport: asyncio.Transport, head: bytes, handler: Handler, idle_timeout: float,
               client: str) -> asyncio.Task:
    """Serve one plain HTTP request on ``transport``, whose first bytes ``head`` were already read."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_BYTES)
    protocol = asyncio.StreamReaderProtocol(reader)
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    protocol.data_received(head)
    writer = asyncio.StreamWriter(transport, protocol, reader, loop)
    end = head.find(b"\r\n\r\n")
    too_long = end < 0 or end > MAX_HEAD_BYTES
    return loop.create_task(_serve(_Http(reader, writer, idle_timeout), handler, client, too_long))


async def _serve(conn: _Http, handler: Handler, client: str, too_long: bool = False) -> None:
    try:
        try:
            if too_long:
                raise h11.RemoteProtocolError(f"the request head is over {MAX_HEAD_BYTES} bytes",
                                              error_status_hint=431)
            event = await conn.next_event(HEAD_TIMEOUT_S)
        except h11.RemoteProtocolError as e:
            conn.respond(HttpResponse.text(e.error_status_hint, f"bad request: {e}\n"), head_only=False)
            await conn.writer.drain()
            await conn.linger()
            return
        if not isinstance(event, h11.Request):
            return
        request = HttpRequest(conn, event, client)
        try:
            response = await handler(request)
        except (TimeoutError, ConnectionError):
            raise                    # the client stalled or went away: nobody to answer
        except Exception:  # noqa: BLE001 - a bug here ends this request only
            log.exception("HTTP %s %s failed", request.method, request.path)
            response = HttpResponse.text(500, "internal error: the server failed on this request\n")
        if conn.h11.our_state is h11.SEND_RESPONSE:
            conn.respond(response, head_only=request.method == "HEAD")
            await conn.writer.drain()
            await conn.linger()
    except (TimeoutError, ConnectionError, h11.ProtocolError):
        pass
    finally:
        conn.writer.close()


class Connection(ServerConnection):
    """websockets' connection, which first reads the request head and keeps only websocket upgrades.

    ``http(transport, head)`` takes any other request: the transport is handed over with the bytes
    read so far, and websockets never learns of the connection. A connection that sends no complete
    head within ``HEAD_TIMEOUT_S`` is dropped.
    """

    def __init__(self, *args, http: Callable[[asyncio.Transport, bytes], None], **kwargs):
        super().__init__(*args, **kwargs)
        self._http = http
        self._head: bytearray | None = bytearray()     # None once the connection is handed on
        self._sniffed: asyncio.Transport | None = None
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._sniffed = transport
        self._deadline = self.loop.call_later(HEAD_TIMEOUT_S, transport.abort)

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            return super().data_received(data)
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0 and len(self._head) <= MAX_HEAD_BYTES:
            return
        head, self._head = bytes(self._head), None
        self._deadline.cancel()
        if end >= 0 and _is_upgrade(head[:end]):
            super().connection_made(self._sniffed)
            super().data_received(head)
        else:
            self._http(self._sniffed, head)

    def eof_received(self) -> bool | None:
        return None if self._head is not None else super().eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._head is not None:     # gone before its head was complete
            self._deadline.cancel()
            return
        super().connection_lost(exc)


def _is_upgrade(head: bytes) -> bool:
    """The request head asks for a websocket (``Upgrade: websocket``, any case, possibly in a list)."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"upgrade" and b"websocket" in value.lower():
            return True
    return False
