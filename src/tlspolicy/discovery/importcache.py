"""Import the MTA-STS caches of other Postfix policy daemons into the discovery store.

Switching daemons must not reset trust on first use (RFC 8461 section 10.2): a
domain whose enforce policy the old daemon holds must stay enforced from the
first lookup on.  These functions read the unexpired policies of

- postfix-mta-sts-resolver (format of its releases 1.x, read from 1.5.0): its
  SQLite cache (table ``sts_policy_cache``: ``domain``, ``ts`` = seconds since
  the epoch of the latest successful check, ``pol_id`` = the TXT record's id,
  ``pol_body`` = the parsed policy as JSON: ``version``, ``mode``, ``mx`` (a
  list), ``max_age`` (a number) and any extension keys) and its Redis cache (one
  sorted set per domain whose best-scored member is 16 random bytes followed by
  the JSON array ``[pol_id, pol_body]``, scored by ``ts``; the key
  ``_metadata`` is its own bookkeeping), and its PostgreSQL cache (the same
  columns as SQLite, ``pol_body`` as ``jsonb``);
- postfix-tlspol (the cache file of its releases 1.10 to 1.13, read from 1.13.0): a
  gzip-compressed Go ``encoding/gob`` stream of one map from domain to a struct
  whose ``MtaSts`` branch holds, for an enforce policy, the Postfix answer in
  ``Policy``, the policy's lines as ``{ policy_string = key: value }`` items in
  ``Report``, its lifetime in seconds in ``TTL`` (``max_age``, capped at 30 days)
  and ``ExpiresAt`` = fetch time + ``TTL``.  It keeps no policy text for testing
  policies and no TXT record id, so only enforce policies come over, each with an
  unknown id (the first re-check fetches the policy again and keeps the imported
  one while that fails);

and write each as a discovery cache entry (a held policy, due for a re-check at
once, so the next lookup serves it and refreshes it in the background).  An
entry the store already holds with a policy fetched at the same time or later
is kept.  The old daemon's files are opened read-only and never changed.
"""

from __future__ import annotations

import gzip
import json
import math
import re
import sqlite3
import time
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs

from ..errors import TlsPolicyError, excerpt
from ..names import normalise_domain
from ..policies.mtasts import CachedMtaStsPolicy, FetchOutcome, parse_policy
from ..policies.ststate import expiry
from ..stores import Store, dumps_json
from ._gob import GobError, go_time, read_gob
from .models import StsState
from .stscache import POLICY_NAMESPACE, decode_state, encode_state

__all__ = [
    "IMPORTED",
    "CacheImportError",
    "ImportReport",
    "ImportedPolicy",
    "import_policies",
    "read_mta_sts_resolver_postgres",
    "read_mta_sts_resolver_redis",
    "read_mta_sts_resolver_sqlite",
    "read_postfix_tlspol",
]

#: The ``detail`` of an imported entry starts with this.
IMPORTED: Final = "imported from"
#: Largest postfix-tlspol cache accepted, uncompressed (a few hundred bytes a domain).
MAX_TLSPOL_BYTES: Final = 512 * 1024 * 1024
_POLICY_STRING: Final = re.compile(r"\{ policy_string = ([^{}\r\n]*?) \}")
_DSN_PASSWORD: Final = re.compile(r"//[^@/]*@")


class CacheImportError(TlsPolicyError):
    """A cache to import cannot be read (missing file, not that daemon's format)."""


@attrs.frozen(slots=True)
class ImportedPolicy:
    """One policy read from another daemon's cache (``policy_id`` ``None`` when unknown)."""

    domain: str
    policy_text: str
    fetched_at: float
    policy_id: str | None
    source: str


@attrs.define
class ImportReport:
    """What an import did: domains imported, kept (the store's entry is as new or
    newer), expired, and skipped with the reason; ``capped`` lists the imported
    domains whose fetch time lay in the future, imported as fetched now (so the
    policy expires at most ``max_age`` from now), with the note."""

    imported: list[str] = attrs.Factory(list)
    kept: list[str] = attrs.Factory(list)
    expired: list[str] = attrs.Factory(list)
    skipped: list[tuple[str, str]] = attrs.Factory(list)
    capped: list[tuple[str, str]] = attrs.Factory(list)
    #: Imported domains whose policy id was not RFC 8461's, imported without it.
    id_dropped: list[tuple[str, str]] = attrs.Factory(list)


#: The deepest JSON ``pol_body`` read: a policy is one flat object with one list.
MAX_BODY_DEPTH: Final = 8
#: Largest ``pol_body`` read, in characters (a 64 KiB policy document and its JSON quoting).
MAX_BODY_CHARS: Final = 256 * 1024
# Errors a stored row can raise while it is read: each skips that row, never the import.
_ROW_ERRORS: Final = (TypeError, ValueError, OverflowError, RecursionError, KeyError)


def _json_depth_ok(text: str, limit: int = MAX_BODY_DEPTH) -> bool:
    """Whether ``text`` nests brackets at most ``limit`` deep (strings skipped).

    Checked before ``json.loads``, whose recursion a deeply nested body would
    exhaust; one linear scan.
    """
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _load_body(body: Any) -> Any:
    """A stored ``pol_body`` as JSON values: text is parsed, bounded in size and depth."""
    if isinstance(body, bytes | bytearray | memoryview):
        body = bytes(body).decode("utf-8")
    if isinstance(body, str):
        if len(body) > MAX_BODY_CHARS:
            raise ValueError(f"pol_body longer than {MAX_BODY_CHARS} characters")
        if not _json_depth_ok(body):
            raise ValueError(f"pol_body nested deeper than {MAX_BODY_DEPTH} levels")
        return json.loads(body)
    return body


def _short(exc: BaseException) -> str:
    # A reason from a stranger's row: one line, bounded.
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:200] + "..."


def _row_domain(domain: object) -> str:
    # A NULL (or numeric) domain is no name: str(None) would import the domain "none".
    if isinstance(domain, bytes):
        domain = domain.decode("utf-8")
    if not isinstance(domain, str) or not domain.strip():
        raise TypeError(f"domain is {'NULL' if domain is None else type(domain).__name__}, "
                        "not a name")
    return domain


def _not_a_policy_domain(domain: str) -> str | None:
    """Why a normalised ``domain`` cannot be an MTA-STS policy domain, or ``None``.

    A policy is published at ``mta-sts.<domain>`` under a certificate for that host
    name (RFC 8461 section 3.3): an IP literal, a single label (a host, a top-level
    domain), an all-numeric top-level label or a label with an underscore (a service
    name, another daemon's bookkeeping key) is no such domain.
    """
    if domain.startswith("["):
        return "an IP literal is no MTA-STS policy domain"
    labels = domain.split(".")
    if len(labels) < 2:
        return "a single label is no MTA-STS policy domain"
    if labels[-1].isdigit():
        return "an all-numeric top-level label is no MTA-STS policy domain"
    if "_" in domain:
        return "a label with an underscore is no MTA-STS policy domain (not a host name)"
    return None


def _is_policy_id(policy_id: object) -> bool:
    # RFC 8461 section 3.1: id = 1*32(ALPHA / DIGIT).
    return (isinstance(policy_id, str) and 1 <= len(policy_id) <= 32
            and policy_id.isascii() and policy_id.isalnum())


def _fetch_time(ts: object) -> float:
    if isinstance(ts, bool) or not isinstance(ts, int | float | str | bytes):
        raise TypeError(f"ts is {'NULL' if ts is None else type(ts).__name__}")
    value = float(ts)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"bad fetch time {value!r}")
    return value


def _resolver_row(domain: object, ts: object, pol_id: object, pol_body: object,
                  source: str) -> ImportedPolicy | tuple[str, str]:
    """One row of a postfix-mta-sts-resolver cache, or ``(domain, reason)`` to skip it."""
    try:
        name = _row_domain(domain)
    except _ROW_ERRORS as exc:
        return (repr(domain) if not isinstance(domain, str) else domain,
                f"unreadable entry: {exc}")
    try:
        return ImportedPolicy(name, _policy_text(_load_body(pol_body)), _fetch_time(ts),
                              None if pol_id is None else str(pol_id), source)
    except _ROW_ERRORS as exc:
        return (name, f"unreadable entry: {_short(exc)}")


def _policy_text(body: Any) -> str:
    """The policy document for postfix-mta-sts-resolver's parsed ``pol_body``."""
    if not isinstance(body, dict):
        raise ValueError("pol_body is not a JSON object")
    lines = []
    for key, value in body.items():
        if not isinstance(key, str) or any(c in key for c in ":\r\n"):
            raise ValueError(f"bad policy key {key!r}")
        values = value if key == "mx" else [value]
        if not isinstance(values, list):
            raise ValueError("mx is not a list")
        for item in values:
            if isinstance(item, bool) or not isinstance(item, str | int):
                raise ValueError(f"bad value for {key}: {item!r}")
            text = str(item)
            if "\r" in text or "\n" in text:
                raise ValueError(f"line break in the value of {key}")
            lines.append(f"{key}: {text}\r\n")
    return "".join(lines)


def read_mta_sts_resolver_sqlite(path: str | Path) -> Iterable[ImportedPolicy | tuple[str, str]]:
    """The policies of a postfix-mta-sts-resolver SQLite cache; an unreadable row comes
    back as ``(domain, reason)``."""
    where = Path(path)
    if not where.is_file():
        raise CacheImportError(f"{where}: no such file")
    try:
        db = sqlite3.connect(f"{where.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise CacheImportError(f"{where}: cannot open: {exc}") from None
    try:
        rows = db.execute("select domain, ts, pol_id, pol_body from sts_policy_cache").fetchall()
    except sqlite3.Error as exc:
        raise CacheImportError(f"{where}: not a postfix-mta-sts-resolver cache: {exc}") from None
    finally:
        db.close()
    source = f"postfix-mta-sts-resolver sqlite {where}"
    return [_resolver_row(domain, ts, pol_id, pol_body, source)
            for domain, ts, pol_id, pol_body in rows]


def read_mta_sts_resolver_postgres(
        dsn: str, *, timeout: float = 5.0) -> list[ImportedPolicy | tuple[str, str]]:
    """The policies of a postfix-mta-sts-resolver PostgreSQL cache (``dsn`` as its
    ``cache.options.dsn``), read in a read-only transaction; needs ``psycopg``."""
    try:
        import psycopg  # the postgres extra
    except ImportError:
        raise CacheImportError("a PostgreSQL source needs the tlspolicy[postgres] extra "
                               "(psycopg is not installed)") from None
    where = "postgres " + _DSN_PASSWORD.sub("//", dsn)  # no password in messages
    try:
        with psycopg.connect(dsn, connect_timeout=max(1, int(timeout))) as conn:
            conn.read_only = True
            rows = conn.execute(
                "select domain, ts, pol_id, pol_body from sts_policy_cache").fetchall()
    except psycopg.Error as exc:
        raise CacheImportError(f"{where}: {str(exc).strip()}") from None
    return [_resolver_row(domain, ts, pol_id, pol_body, "postfix-mta-sts-resolver postgres")
            for domain, ts, pol_id, pol_body in rows]


async def read_mta_sts_resolver_redis(
        url: str, *, timeout: float = 5.0) -> AsyncIterator[ImportedPolicy | tuple[str, str]]:
    """The policies of a postfix-mta-sts-resolver Redis cache (keys that are not its
    sorted sets are passed over); needs the ``tlspolicy[redis]`` extra."""
    from redis import asyncio as aioredis  # the redis extra
    from redis.exceptions import RedisError  # the redis extra

    client = aioredis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        try:
            async for raw_key in client.scan_iter(count=500):
                key = raw_key.decode("utf-8", errors="replace")
                if key == "_metadata" or await client.type(raw_key) != b"zset":
                    continue
                best: list[Any] = await client.zrevrange(raw_key, 0, 0, withscores=True)
                if not best:
                    continue
                member: bytes = best[0][0]
                score: float = best[0][1]
                try:
                    pol_id, pol_body = _load_body(member[16:])
                except _ROW_ERRORS as exc:
                    yield (key, f"unreadable entry: {_short(exc)}")
                    continue
                yield _resolver_row(key, score, pol_id, pol_body,
                                    "postfix-mta-sts-resolver redis")
        except RedisError as exc:
            raise CacheImportError(f"redis {url}: {exc}") from None
    finally:
        await client.aclose()


async def import_policies(
        store: Store, policies: Iterable[ImportedPolicy | tuple[str, str]]
        | AsyncIterable[ImportedPolicy | tuple[str, str]], *,
        now: float | None = None) -> ImportReport:
    """Write the unexpired ``policies`` into ``store`` as discovery cache entries.

    Each is parsed with the library's own (strict) policy parser; one it refuses,
    whose domain is not a domain name or cannot be a policy domain (an IP literal, a
    single label, an all-numeric top-level label, a label with an underscore) is
    skipped with the reason; one whose id is not RFC 8461's (1 to 32 letters and
    digits) is imported without it (``id_dropped``).  An entry the
    store holds whose policy was fetched at the same time or later is kept.
    """
    moment = time.time() if now is None else now
    report = ImportReport()

    async def items() -> AsyncIterator[ImportedPolicy | tuple[str, str]]:
        if isinstance(policies, AsyncIterable):
            async for item in policies:
                yield item
        else:
            for item in policies:
                yield item

    async for item in items():
        if isinstance(item, tuple):
            report.skipped.append(item)
            continue
        try:
            domain = normalise_domain(item.domain)
            policy = parse_policy(item.policy_text)
        except TlsPolicyError as exc:
            report.skipped.append((item.domain, str(exc)))
            continue
        why = _not_a_policy_domain(domain)
        if why is not None:
            report.skipped.append((domain, why))
            continue
        policy_id = item.policy_id
        if policy_id is not None and not _is_policy_id(policy_id):
            # The policy is what counts (skipping it would lose its protection until a
            # fetch): imported without the id, so the next check fetches it again.
            report.id_dropped.append((domain, f"policy id {excerpt(policy_id, 60)} is not 1 "
                                              "to 32 letters and digits (RFC 8461 section "
                                              "3.1): imported without it, so the next "
                                              "check fetches the policy again"))
            policy_id = None
        if not (isinstance(item.fetched_at, int | float) and math.isfinite(item.fetched_at)
                and item.fetched_at > 0):
            report.skipped.append((domain, f"bad fetch time {item.fetched_at!r}"))
            continue
        when = float(item.fetched_at)
        capped = when > moment
        if capped:
            # A fetch "in the future" would stretch the policy past max_age from now
            # (ts = 1e10 expires in 2286): taken as fetched now.
            when = moment
        fetched = datetime.fromtimestamp(when, UTC)
        cached = CachedMtaStsPolicy(policy, fetched, policy_id)
        if cached.expires_at.timestamp() <= moment:
            report.expired.append(domain)
            continue
        entry = await store.get(POLICY_NAMESPACE, domain)
        if entry is not None:
            try:
                held = decode_state(domain, entry.value).cached
            except TlsPolicyError:
                held = None
            if held is not None and held.fetched_at >= fetched:
                report.kept.append(domain)
                continue
        state = StsState(domain, "policy", cached, FetchOutcome.OK,
                         f"{IMPORTED} {item.source}", policy_id,
                         moment, 0, None)
        await store.set(POLICY_NAMESPACE, domain, dumps_json(encode_state(state)),
                        expires_at=expiry(state))
        report.imported.append(domain)
        if capped:
            report.capped.append((domain, f"fetch time {item.fetched_at!r} is in the future; "
                                          "imported as fetched now"))
    return report


def read_postfix_tlspol(path: str | Path) -> list[ImportedPolicy | tuple[str, str]]:
    """The enforce MTA-STS policies of a postfix-tlspol cache file (``cache-file``);
    entries without one (DANE only, testing, no policy) are passed over."""
    where = Path(path)
    try:
        with gzip.open(where, "rb") as stream:
            data = stream.read(MAX_TLSPOL_BYTES + 1)
    except FileNotFoundError:
        raise CacheImportError(f"{where}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise CacheImportError(f"{where}: not a postfix-tlspol cache file (not gzip: "
                               f"{exc})") from None
    if len(data) > MAX_TLSPOL_BYTES:
        raise CacheImportError(f"{where}: more than {MAX_TLSPOL_BYTES} bytes uncompressed")
    try:
        values = read_gob(data)
    except GobError as exc:
        raise CacheImportError(f"{where}: not a postfix-tlspol cache file: {exc}") from None
    if len(values) != 1 or not isinstance(values[0], dict):
        raise CacheImportError(f"{where}: not a postfix-tlspol cache file (expected one map)")
    found: list[ImportedPolicy | tuple[str, str]] = []
    source = f"postfix-tlspol {where}"
    for domain, entry in values[0].items():
        name = str(domain)
        branch = entry.get("MtaSts") if isinstance(entry, dict) else None
        if not isinstance(branch, dict) or not str(branch.get("Policy", "")).startswith(
                "secure "):
            continue
        try:
            lines = _POLICY_STRING.findall(str(branch.get("Report", "")))
            if not lines:
                raise ValueError("no policy lines in Report")
            fetched = go_time(branch["ExpiresAt"]).timestamp() - int(branch.get("TTL", 0))
            found.append(ImportedPolicy(name, "".join(f"{line}\r\n" for line in lines),
                                        fetched, None, source))
        except _ROW_ERRORS as exc:
            found.append((name, f"unreadable entry: {exc}"))
    return found
