"""Spreading a scan over worker processes: one GIL per core.

A posture scan at high concurrency is bound by Python's CPU (TLS handshakes, DNS messages, thread
hand-offs under one GIL), not by the network. `spread` starts a few processes, each running `target`
(which builds its own trust store and pools once, then serves items with `threads` threads); items go
out on one queue, so a process that finishes early takes more and a slow (dead) host holds one thread
only. Results come back on another queue with their index, so the caller keeps the input order and
sees each result (progress) as it arrives. A worker that dies leaves its unfinished items missing
from the answer, for the caller to report, instead of hanging the run.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

MIN_ITEMS_PER_PROCESS = 100  # a process costs ~10 ms to fork (~0.5 s to spawn): worth it past this
# Below this concurrency per process one GIL is not the limit, and a second process only takes CPU
# from the network's side (bench_posture: at 32, one process 143/s, two 126/s; at 128, 147 vs 177).
MIN_THREADS_PER_PROCESS = 64


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def process_count(items: int, concurrency: int) -> int:
    """How many processes a scan of `items` at `concurrency` is worth (1: stay in this one)."""
    return max(1, min(cores(), items // MIN_ITEMS_PER_PROCESS, concurrency // MIN_THREADS_PER_PROCESS))


def shares(concurrency: int, processes: int) -> list[int]:
    """`concurrency` split over `processes`: the total in flight stays `concurrency`."""
    base, extra = divmod(concurrency, processes)
    return [base + (1 if i < extra else 0) for i in range(processes) if base or i < extra]


def serve(tasks: Any, results: Any, threads: int, handle: Callable[[Any], Any]) -> None:
    """In a worker: `threads` threads take (index, item) from `tasks` until None, put (index, result)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us; no traceback per worker

    def run() -> None:
        while (task := tasks.get()) is not None:
            index, item = task
            results.put((index, handle(item)))

    pool = [threading.Thread(target=run, daemon=True) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def _context() -> multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext:
    # fork is cheap and inherits the imports; with other threads alive (a test's servers) a forked
    # child could inherit a held lock, so spawn then.
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def spread(
    items: Sequence[T],
    target: Callable[..., None],
    args: tuple[Any, ...],
    concurrency: int,
    processes: int,
    on_result: Callable[[int, R], None],
) -> None:
    """Run `target(tasks, results, threads, *args)` in `processes` processes over `items`.

    `on_result(index, result)` is called in this thread as each result arrives. Returns when every
    item has its result or no worker is left alive."""
    context = _context()
    tasks: Any = context.Queue()
    results: Any = context.Queue()
    sizes = shares(concurrency, processes)
    workers = [
        context.Process(target=target, args=(tasks, results, size, *args), daemon=True) for size in sizes
    ]
    try:
        for worker in workers:
            worker.start()
        for task in enumerate(items):
            tasks.put(task)
        for _ in range(sum(sizes)):
            tasks.put(None)
        left = len(items)
        while left:
            try:
                index, result = results.get(timeout=0.5)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers):
                    break
                continue
            on_result(index, result)
            left -= 1
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.join(timeout=5)
            if worker.is_alive():
                worker.terminate()
                worker.join(timeout=5)
        tasks.cancel_join_thread()  # items a dead worker never took: nobody will read them
        tasks.close()
        results.close()
