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

import os
import shutil
import subprocess
from collections.abc import Collection, Sequence
from typing import Final

import attrs

from ..errors import ConfigError, TlsPolicyError
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
from .postfix_checks import PostconfError, read_postconf

__all__ = [
    "ACCEPT_ALL",
    "ROUTE_PARAMETERS",
    "PostfixRoutes",
    "RouteLossError",
    "RouteReadError",
    "read_postfix_routes",
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
    accepted, the sources read (for ``--check``) and the files whose change means the
    routes changed (main.cf, master.cf, every table's file)."""

    routes: RouteTable
    losses: tuple[RouteReadError, ...] = ()
    sources: tuple[str, ...] = ()
    files: tuple[str, ...] = ()

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
        self.routes = RouteTable()

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
            self.files.append(name)
            with open(name, encoding="utf-8") as handle:
                return handle.read(), name
        if kind in _LISTABLE:
            self.files.append(f"{name}.db" if kind in ("hash", "btree") else
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
                except (OSError, UnicodeDecodeError, ValueError) as exc:
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
    if config_dir is not None:
        reader.files += [os.path.join(config_dir, "main.cf"),
                         os.path.join(config_dir, "master.cf")]
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
    return PostfixRoutes(reader.routes, tuple(reader.failures), tuple(reader.sources),
                         tuple(dict.fromkeys(reader.files)))
