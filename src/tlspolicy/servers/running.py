"""Running a :class:`~tlspolicy.servers.SocketmapServer`: :func:`serve` in a running
event loop, :func:`run_forever` as a process's main loop (signals: SIGHUP reloads,
SIGTERM and SIGINT stop after the answers in flight)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import socket
import threading
from collections.abc import Awaitable, Callable
from typing import Final, TypedDict, Unpack

from .loading import call_bounded
from .socketmap import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_RELOAD_TIMEOUT,
    LookupFactory,
    SocketmapServer,
)

__all__ = ["ServerOptions", "new_event_loop", "run_forever", "serve"]


class ServerOptions(TypedDict, total=False):
    """The keyword arguments :func:`serve` and :func:`run_forever` hand to
    :class:`SocketmapServer` unchanged; their defaults and meaning are its own."""

    host: str
    port: int
    unix_path: str | None
    socket_mode: int
    allow_remote: bool
    max_request_bytes: int
    max_connections: int
    max_connections_per_client: int | None
    idle_timeout: float
    request_timeout: float
    reload_timeout: float
    sock: socket.socket | None
    reuse_port: bool
    answer_timeout: float

#: Open files beyond the connection limit (listening sockets, the store, logs, loaders).
_SPARE_FILES: Final = 64

log = logging.getLogger("tlspolicy.servers.socketmap")


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for a server process: uvloop's when it is installed, else asyncio's.

    uvloop runs the same protocol callbacks with less work per system call; the
    answers are the same either way.
    """
    try:
        # The optional "uvloop" extra; without it the standard loop serves.
        import uvloop  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


def _raise_file_limit(needed: int) -> None:
    """Raise the soft limit on open files towards ``needed`` (never above the hard limit)."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):
        return
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft < needed:
        log.warning("socketmap: the open-file limit (%d) is below what %d connections need; "
                    "raise it (ulimit -n) or lower the connection limit", soft, needed)


# -------------------------------------------------------------------- entry points


async def serve(
    lookup_factory: LookupFactory,
    *,
    ready: Callable[[SocketmapServer], None] | None = None,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
    stopping: Callable[[], None] | None = None,
    startup: Callable[[], Awaitable[object]] | None = None,
    shutdown: Callable[[], Awaitable[object]] | None = None,
    **options: Unpack[ServerOptions],
) -> None:
    """Run a socketmap server until ``SIGTERM``/``SIGINT`` (or ``stop`` is set).

    ``lookup_factory`` builds the first lookup (its errors propagate: a server
    that cannot load its policy does not start; so does a first load that
    overruns ``reload_timeout``, as :class:`LoadTimeoutError`) and every
    reload on ``SIGHUP``.  ``ready`` is called once the socket is bound, e.g.
    to print the address (or tell systemd); ``stopping`` once shutting down
    begins.  With ``handle_signals`` false, only ``stop`` ends the server.
    ``startup`` is awaited before the first load (e.g. to probe discovery's
    resolver), ``shutdown`` after the server stopped.  The other arguments are
    those of :class:`SocketmapServer` (:class:`ServerOptions`).
    """
    loaders: list[threading.Thread] = []
    if startup is not None:
        await startup()
    try:
        await _serve_started(lookup_factory, ready=ready, handle_signals=handle_signals,
                             stop=stop, stopping=stopping, loaders=loaders, options=options)
    finally:
        if shutdown is not None:
            await shutdown()


async def _serve_started(
    lookup_factory: LookupFactory, *, ready: Callable[[SocketmapServer], None] | None,
    handle_signals: bool, stop: asyncio.Event | None, stopping: Callable[[], None] | None,
    loaders: list[threading.Thread], options: ServerOptions,
) -> None:
    lookup = await call_bounded(
        lookup_factory, options.get("reload_timeout", DEFAULT_RELOAD_TIMEOUT), loaders)
    server = SocketmapServer(lookup, reload=lookup_factory, **options)
    _raise_file_limit(options.get("max_connections", DEFAULT_MAX_CONNECTIONS) + _SPARE_FILES)
    done = stop if stop is not None else asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stop(signame: str) -> None:
        log.info("socketmap: %s received, shutting down", signame)
        done.set()

    installed: list[signal.Signals] = []
    await server.start()
    try:
        if handle_signals:
            loop.add_signal_handler(signal.SIGHUP, server.request_reload)
            installed.append(signal.SIGHUP)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, on_stop, sig.name)
                installed.append(sig)
        if ready is not None:
            ready(server)
        await done.wait()
    finally:
        if stopping is not None:
            with contextlib.suppress(Exception):
                stopping()
        for sig in installed:
            loop.remove_signal_handler(sig)
        await server.stop()
        log.info("socketmap: stopped")


def run_forever(
    lookup_factory: LookupFactory,
    *,
    ready: Callable[[SocketmapServer], None] | None = None,
    stopping: Callable[[], None] | None = None,
    startup: Callable[[], Awaitable[object]] | None = None,
    shutdown: Callable[[], Awaitable[object]] | None = None,
    **options: Unpack[ServerOptions],
) -> None:
    """Blocking form of :func:`serve` for a command-line entry point.

    Returns after a clean shutdown on ``SIGTERM`` or ``SIGINT``; an error
    building the first lookup or binding the socket propagates.
    """
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(lookup_factory, ready=ready, stopping=stopping, startup=startup,
                         shutdown=shutdown, **options))
