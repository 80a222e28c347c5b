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
from typing import Final

from .socketmap import (
    DEFAULT_ANSWER_TIMEOUT,
    DEFAULT_IDLE_TIMEOUT,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_RELOAD_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_SOCKET_MODE,
    LookupFactory,
    SocketmapServer,
    _call_bounded,
)

__all__ = ["new_event_loop", "run_forever", "serve"]

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
    host: str = "127.0.0.1",
    port: int = 0,
    unix_path: str | None = None,
    socket_mode: int = DEFAULT_SOCKET_MODE,
    allow_remote: bool = False,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_connections_per_client: int | None = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    reload_timeout: float = DEFAULT_RELOAD_TIMEOUT,
    ready: Callable[[SocketmapServer], None] | None = None,
    handle_signals: bool = True,
    stop: asyncio.Event | None = None,
    sock: socket.socket | None = None,
    reuse_port: bool = False,
    stopping: Callable[[], None] | None = None,
    answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    startup: Callable[[], Awaitable[object]] | None = None,
    shutdown: Callable[[], Awaitable[object]] | None = None,
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
    those of :class:`SocketmapServer`.
    """
    loaders: list[threading.Thread] = []
    if startup is not None:
        await startup()
    try:
        await _serve_started(
            lookup_factory, host=host, port=port, unix_path=unix_path,
            socket_mode=socket_mode, allow_remote=allow_remote,
            max_request_bytes=max_request_bytes, max_connections=max_connections,
            max_connections_per_client=max_connections_per_client, idle_timeout=idle_timeout,
            request_timeout=request_timeout, reload_timeout=reload_timeout, ready=ready,
            handle_signals=handle_signals, stop=stop, sock=sock, reuse_port=reuse_port,
            stopping=stopping, answer_timeout=answer_timeout, loaders=loaders)
    finally:
        if shutdown is not None:
            await shutdown()


async def _serve_started(
    lookup_factory: LookupFactory, *, host: str, port: int, unix_path: str | None,
    socket_mode: int, allow_remote: bool, max_request_bytes: int, max_connections: int,
    max_connections_per_client: int | None, idle_timeout: float, request_timeout: float,
    reload_timeout: float, ready: Callable[[SocketmapServer], None] | None,
    handle_signals: bool, stop: asyncio.Event | None, sock: socket.socket | None,
    reuse_port: bool, stopping: Callable[[], None] | None, answer_timeout: float,
    loaders: list[threading.Thread],
) -> None:
    lookup = await _call_bounded(lookup_factory, reload_timeout, loaders)
    server = SocketmapServer(
        lookup,
        host=host,
        port=port,
        unix_path=unix_path,
        socket_mode=socket_mode,
        allow_remote=allow_remote,
        max_request_bytes=max_request_bytes,
        max_connections=max_connections,
        max_connections_per_client=max_connections_per_client,
        idle_timeout=idle_timeout,
        request_timeout=request_timeout,
        reload=lookup_factory,
        reload_timeout=reload_timeout,
        sock=sock,
        reuse_port=reuse_port,
        answer_timeout=answer_timeout,
    )
    _raise_file_limit(max_connections + _SPARE_FILES)
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
    host: str = "127.0.0.1",
    port: int = 0,
    unix_path: str | None = None,
    socket_mode: int = DEFAULT_SOCKET_MODE,
    allow_remote: bool = False,
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    max_connections_per_client: int | None = DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
    idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    reload_timeout: float = DEFAULT_RELOAD_TIMEOUT,
    ready: Callable[[SocketmapServer], None] | None = None,
    sock: socket.socket | None = None,
    reuse_port: bool = False,
    stopping: Callable[[], None] | None = None,
    answer_timeout: float = DEFAULT_ANSWER_TIMEOUT,
    startup: Callable[[], Awaitable[object]] | None = None,
    shutdown: Callable[[], Awaitable[object]] | None = None,
) -> None:
    """Blocking form of :func:`serve` for a command-line entry point.

    Returns after a clean shutdown on ``SIGTERM`` or ``SIGINT``; an error
    building the first lookup or binding the socket propagates.
    """
    with asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(serve(
            lookup_factory,
            host=host,
            port=port,
            unix_path=unix_path,
            socket_mode=socket_mode,
            allow_remote=allow_remote,
            max_request_bytes=max_request_bytes,
            max_connections=max_connections,
            max_connections_per_client=max_connections_per_client,
            idle_timeout=idle_timeout,
            request_timeout=request_timeout,
            reload_timeout=reload_timeout,
            ready=ready,
            sock=sock,
            reuse_port=reuse_port,
            stopping=stopping,
            answer_timeout=answer_timeout,
            startup=startup,
            shutdown=shutdown,
        ))
