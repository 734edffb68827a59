"""Running the posture's coroutines for a caller that has no event loop of its own, or has one.

`asyncio.run` refuses to start inside a running loop (a notebook, an async application calling
the library): then the coroutine runs to its end on a loop in a thread of its own, and the caller
waits for it as for any blocking call. On Windows the loop is a selector loop: the DNS path
watches its UDP sockets, which the default Proactor loop cannot.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def _loop() -> asyncio.AbstractEventLoop:
    # The DNS path watches its UDP sockets (add_reader): Windows' default Proactor loop cannot.
    if sys.platform == "win32":
        return asyncio.SelectorEventLoop()
    return asyncio.new_event_loop()


def _run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=_loop) as runner:
        return runner.run(main)


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(main)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def apart() -> None:
        try:
            outcome.append(_run(main))
        except BaseException as exc:  # handed to the caller's thread, raised there
            failure.append(exc)

    thread = threading.Thread(target=apart, name="exconn-posture-loop")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
