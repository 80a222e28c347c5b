"""Building a socketmap server's lookup off the event loop, within a deadline: the first
load and every reload run in a daemon thread that a stuck load cannot keep alive."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import TypeVar

from ..errors import TlsPolicyError

__all__ = ["LoadTimeoutError", "call_bounded"]


class LoadTimeoutError(TlsPolicyError):
    """Building a lookup (the first load or a reload) did not finish in time."""


_T = TypeVar("_T")


async def call_bounded(fn: Callable[[], _T], timeout: float,
                        threads: list[threading.Thread]) -> _T:
    """``fn()`` in a daemon thread; :class:`LoadTimeoutError` after ``timeout`` seconds.

    Not the default executor: a load stuck for ever (a FIFO, a device) would
    keep an executor thread, and the interpreter joins those at exit, so the
    server could never stop.  A daemon thread is abandoned instead, and its
    late result, if one ever comes, is thrown away.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def deliver(value: _T | None, error: Exception | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)  # type: ignore[arg-type]

    def work() -> None:
        value: _T | None = None
        error: Exception | None = None
        try:
            value = fn()
        except Exception as exc:  # handed to the waiting coroutine
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop may be closed by now
            loop.call_soon_threadsafe(deliver, value, error)

    thread = threading.Thread(target=work, name="tlspolicy-load", daemon=True)
    threads.append(thread)
    thread.start()
    try:
        return await asyncio.wait_for(future, timeout)
    except TimeoutError:
        raise LoadTimeoutError(
            f"loading the configuration took longer than {timeout:g} s (is one of its files "
            "a FIFO, a device or on a stalled file system?); its result will be ignored"
        ) from None
