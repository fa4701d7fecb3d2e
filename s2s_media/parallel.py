"""Ordered, bounded read-ahead on threads: how the batch commands load files while decoding."""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int, ahead: int,
                name: str = "s2s-load") -> Iterator[R]:
    """``fn`` over ``items``, results in input order. ``workers <= 0`` runs in the calling thread;
    otherwise ``workers`` threads run at most ``ahead`` items ahead of the consumer, and items not
    yet started are cancelled when the consumer stops early."""
    if workers <= 0:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix=name) as pool:
        futures: deque = deque()
        try:
            for it in items:
                futures.append(pool.submit(fn, it))
                if len(futures) > ahead:
                    yield futures.popleft().result()
            while futures:
                yield futures.popleft().result()
        finally:
            for f in futures:
                f.cancel()
