"""Batch transcription and captioning on a Ray cluster, with Ray Data.

The same records as :meth:`Transcriber.run <s2s_media.inference.transcriber.Transcriber.run>` and
:meth:`Captioner.run <s2s_media.inference.captioner.Captioner.run>`, computed across a cluster:

1. the driver (``s2s-media transcribe/caption ... --ray``) discovers the inputs and drops what
   ``--resume`` finds in the output, as without Ray, then hands Ray Data one row per item;
2. **reading** runs as Ray tasks, in parallel wherever Ray places them: a file becomes its audio
   ``(samples,)`` at 16 kHz (:func:`~s2s_media.inference.transcriber.read_audio`) or its RGB image
   (:func:`~s2s_media.inference.captioner.read_image`), or the one-line error of a file that failed;
3. **decoding** runs in a pool of actors, each of which loads the model once (``load``, a picklable
   function the caller gives) and maps over batches of ``batch_files`` read files: features,
   batched encoder passes and search exactly as on one machine (``run_prepared``), so a failed
   file is an error record there too;
4. records stream back to the driver in input order (``preserve_order``), where the caller writes
   them as each arrives: Ctrl-C keeps what was written, ``--resume`` continues.

Paths are read where the tasks run: on a cluster, inputs and the checkpoint must be on storage
every node sees at the same path (a shared filesystem). Ray is optional
(``pip install 's2s-media[ray]'``); without it :func:`connect` is a one-line error.
"""
from __future__ import annotations

import functools
import json
import logging
import pickle
import socket
from collections.abc import Callable, Iterator
from urllib.parse import urlsplit

import numpy as np
import torch

from s2s_media.errors import UserError
from s2s_media.inference.captioner import Captioner, read_image
from s2s_media.inference.inputs import Item
from s2s_media.inference.transcriber import Transcriber, read_audio

try:
    import ray
    import ray.data
except ImportError:  # an optional extra: connect() says how to install it
    ray = None

INSTALL_HINT = "pip install 's2s-media[ray]'"
CONNECT_TIMEOUT_S = 10.0          # how long an address may take to answer before it counts as unreachable
READ_TASKS_PER_ACTOR = 1          # reading tasks at once per decoding actor: reading waits on storage mostly, and
                                  # takes no CPU from Ray's accounting, so the actors get every CPU


def connect(address: str | None, timeout: float = CONNECT_TIMEOUT_S, **init) -> None:
    """Join the Ray cluster at ``address`` (``host:port`` of its head, ``ray://host:port`` for Ray Client,
    ``auto`` for the one this machine belongs to), or start a local one when ``address`` is None.

    UserError in one line when Ray is not installed or the address does not answer within ``timeout``
    seconds (Ray itself would retry for minutes). ``init``: more ``ray.init`` arguments (``num_cpus``...).
    """
    if ray is None:
        raise UserError(f"--ray needs Ray, which is not installed: {INSTALL_HINT}")
    if address not in (None, "auto"):
        url = urlsplit(address if "://" in address else f"tcp://{address}")
        try:
            host, port = url.hostname, url.port
        except ValueError:
            host = port = None
        if not host or not port:
            raise UserError(f"--ray {address}: not a Ray address; give HOST:PORT of the head node "
                            "(ray start --head prints it), ray://HOST:PORT, or auto")
        try:
            socket.create_connection((host, port), timeout=timeout).close()
        except OSError as e:
            raise UserError(f"--ray {address}: cannot reach the Ray head within {timeout:g} s "
                            f"({e.strerror or e}); is the cluster up (ray start --head)?") from None
    if ray.is_initialized():   # a program (or a test) that started Ray itself
        return _configure()
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False, **init)
    except ConnectionError as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise UserError(f"--ray {address}: {first}") from None
    _configure()


def _configure() -> None:
    logging.getLogger("ray.data").setLevel(logging.WARNING)   # its plan and timings: the caller reports its own
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True     # records in input order, as without Ray
    context.enable_progress_bars = False                # the caller shows one bar per file


def transcribe(items: list[Item], load: Callable[[], Transcriber], actors: int,
               batch_files: int = 16) -> Iterator[tuple[Item, dict]]:
    """``(item, record)`` for every item, in order; ``load`` builds the transcriber on each actor."""
    return _run(items, read_audio, functools.partial(_transcribe_batch, load), actors, batch_files)


def caption(items: list[Item], load: Callable[[], Captioner], max_pixels: int, actors: int,
            batch_files: int = 16) -> Iterator[tuple[Item, dict]]:
    """``(item, record)`` for every image, in order; ``load`` builds the captioner on each actor."""
    return _run(items, functools.partial(read_image, max_pixels=max_pixels),
                functools.partial(_caption_batch, load), actors, batch_files)


# --------------------------------------------------------------------------- the pipeline
def _run(items: list[Item], read: Callable[[Item], object], decoder: Callable, actors: int,
         batch_files: int) -> Iterator[tuple[Item, dict]]:
    if not items:
        return
    if actors < 1 or batch_files < 1:
        raise UserError(f"--ray-actors {actors}, --ray-batch {batch_files}: both must be at least 1")
    rows = [{"i": i, "item": pickle.dumps(it)} for i, it in enumerate(items)]
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * actors)))
    ds = ds.map(functools.partial(_read_row, read), num_cpus=0,
                compute=ray.data.TaskPoolStrategy(size=READ_TASKS_PER_ACTOR * actors))
    ds = ds.map_batches(_Decoder, fn_constructor_args=(decoder,), batch_size=batch_files,
                        compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1, batch_format="numpy")
    for row in ds.iter_rows():
        yield items[int(row["i"])], json.loads(row["record"])


def _read_row(read: Callable[[Item], object], row: dict) -> dict:
    """One item -> ``(item, what read gave)`` pickled: an array, an image or an error string."""
    item = pickle.loads(row["item"])
    return {"i": row["i"], "read": pickle.dumps((item, read(item)), protocol=pickle.HIGHEST_PROTOCOL)}


class _Decoder:
    """A Ray actor: builds its decoder once, then turns batches of read files into records."""

    def __init__(self, decoder: Callable):
        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.decode = decoder()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        read = [pickle.loads(r) for r in batch["read"]]
        records = self.decode(read)
        return {"i": batch["i"], "record": np.array([json.dumps(r, ensure_ascii=False) for r in records], dtype=object)}


def _transcribe_batch(load: Callable[[], Transcriber]) -> Callable[[list[tuple[Item, object]]], list[dict]]:
    transcriber = load()
    return lambda read: [rec for _, rec in transcriber.run_prepared(transcriber.prepare_read(it, r) for it, r in read)]


def _caption_batch(load: Callable[[], Captioner]) -> Callable[[list[tuple[Item, object]]], list[dict]]:
    captioner = load()
    return lambda read: [c.record for c in captioner.run_prepared(captioner.prepare_read(it, r) for it, r in read)]
