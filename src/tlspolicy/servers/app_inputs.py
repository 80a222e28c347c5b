"""What ``serve socketmap`` is told, as :mod:`tlspolicy.servers.app` takes it: the options
(the command line's, with the same names), where to listen, and whether it serves drop-in
mode."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

import attrs

from . import socketmap as _sm
from .postfix_routes import DEFAULT_ROUTE_POLL

__all__ = ["ServeMode", "ServeOptions", "UnixListen"]


class UnixListen(NamedTuple):
    """``--listen unix:PATH``: a unix socket path."""

    path: str


@attrs.define
class ServeMode:
    """Whether ``serve socketmap`` may serve drop-in mode (discovery on), whether the files
    hold a ``[discovery]`` table, and whether the policy loaded last is drop-in mode's."""

    drop_in_allowed: bool = False
    table_given: bool = False
    drop_in: bool = False


def _items(values: Iterable[Any] | None) -> tuple[Any, ...]:
    # A repeatable flag not given is None; an empty tuple reads the same everywhere.
    return tuple(values or ())


@attrs.frozen(slots=True)
class ServeOptions:
    """Everything ``serve socketmap`` was told besides the ``[discovery]`` settings, each
    named as its flag's destination (``listen`` for ``--listen``); ``paths`` are the
    configuration files and ``format`` the ``--format`` given (``None``: each file's name
    decides).  The defaults are the flags' defaults."""

    paths: tuple[str, ...] = attrs.field(default=(), converter=_items)
    format: str | None = None
    listen: tuple[str, int] | UnixListen | None = None
    socket_mode: int | None = None
    reuse_port: bool = False
    allow_remote: bool = False
    metrics_listen: tuple[str, int] | None = None
    max_connections: int = _sm.DEFAULT_MAX_CONNECTIONS
    max_connections_per_client: int | None = None
    idle_timeout: float = _sm.DEFAULT_IDLE_TIMEOUT
    request_timeout: float = _sm.DEFAULT_REQUEST_TIMEOUT
    max_request_bytes: int = _sm.DEFAULT_MAX_REQUEST_BYTES
    reload_timeout: float = _sm.DEFAULT_RELOAD_TIMEOUT
    route_poll: float = DEFAULT_ROUTE_POLL
    no_file_checks: bool = False
    compiled_cache: str | None = None
    transport_map: tuple[str, ...] = attrs.field(default=(), converter=_items)
    relayhost: str | None = None
    accept_route_loss: tuple[str, ...] = attrs.field(default=(), converter=_items)
    postfix_config_dir: str | None = None
    postfix_setting: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_items)
    no_postfix_checks: bool = False
    accept_tls_required_loss: bool = False
    shadow: tuple[str, ...] = attrs.field(default=(), converter=_items)
    shadow_report: str | None = None
