"""Postfix's own routes: which next hops mail can reach, read from Postfix itself.

A next-hop key (``[relay.example]:587``) is answered with the policy of the domains routed
through it (SEMANTICS 11), so the server must know the routes Postfix uses.
:func:`read_postfix_routes` reads them from a Postfix configuration directory: main.cf
through ``postconf -x``, master.cf ``-o`` overrides through ``postconf -P -x``, indexed
tables through ``postmap -s`` (what Postfix itself reads, the ``.db`` and not its source),
``inline:``, ``static:`` and ``texthash:`` directly; ``proxy:`` and ``unionmap:`` are
unwrapped.  The result is the :class:`~tlspolicy.postfix.transport.RouteTable` the pure
lookup takes, as ``--transport-map`` and ``--relayhost`` build it.

A route source that cannot be read (a map type that cannot be listed, such as ``regexp:``
or ``ldap:``; a missing file; postconf failing) is a :class:`RouteReadError`; unless the
operator accepts that parameter's loss, :func:`read_postfix_routes` raises
:class:`RouteLossError` naming each one, and the server does not start (or a reload keeps
the routes it had).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
from collections.abc import Callable, Collection, Sequence
from typing import Final

import attrs

from ..errors import ConfigError, TlsPolicyError
from ..formats.files import read_regular_text
from ..postfix.transport import (
    RouteTable,
    TransportTableError,
    catch_all_routes,
    parse_inline_map,
    parse_transport_table,
    split_map_list,
    table_entries,
    unwrap_map,
)
from .postconf import PostconfError, read_postconf

__all__ = [
    "ACCEPT_ALL",
    "DEFAULT_ROUTE_POLL",
    "ROUTE_PARAMETERS",
    "PostfixRoutes",
    "RouteLossError",
    "RouteReadError",
    "read_postfix_routes",
    "stamp_files",
    "watch_route_tables",
]

#: The main.cf (and master.cf ``-o``) parameters that route mail to a next hop.
ROUTE_PARAMETERS: Final = ("transport_maps", "relayhost", "sender_dependent_relayhost_maps",
                           "sender_dependent_default_transport_maps", "default_transport",
                           "relay_transport", "smtp_fallback_relay")
#: ``--accept-route-loss all``: every parameter's loss accepted.
ACCEPT_ALL: Final = "all"

_MAP_PARAMETERS: Final = frozenset({"transport_maps", "sender_dependent_relayhost_maps",
                                    "sender_dependent_default_transport_maps"})
_TRANSPORT_FORM: Final = frozenset({"default_transport", "relay_transport",
                                    "sender_dependent_default_transport_maps"})
#: Table types postmap lists (``postmap -s``): what Postfix reads is the indexed file.
_LISTABLE: Final = frozenset({"hash", "btree", "lmdb", "cdb", "dbm", "sdbm"})
_POSTMAP_TIMEOUT: Final = 30.0


FileStamp = tuple[tuple[str, int, int, int], ...]
"""Per file: name, inode, size, modification time in nanoseconds."""


class RouteReadError(TlsPolicyError):
    """A route source that cannot be read: ``parameter`` (``transport_maps``, ...) and
    ``table`` (``regexp:/etc/postfix/transport``, or ``""`` for a plain setting) name it."""

    def __init__(self, parameter: str, source: str, table: str, why: str) -> None:
        self.parameter = parameter
        self.source = source
        self.table = table
        self.why = why
        what = f"{source}: table {table}" if table else source
        super().__init__(f"{what}: {why}")


class RouteLossError(TlsPolicyError):
    """Route sources that cannot be read and whose loss was not accepted: next hops they
    route would be answered with the host's own policy, not the routed domains'."""

    def __init__(self, failures: Sequence[RouteReadError]) -> None:
        self.failures = tuple(failures)
        params = sorted({f.parameter for f in self.failures})
        lines = "; ".join(str(f) for f in self.failures)
        super().__init__(
            f"Postfix's routes cannot all be read, so next hops they name would be answered "
            f"with the host's own policy instead of the routed domains': {lines}. Route that "
            f"mail through a table postmap can list (hash:, lmdb:, cdb:, texthash:, inline:), "
            f"give the routes explicitly (--transport-map, --relayhost), or start with "
            + " ".join(f"--accept-route-loss {p}" for p in params)
            + " (each unattributed next hop is then logged and counted)")


@attrs.frozen(slots=True)
class PostfixRoutes:
    """What :func:`read_postfix_routes` found: the routes, the read failures whose loss was
    accepted, the sources read (for ``--check``), the route tables' files (``.db`` of an
    indexed table, a ``texthash:`` file) and their stamps when read (:func:`stamp_files`;
    main.cf and master.cf are not among them: Postfix too reads them on reload only)."""

    routes: RouteTable
    losses: tuple[RouteReadError, ...] = ()
    sources: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    stamps: FileStamp = ()

    def loss_summary(self) -> tuple[str, ...]:
        """One line per accepted loss."""
        return tuple(str(loss) for loss in self.losses)


def _program(name: str, given: str | None) -> str | None:
    return given or shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def _assignments(text: str) -> list[tuple[str, str]]:
    found = []
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            found.append((name.strip(), value.strip()))
        elif line.rstrip().endswith(" ="):
            found.append((line.rstrip()[:-2].strip(), ""))
    return found


class _Reader:
    def __init__(self, config_dir: str | None, postconf: str | None,
                 postmap: str | None) -> None:
        self.config_dir = config_dir
        self.postconf = postconf
        self.postmap = postmap
        self.failures: list[RouteReadError] = []
        self.sources: list[str] = []
        self.files: list[str] = []
        self.stamps: dict[str, tuple[str, int, int, int]] = {}
        self.routes = RouteTable()

    def watch(self, name: str) -> None:
        # Stamped before it is read: a change while reading is seen as a change.
        self.files.append(name)
        self.stamps.setdefault(name, stamp_files([name])[0])

    def postmap_list(self, table: str) -> str:
        program = _program("postmap", self.postmap)
        if program is None:
            raise OSError("postmap is not installed")
        command = [program, *(["-c", self.config_dir] if self.config_dir else []), "-s", table]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=_POSTMAP_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise OSError(f"{' '.join(command)} did not finish in "
                          f"{_POSTMAP_TIMEOUT:g} s") from None
        if result.returncode != 0:
            message = result.stderr.strip().splitlines()
            raise OSError(f"postmap -s {table} failed: "
                          f"{message[-1] if message else 'exit status ' + str(result.returncode)}")
        return result.stdout

    def table_text(self, table: str) -> tuple[str, str]:
        """The table's entries as ``key value`` lines, and the name to locate them by."""
        kind, _sep, name = table.partition(":")
        kind = kind.lower()
        if kind == "inline":
            entries = parse_inline_map(name)
            return "".join(f"{k} {v}\n" for k, v in entries), table
        if kind == "static":
            return f"* {name.strip()}\n", table
        if kind == "texthash":
            self.watch(name)
            # A regular file of bounded size, as every file read here.
            return read_regular_text(name, what="texthash table"), name
        if kind in _LISTABLE:
            self.watch(f"{name}.db" if kind in ("hash", "btree") else
                       f"{name}.{kind}" if kind in ("lmdb", "cdb") else name)
            return self.postmap_list(table), table
        raise ValueError(f"a {kind}: table cannot be listed (postmap -s reads indexed "
                         "tables only), so the next hops it routes to are not known")

    def read(self, parameter: str, source: str, value: str) -> None:
        if parameter not in _MAP_PARAMETERS:
            try:
                self.routes += catch_all_routes(
                    value, file=source, transport_form=parameter in _TRANSPORT_FORM,
                    fallback=parameter == "smtp_fallback_relay")
            except ConfigError as exc:
                self.failures.append(RouteReadError(parameter, source, "", exc.message))
            self.sources.append(f"{source} = {value}" if value else source)
            return
        for spec in split_map_list(value):
            for table in unwrap_map(spec):
                self.sources.append(f"{source}: {table}")
                try:
                    text, where = self.table_text(table)
                    if parameter == "transport_maps":
                        found = parse_transport_table(text, file=where)
                        if where == table and not table.lower().startswith("inline:"):
                            # Listed by postmap: its order is not the source file's lines.
                            found = RouteTable(tuple(attrs.evolve(r, line=0)
                                                     for r in found.routes), found.direct)
                        self.routes += found
                    else:
                        for line, _key, result in table_entries(text):
                            self.routes += catch_all_routes(
                                result, file=where, line=line,
                                transport_form=parameter in _TRANSPORT_FORM)
                except TransportTableError as exc:
                    self.failures.append(RouteReadError(parameter, source, table, str(exc)))
                except (ConfigError, OSError, UnicodeDecodeError, ValueError) as exc:
                    self.failures.append(RouteReadError(parameter, source, table, str(exc)))


def read_postfix_routes(config_dir: str | None = None, *,
                        accept_loss: Collection[str] = (),
                        postconf: str | None = None,
                        postmap: str | None = None) -> PostfixRoutes:
    """Postfix's routes to next hops, read from ``config_dir`` (``None``: postconf's
    own, ``/etc/postfix``), in every form SEMANTICS 11 lists; each element of a next-hop
    list is a route of its own.

    Raises :class:`RouteLossError` when a route source cannot be read and its parameter
    is not in ``accept_loss`` (``"all"`` accepts every one); accepted failures are in
    :attr:`PostfixRoutes.losses`.  I/O: runs ``postconf`` and ``postmap``.
    """
    reader = _Reader(config_dir, postconf, postmap)
    where = config_dir or "postconf's default configuration directory"
    try:
        main = _assignments(read_postconf(["-x", *ROUTE_PARAMETERS], config_dir=config_dir,
                                          postconf=postconf))
        master = _assignments(read_postconf(["-P", "-x"], config_dir=config_dir,
                                            postconf=postconf))
    except PostconfError as exc:
        failure = RouteReadError(ACCEPT_ALL, f"Postfix's settings in {where}", "",
                                 f"cannot be read ({exc})")
        if ACCEPT_ALL not in accept_loss:
            raise RouteLossError([failure]) from None
        return PostfixRoutes(RouteTable(), (failure,))
    for name, value in main:
        if name in ROUTE_PARAMETERS:
            reader.read(name, f"main.cf {name}", value)
    for name, value in master:
        service, _sep, parameter = name.rpartition("/")
        if parameter in ROUTE_PARAMETERS and service:
            reader.read(parameter, f"master.cf {service} -o {parameter}", value)
    refused = [f for f in reader.failures
               if f.parameter not in accept_loss and ACCEPT_ALL not in accept_loss]
    if refused:
        raise RouteLossError(refused)
    files = tuple(dict.fromkeys(reader.files))
    return PostfixRoutes(reader.routes, tuple(reader.failures), tuple(reader.sources),
                         files, tuple(reader.stamps[name] for name in files))


# ----------------------------------------------------------------- changes of route tables

#: Seconds between looks at the route tables' files (``serve socketmap --route-poll``).
DEFAULT_ROUTE_POLL: Final = 5.0

def stamp_files(files: Sequence[str]) -> FileStamp:
    """What changes when a file is rewritten (``postmap`` renames a new ``.db`` into place):
    its inode, size and modification time, ``(-1, -1, -1)`` for a missing file."""
    found = []
    for name in files:
        try:
            info = os.stat(name)
        except OSError:
            found.append((name, -1, -1, -1))
        else:
            found.append((name, info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(found)


async def watch_route_tables(request_reload: Callable[[], None],
                             loaded: Callable[[], FileStamp], *,
                             interval: float = DEFAULT_ROUTE_POLL) -> None:
    """Every ``interval`` seconds, compare the route tables' files with ``loaded()`` (their
    stamps when the routes in use were read) and request a reload, as SIGHUP does, when
    one changed: Postfix itself notices a rebuilt ``.db`` without a reload, so the answers
    follow it.  One request per change; runs until cancelled."""
    log = logging.getLogger("tlspolicy")
    requested: FileStamp | None = None
    while True:
        await asyncio.sleep(interval)
        before = loaded()
        if not before:
            continue
        now = await asyncio.to_thread(stamp_files, [entry[0] for entry in before])
        if now in (before, requested):
            continue
        changed = [new[0] for old, new in zip(before, now, strict=True) if old != new]
        log.info("routes: %s changed: reloading (as on SIGHUP)", ", ".join(changed))
        requested = now
        request_reload()
