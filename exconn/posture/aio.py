"""Running the posture's coroutines for a caller that has no event loop of its own, or has one.

`asyncio.run` refuses to start inside a running loop (a notebook, an async application calling
the library): then the coroutine runs to its end on a loop in a thread of its own, and the caller
waits for it as for any blocking call.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main)
    outcome: list[T] = []
    failure: list[BaseException] = []

    def apart() -> None:
        try:
            outcome.append(asyncio.run(main))
        except BaseException as exc:  # handed to the caller's thread, raised there
            failure.append(exc)

    thread = threading.Thread(target=apart, name="exconn-posture-loop")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return outcome[0]
