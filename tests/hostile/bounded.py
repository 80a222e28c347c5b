"""Run a hostile input in a forked child with a generous time guard.

A catastrophic regex holds the interpreter inside C code, where neither a
signal nor another thread can stop it, so each probe runs in a child process
that is killed when the guard expires.  The guard is a hang detector, not a
performance figure: a fixed probe finishes in milliseconds.
"""

from __future__ import annotations

import multiprocessing
import traceback
from collections.abc import Callable
from typing import Any

GUARD_SECONDS = 10.0


class Hung(AssertionError):
    """The probe did not finish within the guard."""


def _child(conn: Any, fn: Callable[..., object], args: tuple[object, ...]) -> None:
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # handed to the parent, which re-raises
        try:
            conn.send(("raised", exc))
        except Exception:
            conn.send(("raised", RuntimeError(traceback.format_exc())))
    finally:
        conn.close()


def within(fn: Callable[..., object], *args: object, seconds: float = GUARD_SECONDS) -> Any:
    """``fn(*args)`` in a forked child; its result, or its exception re-raised here."""
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(child, fn, args), daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(seconds):
            raise Hung(f"{getattr(fn, '__name__', fn)} did not finish within {seconds} s")
        status, value = parent.recv()
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()
    if status == "raised":
        raise value
    return value
