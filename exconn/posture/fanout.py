"""Running one domain's independent look-ups at the same time, without nested-pool deadlocks.

Three layers of threads, each waiting only on the layers below it:

- a *domain* (the caller's thread, e.g. one of `scan_domains`' workers) starts chains and leaves;
- a *chain* (e.g. TXT -> policy host address -> HTTPS fetch; MX host address -> SMTP probe) runs its
  steps in order and may start leaves;
- a *leaf* (one DNS question) never waits on anything of ours.

A leaf always finishes on its own (its own timeout), so a full pool only queues work, never blocks
it forever. A call from a layer that may not start that kind of work (a chain started from a chain,
anything started from a leaf) runs inline instead, so misuse costs speed, never a deadlock. The pools
are bounded, so the whole scan uses at most `domains + chains + leaves` threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")

MAX_CHAIN_THREADS = 192
MAX_LEAF_THREADS = 256

_layer = threading.local()  # .value: "chain" | "leaf" on our pools' threads


def _mark(layer: str) -> Callable[[], None]:
    def initializer() -> None:
        _layer.value = layer

    return initializer


def _done(fn: Callable[[], T]) -> Future[T]:
    future: Future[T] = Future()
    try:
        future.set_result(fn())
    except BaseException as exc:  # delivered to whoever asks for the result, as a pool would
        future.set_exception(exc)
    return future


class Fanout:
    """The chain and leaf pools of one scan; `Fanout(0)` runs everything inline (sequentially)."""

    def __init__(self, concurrency: int) -> None:
        self._chains: ThreadPoolExecutor | None = None
        self._leaves: ThreadPoolExecutor | None = None
        if concurrency > 0:
            # A domain has at most ~3 chains and ~6 leaves in flight at once (MTA-STS, one per MX
            # host; A+AAAA per host, TLSA, TLS-RPT): size for that, within a fixed ceiling.
            self._chains = ThreadPoolExecutor(
                max_workers=min(MAX_CHAIN_THREADS, max(4, 3 * concurrency)),
                thread_name_prefix="posture-chain",
                initializer=_mark("chain"),
            )
            self._leaves = ThreadPoolExecutor(
                max_workers=min(MAX_LEAF_THREADS, max(8, 4 * concurrency)),
                thread_name_prefix="posture-leaf",
                initializer=_mark("leaf"),
            )

    def chain(self, fn: Callable[[], T]) -> Future[T]:
        """Run `fn` (which may start leaves and wait for them) alongside the caller."""
        if self._chains is None or getattr(_layer, "value", None) is not None:
            return _done(fn)
        return self._chains.submit(fn)

    def leaf(self, fn: Callable[[], T]) -> Future[T]:
        """Run `fn` (which must not wait on this Fanout) alongside the caller."""
        if self._leaves is None or getattr(_layer, "value", None) == "leaf":
            return _done(fn)
        return self._leaves.submit(fn)

    def close(self) -> None:
        for pool in (self._chains, self._leaves):
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Fanout:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()


INLINE = Fanout(0)
