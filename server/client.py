"""The one protocol-v1 client (``/v1/stream``, see ``server/README.md``), used by ``s2s-media stream``
and ``mic``, ``scripts/bench_stream.py`` and the server tests.

>>> async with await connect("ws://127.0.0.1:8765/v1/stream") as ws:
...     await ws.send(start_message())              # then PCM16 chunks, then STOP
...     async for msg in messages(ws): ...          # ready, partials, finals, end

:func:`connect` turns the ways a connection fails into one-line :class:`ClientError`s;
:func:`stream` sends an async source of chunks while it reads the replies, as a live client does.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import numpy as np
from websockets.asyncio.client import ClientConnection, connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
SAMPLE_RATE = 16000
STOP = json.dumps({"type": "stop"})


class ClientError(Exception):
    """A session that could not run: one line saying why."""


def pcm16(wav: np.ndarray) -> bytes:
    """Float samples in [-1, 1] -> little-endian 16-bit PCM (``pcm_s16le``), clipped."""
    return (np.clip(wav, -1.0, 1.0) * 32767).astype("<i2").tobytes()


def start_message(sample_rate: int = SAMPLE_RATE, encoding: str = "pcm_s16le", partials: bool = True,
                  words: bool = True, **extra) -> str:
    """The ``start`` message of a session (``extra``: further fields, e.g. to test the server's checks)."""
    return json.dumps({"type": "start", "sample_rate": sample_rate, "encoding": encoding, "partials": partials,
                       "words": words, **extra})


async def connect(url: str, token: str | None = None, open_timeout: float = 10, **kw) -> ClientConnection:
    """Open a websocket to ``url`` (``token``: sent as ``Authorization: Bearer``); ClientError when it fails."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        return await ws_connect(url, additional_headers=headers, max_size=None, open_timeout=open_timeout, **kw)
    except InvalidStatus as e:
        status = e.response.status_code
        hint = "; pass --token" if status == 401 else ""
        raise ClientError(f"{url}: the server refused the connection (HTTP {status}){hint}") from None
    except InvalidURI:
        raise ClientError(f"{url}: not a websocket URL; use ws://HOST:PORT/v1/stream") from None
    except (OSError, InvalidHandshake, TimeoutError) as e:
        raise ClientError(f"{url}: cannot connect ({e}); is 's2s-media serve' running?") from None


async def messages(ws: ClientConnection) -> AsyncIterator[dict]:
    """Every message until the connection closes (normally or not), decoded."""
    try:
        async for raw in ws:
            yield json.loads(raw)
    except ConnectionClosed:
        return


async def stream(ws: ClientConnection, chunks: AsyncIterator[bytes], on_message: Callable[[dict], None],
                 start: str | None = None, on_sending: Callable[[asyncio.Task], None] | None = None) -> asyncio.Task:
    """Send ``start`` (default :func:`start_message`), then ``chunks`` and ``stop`` while calling ``on_message``
    for every reply, until ``end``. An ``error`` message raises ClientError, so does a connection that
    closes before ``end``. ``on_sending`` gets the task that sends the audio: cancelling it stops sending
    early, and the session still ends with its last final (Ctrl-C on ``mic``). Returns that task, done."""
    await ws.send(start or start_message())

    async def send_audio():
        try:
            async for chunk in chunks:
                await ws.send(chunk)
        except asyncio.CancelledError:   # stopped early (Ctrl-C): still collect the last final
            pass
        finally:
            try:
                await ws.send(STOP)
            except ConnectionClosed:
                pass

    sender = asyncio.create_task(send_audio())
    if on_sending is not None:
        on_sending(sender)
    try:
        async for raw in ws:
            msg = json.loads(raw)
            if msg["type"] == "error":
                raise ClientError(f"server: {msg['code']}: {msg['message']}")
            on_message(msg)
            if msg["type"] == "end":
                break
        else:
            raise ClientError(f"server closed the connection before the end (code {ws.close_code})")
    except ConnectionClosed as e:
        raise ClientError(f"server closed the connection before the end ({e})") from None
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)
    return sender
