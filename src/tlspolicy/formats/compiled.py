"""A compiled configuration cached on disk, so a large one starts without parsing.

:func:`load_config_cached` loads configuration files as
:func:`~tlspolicy.formats.loader.load_config` does, through a cache
directory.  An entry is used only when every file the load read (includes
counted) still has the SHA-256 recorded with it, and when it was written by
the same tlspolicy and Python versions; otherwise the files are parsed and
the entry is written again.

The entry is JSON the module checks itself (never pickle): one header line
(versions, the files with their digests, the digest of the payload) and one
payload line, the configuration as plain values.  An entry is read only from
a directory and a file owned by the user reading it that no one else may
write; a foreign, corrupt or unreadable entry is logged and ignored, so it
can never change a decision: the files are parsed instead.  Entries are
written atomically (a private temporary file, then ``os.replace``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import stat
import sys
import tempfile
from collections.abc import Sequence
from typing import Any, Final, cast

from .._version import __version__
from ..names import DomainKind, DomainName
from ..options import OPTION_SPECS, CompatVersion, Options
from ..scopes import BindingGroupScope, BindingScope, Config, DomainScope, FloorScope
from ..scopes.models import (
    trusted_binding,
    trusted_config,
    trusted_domain,
    trusted_exact_domains,
    trusted_group,
)
from .files import ReadBudget, gc_paused, read_regular_bytes
from .loader import load_config

__all__ = ["CACHE_FORMAT", "compiled_from_data", "compiled_to_data", "load_config_cached"]

log = logging.getLogger("tlspolicy.compiled")

CACHE_FORMAT: Final = "tlspolicy-compiled-1"
"""The format tag of a cache entry; an entry with another tag is ignored."""

_MAX_ENTRY_BYTES: Final = 512 << 20


def _version() -> str:
    return __version__


def _python() -> str:
    return sys.version.split()[0] + "-" + sys.implementation.name


# ----------------------------------------------------------------- the payload


class _Writer:
    def __init__(self) -> None:
        self.options: list[dict[str, object]] = []
        self._index: dict[int, int] = {}

    def opts(self, options: Options) -> int:
        found = self._index.get(id(options))
        if found is None:
            found = self._index[id(options)] = len(self.options)
            self.options.append(options.to_mapping())
        return found

    def stanza(self, s: DomainScope | FloorScope) -> list[object]:
        return [s.name.kind.value, s.name.key, s.name.text, self.opts(s.options),
                None if s.expires is None else s.expires.isoformat(), s.reason,
                s.expiry_weakens]

    def domains(self, domains: tuple[DomainScope, ...]) -> dict[str, object]:
        # Most stanzas are a normalised host name and options: those are one line of
        # "names" and an index in "opts", so reading a large container makes few
        # objects besides the names it keeps.  The others are given in full.
        names: list[str] = []
        special: dict[str, list[object]] = {}
        for i, d in enumerate(domains):
            if (d.name.kind is DomainKind.EXACT and d.name.key == d.name.text
                    and d.expires is None and d.reason is None and not d.expiry_weakens):
                names.append(d.name.text)
            else:
                names.append("")
                special[str(i)] = self.stanza(d)
        return {"names": "\n".join(names), "opts": [self.opts(d.options) for d in domains],
                "special": special}

    def binding(self, b: BindingScope) -> list[object]:
        return [b.name, self.opts(b.options), self.domains(b.domains)]


def compiled_to_data(config: Config) -> dict[str, Any]:
    """A configuration as JSON-ready values (:func:`compiled_from_data` reads them)."""
    w = _Writer()
    data: dict[str, Any] = {
        "compatibility": None if config.compatibility is None else str(config.compatibility),
        "match_cache_size": config.match_cache_size,
        "global": w.opts(config.options),
        "domains": w.domains(config.domains),
        "groups": [[g.name, w.opts(g.options), w.domains(g.domains),
                    [w.binding(b) for b in g.bindings]] for g in config.binding_groups],
        "bindings": [w.binding(b) for b in config.bindings],
        "floors": [w.stanza(f) for f in config.floors],
    }
    data["options"] = w.options
    return data


class _Reader:
    def __init__(self, options: list[Any]) -> None:
        self.options = [self._options(raw) for raw in options]

    @staticmethod
    def _options(raw: Any) -> Options:
        if type(raw) is not dict:
            raise ValueError("options must be a table")
        return Options(**{name: OPTION_SPECS[name].parse(value)  # type: ignore[arg-type]
                          for name, value in raw.items()})

    def opts(self, index: Any) -> Options:
        if type(index) is not int or not 0 <= index < len(self.options):
            raise ValueError(f"bad options index {index!r}")
        return self.options[index]

    def name(self, kind: Any, key: Any, text: Any) -> DomainName:
        if type(text) is not str or type(key) is not str:
            raise ValueError("a stanza name must be a string")
        if kind == DomainKind.EXACT.value and key == text:
            # One string object for both: a hundred thousand names, six megabytes.
            return DomainName(DomainKind.EXACT, text, text)
        # Anything but a name already in its normalised spelling is parsed again.
        parsed = DomainName.parse(text)
        if parsed.kind.value != kind or parsed.key != key:
            raise ValueError(f"stanza name {text!r} does not normalise to {key!r}")
        return parsed

    def stanza(self, raw: Any, cls: type[DomainScope] | type[FloorScope]
               ) -> DomainScope | FloorScope:
        kind, key, text, opts, expires, reason, weakens = raw
        when = None if expires is None else _dt.datetime.fromisoformat(expires)
        name = self.name(kind, key, text)
        options = self.opts(opts)
        if cls is DomainScope and when is None and reason is None and weakens is False:
            return trusted_domain(name, options)
        return cls(name, options, when, reason, weakens)

    def domains(self, raw: Any) -> tuple[DomainScope, ...]:
        opts = raw["opts"]
        special = raw["special"]
        names = raw["names"].split("\n") if opts else []
        if len(names) != len(opts) or type(special) is not dict:
            raise ValueError("malformed container")
        options = self.options
        # Every index checked at once (a hundred thousand stanzas start faster so):
        # whole numbers, none out of range.
        if opts and (set(map(type, opts)) != {int} or min(opts) < 0
                     or max(opts) >= len(options)):
            raise ValueError("bad options index")
        # Every stanza built as a plain one first (an empty name is a placeholder), then
        # the few given in full put in their places: one tight loop for the many.
        out = trusted_exact_domains(names, list(map(options.__getitem__, opts)))
        if names.count("") != len(special):
            raise ValueError("malformed container")
        for key, stanza in special.items():
            i = int(key)
            if key != str(i) or not 0 <= i < len(names) or names[i]:
                raise ValueError("malformed container")
            out[i] = cast(DomainScope, self.stanza(stanza, DomainScope))
        return tuple(out)

    def binding(self, raw: Any) -> BindingScope:
        name, opts, domains = raw
        if type(name) is not str:
            raise ValueError("a binding name must be a string")
        return trusted_binding(name, self.opts(opts), self.domains(domains))


def compiled_from_data(data: Any) -> Config:
    """The configuration :func:`compiled_to_data` wrote.

    The values come from an entry whose digest was checked, written from a
    configuration that loaded: option values, versions, regexes, IP literals
    and names not in their normalised spelling are parsed again, stanzas with
    an expiry and floors are checked by their own constructors; a name in its
    normalised spelling is taken as it is.  Raises ``ValueError``,
    ``TypeError`` or ``KeyError`` for anything malformed.
    """
    with gc_paused():
        return _from_data(data)


def _from_data(data: Any) -> Config:
    r = _Reader(data["options"])
    compatibility = (None if data["compatibility"] is None
                     else CompatVersion.parse(data["compatibility"]))
    size = data["match_cache_size"]
    if size is not None and (type(size) is not int or size < 0):
        raise ValueError("bad match_cache_size")
    groups: list[BindingGroupScope] = []
    for name, opts, domains, bindings in data["groups"]:
        if type(name) is not str:
            raise ValueError("a binding_group name must be a string")
        groups.append(trusted_group(name, r.opts(opts), r.domains(domains),
                                    tuple(r.binding(b) for b in bindings)))
    floors = tuple(r.stanza(f, FloorScope) for f in data["floors"])
    return trusted_config(r.opts(data["global"]), r.domains(data["domains"]), tuple(groups),
                          tuple(r.binding(b) for b in data["bindings"]), compatibility, size,
                          floors)  # type: ignore[arg-type]


# -------------------------------------------------------------------- the cache


def _entry_name(paths: Sequence[str], format: str | None) -> str:
    key = json.dumps([os.getcwd(), [os.path.abspath(p) for p in paths], format, _version(),
                      _python(), CACHE_FORMAT])
    return hashlib.sha256(key.encode()).hexdigest()[:40] + ".json"


def _private_dir(directory: str, create: bool) -> bool:
    """Whether ``directory`` is ours alone (created 0700 when missing and ``create``)."""
    if create:
        with contextlib.suppress(FileExistsError):
            os.makedirs(directory, mode=0o700)
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        return False
    if not stat.S_ISDIR(info.st_mode):
        log.warning("compiled cache %s is not a directory: not used", directory)
        return False
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        log.warning("compiled cache %s is not owned by this user alone (owner uid %d, mode "
                    "%o): not used", directory, info.st_uid, stat.S_IMODE(info.st_mode))
        return False
    return True


def _read_entry(path: str) -> bytes | None:
    try:
        # Non-blocking: opening a FIFO put in an entry's place returns at once (and is
        # then refused as no regular file) instead of waiting for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("compiled cache entry %s unreadable (%s): parsing the files", path,
                    exc.strerror)
        return None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()
                or info.st_mode & 0o022 or info.st_size > _MAX_ENTRY_BYTES):
            log.warning("compiled cache entry %s is not a private regular file of this user: "
                        "parsing the files", path)
            return None
        os.set_blocking(handle.fileno(), True)
        return handle.read(_MAX_ENTRY_BYTES + 1)


def _current(files: Sequence[Any]) -> bool:
    """Whether every recorded file still has its recorded digest."""
    for item in files:
        name, digest = item
        try:
            data = read_regular_bytes(name)
        except Exception:
            return False
        if hashlib.sha256(data).hexdigest() != digest:
            return False
    return True


def _hit(path: str) -> Config | None:
    raw = _read_entry(path)
    if raw is None:
        return None
    try:
        header_line, _sep, payload = raw.partition(b"\n")
        del raw
        header = json.loads(header_line)
        if (type(header) is not dict or header.get("format") != CACHE_FORMAT
                or header.get("tlspolicy") != _version() or header.get("python") != _python()):
            log.info("compiled cache entry %s is from another version: parsing the files", path)
            return None
        if hashlib.sha256(payload).hexdigest() != header.get("payload_sha256"):
            log.warning("compiled cache entry %s is corrupt (digest mismatch): parsing the "
                        "files", path)
            return None
        if not _current(header["files"]):
            log.info("configuration files changed since %s was written: parsing them", path)
            return None
        data = json.loads(payload)
        del payload
        return compiled_from_data(data)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        log.warning("compiled cache entry %s is unusable (%s): parsing the files", path, exc)
        return None
    except Exception as exc:  # any error in the entry means: parse the files
        log.warning("compiled cache entry %s is unusable (%s: %s): parsing the files", path,
                    type(exc).__name__, exc)
        return None


def _write(directory: str, path: str, config: Config,
           digests: Sequence[tuple[str, str]]) -> None:
    payload = json.dumps(compiled_to_data(config), separators=(",", ":"),
                         ensure_ascii=True).encode()
    header = json.dumps({"format": CACHE_FORMAT, "tlspolicy": _version(), "python": _python(),
                         "files": [list(d) for d in digests],
                         "payload_sha256": hashlib.sha256(payload).hexdigest()}).encode()
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".compiled-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(header + b"\n" + payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_config_cached(*paths: str | os.PathLike[str], cache_dir: str | os.PathLike[str],
                       format: str | None = None) -> tuple[Config, bool]:
    """:func:`~tlspolicy.formats.loader.load_config` through a compiled cache.

    Returns the configuration and whether it came from the cache.  A load
    that fails raises as :func:`load_config` does and writes nothing; a cache
    that cannot be read or written is logged and never fails the load.
    """
    names = [os.fspath(p) for p in paths]
    directory = os.fspath(cache_dir)
    usable = False
    try:
        usable = _private_dir(directory, create=True)
    except OSError as exc:
        log.warning("compiled cache %s cannot be used (%s): parsing the files", directory,
                    exc.strerror)
    entry = os.path.join(directory, _entry_name(names, format))
    if usable:
        found = _hit(entry)
        if found is not None:
            log.info("configuration read from the compiled cache %s", entry)
            return found, True
    budget = ReadBudget(record=True)
    config = load_config(*names, format=format, budget=budget)
    if usable and budget.digests is not None:
        try:
            _write(directory, entry, config, budget.digests)
        except OSError as exc:
            log.warning("compiled cache entry %s not written (%s)", entry, exc.strerror)
    return config, False
