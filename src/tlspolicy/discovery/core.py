"""The discovery service: DNS + MTA-STS + TLS-RPT fetching and caching -> Destination."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import attrs

from ..errors import PolicyInputError, ResolutionError
from ..names import normalise_domain
from ..policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
from ..policies.destination import Destination
from ..policies.mtasts import (
    CachedMtaStsPolicy,
    FetchOutcome,
    MtaStsTxtRecordError,
    StsMode,
    parse_policy,
    policy_in_force,
    select_txt_record,
)
from ..stores import MirroredStore, SqliteStore, Store, StoreError, dumps_json, loads_json
from ..stores.redis import RedisStore
from .backoff import FailureBackoff, FailureLog
from .dns import DnsAnswer, DnsClient, DnsStatus, is_loopback
from .https import fetch_policy, make_client, make_ssl_context
from .memory import Sharing, StateMemory
from .models import (
    _NO_OBSERVER,
    MAX_STATES_IN_MEMORY,
    DiscoveryConfig,
    DiscoveryError,
    DiscoveryObserver,
    MxLookup,
    StsState,
    TlsRptRecord,
)

__all__ = ["OUTCOME_LOGGER", "POLICY_NAMESPACE", "Discovery", "mirror_enforce_policies",
           "redis_cache"]

_log = logging.getLogger("tlspolicy.discovery")
#: The logger of lines that restate a lookup's result (the resolver's trust, a failed
#: MTA-STS fetch): a caller that shows those results itself can leave it out.
OUTCOME_LOGGER: Final = "tlspolicy.discovery.outcome"
_outcome_log = logging.getLogger(OUTCOME_LOGGER)

_STS_RE: Final = re.compile(r"v=STSv1[ \t]*;")
_RPT_RE: Final = re.compile(r"v=TLSRPTv1[ \t]*(;|$)")
_SMART_HOST_RE: Final = re.compile(r"\[([^\[\]]+)\](?::([0-9]{1,5}))?")
#: Cap on the TXT strings of one record we look at (a TXT RRset can be ~64 KiB).
_MAX_TXT: Final = 4096


#: Store namespace of the MTA-STS cache (one entry per policy domain).
POLICY_NAMESPACE: Final = "mta-sts"
_RECORD_VERSION: Final = 1


def _aware(seconds: float) -> Any:
    return datetime.fromtimestamp(seconds, UTC)


def _encode(state: StsState) -> dict[str, Any]:
    cached = state.cached
    return {
        "v": _RECORD_VERSION,
        "state": state.state,
        "policy": None if cached is None else cached.policy.render(),
        "fetched_at": None if cached is None else cached.fetched_at.timestamp(),
        "policy_id": None if cached is None else cached.policy_id,
        "enforce": cached is not None and cached.policy.mode is StsMode.ENFORCE,
        "outcome": state.outcome.value,
        "detail": state.detail[:500],
        "txt_id": state.txt_id,
        "next_check": state.next_check,
        "failures": state.failures,
        "retry_at": state.retry_at,
    }


def _decode(domain: str, data: bytes, share: Sharing | None = None) -> StsState:
    """The state stored for ``domain``; with ``share``, its policy and strings are those
    of equal states already held (see :class:`~tlspolicy.discovery.memory.Sharing`)."""
    value = loads_json(data)
    try:
        if not isinstance(value, dict) or value.get("v") != _RECORD_VERSION:
            raise ValueError("unknown record version")
        cached = None
        state, detail = str(value["state"]), str(value["detail"])
        policy_id, txt_id = value["policy_id"], value["txt_id"]
        if share is not None:
            state, detail = share.text(state), share.text(detail)
            policy_id = share.optional(policy_id)
            txt_id = policy_id if txt_id == policy_id else share.optional(txt_id)
        if value["policy"] is not None:
            policy = parse_policy(value["policy"])
            if share is not None:
                policy = share.policy(policy)
            cached = CachedMtaStsPolicy(policy, _aware(float(value["fetched_at"])), policy_id)
        return StsState(domain, state, cached, FetchOutcome(value["outcome"]), detail, txt_id,
                        float(value["next_check"]), int(value["failures"]),
                        None if value["retry_at"] is None else float(value["retry_at"]))
    except (KeyError, TypeError, ValueError, PolicyInputError) as exc:
        raise StoreError(f"MTA-STS cache entry for {domain} is corrupt: {exc}") from None


def _expiry(state: StsState) -> float:
    """Keep the entry while anything in it is still valid."""
    ends = [state.next_check]
    if state.cached is not None:
        ends.append(state.cached.expires_at.timestamp())
    if state.retry_at is not None:
        ends.append(state.retry_at)
    return max(ends)


def mirror_enforce_policies(namespace: str, key: str, value: bytes) -> bool:
    """The ``mirror_when`` for :class:`~tlspolicy.stores.MirroredStore`: unexpired enforce
    MTA-STS policies go to the local mirror."""
    return namespace == POLICY_NAMESPACE and b'"enforce":true' in value


def _txt_strings(answer: DnsAnswer) -> list[str]:
    texts = []
    for rdata in answer.records:
        raw = b"".join(rdata.strings)[:_MAX_TXT]
        texts.append(raw.decode("utf-8", errors="replace"))
    return texts


class Discovery:
    """Fetches and caches what :class:`~tlspolicy.Destination` needs, for a Python MTA
    or a server.

    Use it as ``async with Discovery(config, store=...) as d:`` (or call
    :meth:`start` and :meth:`close`), then ``await d.destination(domain, mx)``.
    ``store`` defaults to a :class:`~tlspolicy.stores.SqliteStore` at
    ``config.cache_path``, closed by :meth:`close`; a store passed in is closed only
    with ``close_store=True``.  ``clock`` (seconds since the epoch) is for tests;
    ``observer`` (a :class:`DiscoveryObserver`) is told about cache lookups, fetches
    and single-flight waits, e.g. to feed metrics.
    """

    def __init__(self, config: DiscoveryConfig | None = None, *, store: Store | None = None,
                 close_store: bool = False,
                 clock: Callable[[], float] = time.time,
                 observer: DiscoveryObserver | None = None) -> None:
        self.config = config = config if config is not None else DiscoveryConfig()
        self._clock = clock
        self.observer = observer if observer is not None else _NO_OBSERVER
        self._own_store = store is None or close_store
        if store is None:
            Path(config.cache_path).parent.mkdir(parents=True, exist_ok=True)
            store = SqliteStore(config.cache_path, clock=clock)
        self.store = store
        loopback = is_loopback(config.resolver)
        if not loopback and not config.resolver_trusted:
            try:
                ipaddress.ip_address(config.resolver)
            except ValueError:
                raise DiscoveryError(
                    f"resolver {config.resolver!r} is not an IP address") from None
        self._resolver_vouched = loopback or config.resolver_trusted
        #: Failure warnings: one line per domain per backoff window, a summary per minute.
        self.failure_log = FailureLog(_outcome_log)
        self.dns = DnsClient(config.resolver, config.resolver_port, timeout=config.dns_timeout,
                             max_ttl=config.max_dns_ttl, trusted=False, clock=clock,
                             backoff=FailureBackoff(config.dns_backoff_initial,
                                                    config.dns_backoff_max),
                             on_suppressed=self._dns_suppressed)
        self.dnssec = False
        self.dnssec_detail = "not probed yet (call start())"
        #: Bumped whenever the resolver's trust changes (answers keyed by it go stale).
        self.trust_epoch = 0
        self._probed = 0
        self._ssl = make_ssl_context(config.ca_file)
        # One HTTPS client for every fetch (made at the first), over the one context.
        self._http: Any = None
        self._owner = uuid.uuid4().hex
        #: MTA-STS states held in memory (a bounded LRU; the store keeps them all).
        self._memory = StateMemory(config.memory_cache_size)
        self._share = Sharing()
        # Derived lookups, reused while they come from the very same cached answers.
        self._mx_memo: dict[str, tuple[DnsAnswer, MxLookup]] = {}
        self._tlsa_memo: dict[tuple[str, int], tuple[tuple[DnsAnswer, ...], TlsaLookup]] = {}
        self._refreshing: dict[str, asyncio.Task[StsState]] = {}
        # Domains whose latest cache read failed (the store is down): see sts_state.
        self._unreadable: set[str] = set()
        self._background: set[asyncio.Task[Any]] = set()
        #: Policy fetches over HTTPS started by this instance, per domain.
        self.fetches: dict[str, int] = {}

    def _dns_suppressed(self) -> None:
        self.observer.dns_lookup_suppressed()
        self.failure_log.count_suppressed(self._clock())

    async def __aenter__(self) -> Discovery:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ start

    async def start(self) -> bool:
        """Probe the resolver for AD on ``probe_name``; DANE inputs are trusted only once
        it passes.

        Returns whether DNSSEC answers are trusted.  A failed probe is not final: while
        the resolver is not trusted DANE inputs count as unknown (never insecure), and
        :meth:`watch_trust` probes again with a bounded backoff (SEMANTICS 10).
        """
        trusted = await self.probe()
        self._check_resolv_conf()
        return trusted

    async def probe(self) -> bool:
        """Ask the resolver once whether it validates; update :attr:`dnssec` and, on a
        change, :attr:`trust_epoch` (answers derived under the old trust are dropped).
        Logged once per change; the observer is told every result."""
        config = self.config
        if not self._resolver_vouched:
            detail = (f"resolver {config.resolver} is not on loopback and not marked "
                      "trusted: DNSSEC ignored, DANE off (a server counts DANE inputs as "
                      "unknown)")
            self._set_trust(False, detail)
            return False
        self.dns.trusted = True
        answer = await self.dns.probe(config.probe_name)
        trusted = answer.status is not DnsStatus.FAILED and answer.secure
        if trusted:
            detail = f"resolver {config.resolver}:{config.resolver_port} validates"
        else:
            self.dns.trusted = False
            detail = (f"resolver {config.resolver}:{config.resolver_port} did not set AD for "
                      f"{config.probe_name!r} ({answer.detail or answer.status.value}): "
                      "DNSSEC ignored, DANE off until it validates (a server counts DANE "
                      "inputs as unknown meanwhile)")
        self._set_trust(trusted, detail)
        return trusted

    def _set_trust(self, trusted: bool, detail: str) -> None:
        changed = trusted != self.dnssec or self._probed == 0
        self.dnssec = trusted
        self.dns.trusted = trusted
        self.dnssec_detail = detail
        self._probed += 1
        self.observer.resolver_trust(trusted)
        if not changed:
            return
        if self._probed > 1:
            # Everything derived from answers judged under the old trust goes.
            self.dns.forget()
            self._mx_memo.clear()
            self._tlsa_memo.clear()
        self.trust_epoch += 1
        if trusted:
            _outcome_log.info("DNSSEC: %s", detail)
        else:
            _outcome_log.error("DNSSEC: %s", detail)

    async def watch_trust(self) -> None:
        """Probe the resolver forever: while it is not trusted, after a backoff that
        doubles from ``probe_backoff_initial`` up to ``probe_backoff_max`` seconds; while
        it is, every ``probe_interval`` seconds, so that a resolver that stops validating
        is noticed.  Never raises for what the resolver does."""
        config = self.config
        wait = config.probe_backoff_initial
        while True:
            if self.dnssec:
                await asyncio.sleep(config.probe_interval)
                wait = config.probe_backoff_initial
            else:
                await asyncio.sleep(wait)
                wait = min(wait * 2, config.probe_backoff_max)
            try:
                await self.probe()
            except Exception:  # a probe must never end the watch
                _log.exception("DNSSEC probe failed unexpectedly")

    def _check_resolv_conf(self) -> None:
        path = self.config.resolv_conf
        if path is None:
            return
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            return
        servers = [line.split()[1] for line in text.splitlines()
                   if line.startswith("nameserver") and len(line.split()) > 1]
        if self.config.resolver not in servers or self.config.resolver_port != 53:
            _log.warning("discovery resolver %s:%d is not the one in %s (%s): Postfix may see "
                         "different DNSSEC answers", self.config.resolver,
                         self.config.resolver_port, path, ", ".join(servers) or "none")

    async def close(self) -> None:
        """Cancel background fetches and close the store if discovery opened it."""
        for task in list(self._background) + list(self._refreshing.values()):
            task.cancel()
        for task in list(self._background) + list(self._refreshing.values()):
            with contextlib.suppress(BaseException):
                await task
        for query in self.dns.cancel_in_flight():
            with contextlib.suppress(BaseException):
                await query
        self.failure_log.flush(self._clock())  # what was held back is still said
        if self._http is not None:
            http, self._http = self._http, None
            with contextlib.suppress(Exception):
                await http.aclose()
        if self._own_store:
            await self.store.close()

    # --------------------------------------------------------------------- DNS

    async def mx(self, domain: str) -> MxLookup:
        """The MX hosts of ``domain`` (SEMANTICS 10: implicit, null, NXDOMAIN)."""
        name = normalise_domain(domain)
        answer = await self.dns.query(name, "MX")
        memo = self._mx_memo.get(name)
        if memo is not None and memo[0] is answer:
            return memo[1]
        lookup = self._mx_lookup(name, answer)
        if len(self._mx_memo) > 100_000:
            self._mx_memo.clear()
        self._mx_memo[name] = (answer, lookup)
        return lookup

    # ------------------------------------------------- cache-only reads (no I/O)

    def mx_cached(self, name: str) -> tuple[MxLookup, float] | None:
        """:meth:`mx` from the DNS cache alone (``name`` already normalised) with when the
        answer runs out (seconds since the epoch), or ``None`` when it is not cached: for a
        server's fast path, which must not wait."""
        answer = self.dns.cached(name, "MX")
        if answer is None:
            return None
        memo = self._mx_memo.get(name)
        if memo is not None and memo[0] is answer:
            return memo[1], answer.expires_at
        lookup = self._mx_lookup(name, answer)
        if len(self._mx_memo) > 100_000:
            self._mx_memo.clear()
        self._mx_memo[name] = (answer, lookup)
        return lookup, answer.expires_at

    def tlsa_cached(self, name: str, port: int = 25) -> tuple[TlsaLookup, float] | None:
        """:meth:`tlsa` from the caches alone (``name`` already normalised) with when the
        first DNS answer it was derived from runs out, or ``None`` when any of them is no
        longer cached."""
        if not self.dnssec:
            return TlsaLookup(TlsaLookupStatus.INSECURE, detail=self.dnssec_detail), math.inf
        memo = self._tlsa_memo.get((name, port))
        if memo is not None and all(self.dns.cached(a.name, a.rdtype) is a for a in memo[0]):
            return memo[1], min((a.expires_at for a in memo[0]), default=math.inf)
        return None

    def sts_held(self, name: str) -> StsState | None:
        """The MTA-STS state this process holds for ``name`` (already normalised), due or
        not, counted as a cache hit when there is one; no I/O."""
        state = self._memory.get(name)
        if state is not None:
            self._memory.touch(name)
            self.observer.cache_lookup("hit")
        return state

    def sts_cached(self, name: str) -> StsState | None:
        """:meth:`sts_state` when this process holds a state not due for a check
        (``name`` already normalised), else ``None``; counted as a cache hit."""
        state = self._memory.get(name)
        if state is not None and not self._needs_check(state, self._clock()):
            self._memory.touch(name)
            self.observer.cache_lookup("hit")
            return state
        return None

    def _mx_lookup(self, name: str, answer: DnsAnswer) -> MxLookup:
        if answer.status is DnsStatus.FAILED:
            return MxLookup("failed", (), False, answer.detail)
        if answer.status is DnsStatus.NXDOMAIN:
            return MxLookup("nxdomain", (), answer.secure, "domain does not exist")
        if answer.status is DnsStatus.NODATA:
            return MxLookup("implicit", (name,), answer.secure, "no MX: the domain itself")
        records = sorted(answer.records, key=lambda r: (r.preference, r.exchange.to_text()))
        hosts: list[str] = []
        for rdata in records:
            host = rdata.exchange.to_text(omit_final_dot=True).lower()
            if host in ("", "."):
                if len(records) == 1:
                    return MxLookup("null", (), answer.secure, "null MX (RFC 7505)")
                continue
            if host not in hosts:
                hosts.append(host)
        return MxLookup("mx", tuple(hosts), answer.secure)

    async def _addresses(self, host: str) -> tuple[DnsAnswer, DnsAnswer]:
        hit_a, hit_aaaa = self.dns.cached(host, "A"), self.dns.cached(host, "AAAA")
        if hit_a is not None and hit_aaaa is not None:
            return hit_a, hit_aaaa  # the cache-hit path: no tasks
        a, aaaa = await asyncio.gather(self.dns.query(host, "A"), self.dns.query(host, "AAAA"))
        return a, aaaa

    async def tlsa(self, host: str, port: int = 25) -> TlsaLookup:
        """The TLSA lookup of one MX host (RFC 7672 section 2.2, SEMANTICS 10).

        The address records must be secure; for a secure CNAME ``host`` -> h',
        ``_port._tcp.h'`` is tried first, then ``_port._tcp.host`` on a secure
        denial.  ``base_domain`` is the name whose TLSA records were used.
        """
        if not self.dnssec:
            return TlsaLookup(TlsaLookupStatus.INSECURE, detail=self.dnssec_detail)
        name = normalise_domain(host)
        memo = self._tlsa_memo.get((name, port))
        if memo is not None:
            used = memo[0]
            if all(self.dns.cached(a.name, a.rdtype) is a for a in used):
                return memo[1]
        used_answers: list[DnsAnswer] = []
        lookup = await self._tlsa(name, port, used_answers)
        if len(self._tlsa_memo) > 100_000:
            self._tlsa_memo.clear()
        self._tlsa_memo[(name, port)] = (tuple(used_answers), lookup)
        return lookup

    async def _tlsa(self, name: str, port: int, used: list[DnsAnswer]) -> TlsaLookup:
        answers = await self._addresses(name)
        used.extend(answers)
        found = [a for a in answers if a.status is DnsStatus.RECORDS]
        failed = [a for a in answers if a.status is DnsStatus.FAILED]
        if not found:
            if failed:
                bogus = any(a.bogus for a in failed)
                return TlsaLookup(TlsaLookupStatus.BOGUS if bogus else TlsaLookupStatus.FAILED,
                                  detail="address lookup failed: " + failed[0].detail)
            # No address at all: nothing to connect to, so nothing for DANE to protect.
            return TlsaLookup(TlsaLookupStatus.INSECURE if not all(a.secure for a in answers)
                              else TlsaLookupStatus.NODATA, base_domain=name,
                              detail=f"{name} has no address")
        if not all(a.secure for a in answers if a.status is not DnsStatus.FAILED):
            return TlsaLookup(TlsaLookupStatus.INSECURE, detail=f"address of {name} not secure")
        target = found[0].canonical or name
        candidates = [target, name] if target != name else [name]
        last: TlsaLookup | None = None
        for base in candidates:
            answer = await self.dns.query(f"_{port}._tcp.{base}", "TLSA")
            used.append(answer)
            if answer.status is DnsStatus.FAILED:
                return TlsaLookup(TlsaLookupStatus.BOGUS if answer.bogus
                                  else TlsaLookupStatus.FAILED, base_domain=base,
                                  detail=answer.detail)
            if not answer.secure:
                return TlsaLookup(TlsaLookupStatus.INSECURE, base_domain=base,
                                  detail=f"TLSA answer for {base} not secure")
            if answer.status is DnsStatus.RECORDS:
                try:
                    records = tuple(TlsaRecord(r.usage, r.selector, r.mtype, bytes(r.cert))
                                    for r in answer.records)
                except PolicyInputError as exc:
                    return TlsaLookup(TlsaLookupStatus.FAILED, base_domain=base,
                                      detail=f"malformed TLSA: {exc}")
                names = tuple(dict.fromkeys((base, target, name)))
                return TlsaLookup(TlsaLookupStatus.RECORDS, records, base_domain=base,
                                  detail=f"reference names {', '.join(names)}",
                                  reference_names=names[1:])
            status = (TlsaLookupStatus.NXDOMAIN if answer.status is DnsStatus.NXDOMAIN
                      else TlsaLookupStatus.NODATA)
            last = TlsaLookup(status, base_domain=name, detail=f"no TLSA at {base}")
        assert last is not None
        return last

    async def tlsrpt(self, domain: str) -> TlsRptRecord:
        """The ``_smtp._tls`` TXT record: exactly one ``v=TLSRPTv1`` record, else none."""
        name = normalise_domain(domain)
        answer = await self.dns.query(f"_smtp._tls.{name}", "TXT")
        if answer.status is DnsStatus.FAILED:
            return TlsRptRecord(None, (), answer.detail, failed=True)
        records = [t for t in _txt_strings(answer) if _RPT_RE.match(t)]
        if len(records) != 1:
            return TlsRptRecord(None, (), f"{len(records)} v=TLSRPTv1 records (need exactly 1)")
        fields = dict(part.strip().partition("=")[::2] for part in records[0].split(";")
                      if "=" in part)
        rua = tuple(u.strip() for u in fields.get("rua", "").split(",") if u.strip())
        return TlsRptRecord(records[0], rua)

    # ----------------------------------------------------------------- MTA-STS

    def _needs_check(self, state: StsState, now: float) -> bool:
        return now >= state.next_check

    async def _load(self, domain: str) -> StsState | None:
        try:
            entry = await self.store.get(POLICY_NAMESPACE, domain)
            self._unreadable.discard(domain)
            return None if entry is None else _decode(domain, entry.value, self._share)
        except StoreError as exc:
            _log.warning("MTA-STS cache read for %s failed: %s", domain, exc)
            if len(self._unreadable) < 100_000:
                self._unreadable.add(domain)
            return None

    def _remember(self, name: str, state: StsState) -> None:
        # Every next hop asked about lands here: the least recently used go past the
        # limit (the store holds them all the same).
        self._memory.remember(name, state, limit=min(self.config.memory_cache_size,
                                                     MAX_STATES_IN_MEMORY))

    def _keep(self, name: str, state: StsState) -> None:
        # A state read back that needs nothing: it replaces the one held, but one not held
        # (evicted) stays in the store only, so that a proactive refresh pass over many
        # domains does not churn the memory that queries use.
        if name in self._memory:
            self._memory[name] = state

    async def _save(self, state: StsState) -> None:
        try:
            await self.store.set(POLICY_NAMESPACE, state.domain, dumps_json(_encode(state)),
                                 expires_at=_expiry(state))
        except StoreError as exc:
            _log.warning("MTA-STS cache write for %s failed: %s", state.domain, exc)

    def forget_without_policy(self) -> int:
        """Drop what this process holds for every domain without an MTA-STS policy in
        force, so that the next lookup reads the store again (a reload after
        ``import-cache`` wrote policies into it); returns how many were dropped.  Held
        policies stay: the store never holds an older one for the same domain."""
        now = _aware(self._clock())
        memory = self._memory
        names = [n for n, s in memory.items() if policy_in_force(s.cached, now) is None]
        for name in names:
            del memory[name]
        return len(names)

    async def sts_state(self, domain: str, *, wait: float | None = None) -> StsState:
        """The MTA-STS state to use now, refreshing as SEMANTICS 10 says.

        With an unexpired policy held, the answer is immediate and any due
        refresh runs in the background.  With none, waits up to ``wait``
        (``config.first_wait``) for the fetch, then answers ``"pending"``.
        """
        name = normalise_domain(domain)
        now = self._clock()
        self.failure_log.tick(now)
        state = self._memory.get(name)
        if state is None or self._needs_check(state, now):
            stored = await self._load(name)
            if stored is not None:
                state = stored
                self._remember(name, stored)
        if state is not None and not self._needs_check(state, now):
            self._memory.touch(name)
            self.observer.cache_lookup("hit")
            return state
        joined = name in self._refreshing
        task = self._refresh_task(name)
        if state is not None and policy_in_force(state.cached, _aware(now)) is not None:
            self.observer.cache_lookup("stale")
            return state
        self.observer.cache_lookup("miss")
        if joined:
            self.observer.single_flight_wait("process")
        timeout = self.config.first_wait if wait is None else wait
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return task.result()
        if state is not None:
            return state
        if name in self._unreadable:
            # Nothing known: the cache could not be read and no fetch has finished.
            return StsState(name, "unreadable", None, FetchOutcome.OK,
                            "the cache could not be read and the fetch is still running",
                            None, now, 0, None)
        return StsState(name, "pending", None, FetchOutcome.OK,
                        f"first fetch still running after {timeout:g} s", None, now, 0, None)

    def refresh_if_due(self, domain: str, *, ahead: float = 0.0) -> bool:
        """Start a background refresh of ``domain``'s MTA-STS state when this process
        holds none or its next check falls within ``ahead`` seconds; never waits.

        For proactive refresh of the domains a server answers for, so that queries
        find a fresh policy rather than start its refresh.  Returns whether a refresh
        runs now (started here or already running).
        """
        name = normalise_domain(domain)
        if name in self._refreshing:
            return True
        state = self._memory.get(name)
        if state is not None and self._clock() + ahead < state.next_check:
            return False
        self._refresh_task(name)
        return True

    def _refresh_task(self, domain: str, *, force: bool = False) -> asyncio.Task[StsState]:
        task = self._refreshing.get(domain)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(domain, force))
            self._refreshing[domain] = task
            task.add_done_callback(lambda t: self._refreshing.pop(domain, None))
        return task

    async def refresh(self, domain: str) -> StsState:
        """Refresh ``domain``'s MTA-STS state now (TXT and policy), whatever is cached.

        A failure still keeps an unexpired policy.
        """
        name = normalise_domain(domain)
        task = self._refreshing.get(name)
        if task is not None:
            await asyncio.wait({task})
        self.dns.forget(f"_mta-sts.{name}")
        self.dns.forget(f"mta-sts.{name}")
        return await self._refresh_task(name, force=True)

    async def _refresh(self, domain: str, force: bool) -> StsState:
        lock = f"mta-sts.{domain}"
        deadline = time.monotonic() + self.config.lock_ttl
        held = False
        waited = False
        try:
            while True:
                try:
                    held = await self.store.acquire(lock, self._owner, self.config.lock_ttl)
                except StoreError as exc:
                    _log.warning("single-flight lock for %s unavailable: %s", domain, exc)
                    break
                if held:
                    break
                if not waited:
                    waited = True
                    self.observer.single_flight_wait("store")
                # Another process is fetching this domain: use its result when it lands.
                await asyncio.sleep(0.05)
                stored = await self._load(domain)
                if stored is not None and not self._needs_check(stored, self._clock()):
                    self._keep(domain, stored)
                    return stored
                if time.monotonic() > deadline:
                    break
            old = await self._load(domain)
            if old is None:
                old = self._memory.get(domain)
            if not force and old is not None and not self._needs_check(old, self._clock()):
                self._keep(domain, old)
                return old
            state = await self._discover(domain, old, force)
            self._remember(domain, state)
            await self._save(state)
            return state
        except Exception as exc:
            # Nothing a stranger's DNS or server does may escape as a crash; keep the old.
            _log.exception("MTA-STS refresh of %s failed unexpectedly", domain)
            old = self._memory.get(domain)
            return old if old is not None else StsState(
                domain, "failed", None, FetchOutcome.FETCH_ERROR, f"internal error: {exc}",
                None, self._clock() + self.config.backoff_initial, 1, None)
        finally:
            if held:
                with contextlib.suppress(StoreError):
                    await self.store.release(lock, self._owner)

    def _failure(self, domain: str, old: StsState | None, outcome: FetchOutcome, detail: str,
                 txt_id: str | None, now: float) -> StsState:
        failures = (old.failures if old is not None else 0) + 1
        wait = min(self.config.backoff_initial * 2 ** min(failures - 1, 30),
                   self.config.backoff_max)
        cached = old.cached if old is not None else None
        in_force = policy_in_force(cached, _aware(now)) is not None
        if in_force:
            self.failure_log.warn(domain, now, now + wait,
                                  "MTA-STS %s: %s; cached policy kept until it expires",
                                  domain, detail)
        else:
            self.failure_log.warn(domain, now, now + wait, "MTA-STS %s: %s", domain, detail)
        return StsState(domain, "policy" if in_force else "failed", cached, outcome, detail,
                        txt_id if txt_id is not None else (old.txt_id if old else None),
                        now + wait, failures, now + wait)

    async def _discover(self, domain: str, old: StsState | None, force: bool) -> StsState:
        config = self.config
        now = self._clock()
        cached = old.cached if old is not None else None
        in_force = policy_in_force(cached, _aware(now)) is not None
        txt = await self.dns.query(f"_mta-sts.{domain}", "TXT")
        if txt.status is DnsStatus.FAILED:
            self.observer.policy_fetch(FetchOutcome.FETCH_ERROR, None)
            return self._failure(domain, old, FetchOutcome.FETCH_ERROR,
                                 f"_mta-sts TXT lookup failed: {txt.detail}", None, now)
        texts = _txt_strings(txt)
        record = None
        why = (f"{sum(1 for t in texts if _STS_RE.match(t))} v=STSv1 TXT records "
               "(need exactly 1)")
        try:
            record = select_txt_record(texts)
        except MtaStsTxtRecordError as exc:
            why = str(exc)
        if record is None:
            until = min(now + config.no_policy_ttl, max(now, txt.expires_at))
            if in_force and old is not None:
                # A missing TXT record never evicts an unexpired policy (RFC 8461 3.3).
                return attrs.evolve(old, state="policy", next_check=until,
                                    detail=f"TXT record gone ({why}); cached policy kept")
            return StsState(domain, "none", None, FetchOutcome.OK, f"no policy: {why}", None,
                            until, 0, None)
        txt_until = max(now, txt.expires_at)
        if in_force and cached is not None and not force and cached.policy_id == record.id:
            refresh_at = cached.fetched_at.timestamp() + min(
                config.refresh_interval, cached.policy.max_age / 2)
            if now < refresh_at:
                assert old is not None
                return attrs.evolve(old, next_check=min(txt_until, refresh_at),
                                    txt_id=record.id)
        if old is not None and old.retry_at is not None and now < old.retry_at and not force:
            return attrs.evolve(old, next_check=old.retry_at)
        addresses: list[str] = []
        host = f"mta-sts.{domain}"
        a, aaaa = await self._addresses(host)
        for answer in (a, aaaa):
            if answer.status is DnsStatus.RECORDS:
                addresses.extend(r.address for r in answer.records)
        self.fetches[domain] = self.fetches.get(domain, 0) + 1
        if not addresses:
            detail = a.detail or aaaa.detail or f"{host} has no address"
            self.observer.policy_fetch(FetchOutcome.FETCH_ERROR, None)
            return self._failure(domain, old, FetchOutcome.FETCH_ERROR, detail, record.id, now)
        started = time.monotonic()
        if self._http is None:
            self._http = make_client(self._ssl)
        result = await fetch_policy(domain, addresses, port=config.https_port,
                                    context=self._ssl, timeout=config.https_timeout,
                                    client=self._http)
        self.observer.policy_fetch(result.outcome, time.monotonic() - started)
        if result.policy is None:
            return self._failure(domain, old, result.outcome, result.detail, record.id, now)
        # What served this fetch is not asked for again before the state's next check,
        # when the TXT record's TTL has run out anyway (the policy host's addresses: a
        # refresh interval away, or a new id): not worth holding until their TTLs end.
        self.dns.drop(host, "A")
        self.dns.drop(host, "AAAA")
        self.dns.drop(f"_mta-sts.{domain}", "TXT")
        fetched = CachedMtaStsPolicy(self._share.policy(result.policy), _aware(now),
                                     self._share.text(record.id))
        refresh_at = now + min(config.refresh_interval, result.policy.max_age / 2)
        return StsState(domain, "policy", fetched, FetchOutcome.OK, result.detail,
                        fetched.policy_id, min(txt_until, refresh_at), 0, None)

    # ------------------------------------------------------------- destination

    async def destination(self, domain: str, mx_host: str | None = None, *,
                          requiretls: bool = False, tls_required_no: bool = False,
                          tls_broken: bool = False) -> Destination:
        """The :class:`~tlspolicy.Destination` for delivering to ``domain`` via ``mx_host``.

        ``domain`` is a recipient domain or a ``[host]:port`` next hop (a smart
        host is its own policy domain, DANE at ``_port._tcp.host``).  Without
        ``mx_host`` no TLSA lookup is made.  The message flags pass through.
        Raises only :class:`~tlspolicy.TlsPolicyError` subclasses (a bad name).
        """
        flags = {"requiretls": requiretls, "tls_required_no": tls_required_no,
                 "tls_broken": tls_broken}
        policy_domain, port, smart = self._next_hop(domain)
        if smart:
            mx = MxLookup("smarthost", (policy_domain,), False)
            mx_host = mx_host if mx_host is not None else policy_domain
        else:
            mx = await self.mx(policy_domain)
            if mx.kind in ("null", "nxdomain"):
                return Destination(**flags)  # type: ignore[arg-type]
        host = normalise_domain(mx_host) if mx_host is not None else None
        sts = await self.sts_state(policy_domain)
        now = _aware(self._clock())
        tlsa: TlsaLookup | None = None
        mx_dnssec = False
        if host is not None:
            listed = host in mx.hosts
            if smart:
                tlsa = await self.tlsa(host, port)
                mx_dnssec = tlsa.status is not TlsaLookupStatus.INSECURE and (
                    tlsa.status not in (TlsaLookupStatus.FAILED, TlsaLookupStatus.BOGUS))
            elif mx.kind == "failed" and self.dnssec:
                # Whether the MX RRset is secure is unknown: DANE may apply, so fail closed
                # (RFC 7672 section 2.2.1: a failed MX lookup defers the destination).
                tlsa = TlsaLookup(TlsaLookupStatus.FAILED, detail=f"MX lookup failed: {mx.detail}")
            elif mx.secure and listed and self.dnssec:
                mx_dnssec = True
                tlsa = await self.tlsa(host, port)
            else:
                tlsa = TlsaLookup(TlsaLookupStatus.INSECURE, detail=(
                    "MX RRset not secure" if not mx.secure else
                    f"{host} is not an MX host of {policy_domain}" if not listed else
                    self.dnssec_detail))
        return Destination.from_cache(sts.cached, now, fetch=sts.outcome, tlsa=tlsa,
                                      mx_dnssec=mx_dnssec, **flags)

    def _next_hop(self, domain: str) -> tuple[str, int, bool]:
        if not isinstance(domain, str):
            raise ResolutionError(f"domain must be a string, not {type(domain).__name__}")
        match = _SMART_HOST_RE.fullmatch(domain.strip())
        if match is None:
            return normalise_domain(domain), 25, False
        port = int(match.group(2)) if match.group(2) else 25
        if not 0 < port < 65536:
            raise ResolutionError(f"next hop {domain[:100]!r}: port {port} out of range")
        return normalise_domain(match.group(1)), port, True

    # ---------------------------------------------------- cache management (CLI)

    async def cache_entry(self, domain: str) -> StsState | None:
        """The stored MTA-STS state of ``domain`` (for ``cache show``), or ``None``."""
        return await self._load(normalise_domain(domain))

    async def cache_entries(self) -> list[StsState]:
        """Every stored MTA-STS state, by domain."""
        states = []
        async for entry in self.store.entries(POLICY_NAMESPACE):
            try:
                states.append(_decode(entry.key, entry.value))
            except StoreError as exc:
                _log.warning("%s", exc)
        return states

    async def purge(self, domain: str | None = None) -> int:
        """Forget ``domain``'s cached MTA-STS state and DNS answers (all with ``None``)."""
        if domain is None:
            self._memory.clear()
            self._mx_memo.clear()
            self._tlsa_memo.clear()
            self.dns.forget()
            return await self.store.purge(POLICY_NAMESPACE)
        name = normalise_domain(domain)
        self._memory.pop(name, None)
        self._mx_memo.clear()
        self._tlsa_memo.clear()
        self.dns.forget(name)
        return int(await self.store.delete(POLICY_NAMESPACE, name))


async def redis_cache(url: str, local_path: str | Path, *, prefix: str = "tlspolicy:",
                      timeout: float = 2.0, retry_after: float = 5.0,
                      clock: Callable[[], float] = time.time) -> Store:
    """A fleet's discovery store: Redis/Valkey at ``url`` in front of a local SQLite mirror.

    Unexpired enforce MTA-STS policies are mirrored into ``local_path`` and served from it
    while Redis is down (SEMANTICS 10); Redis with an ``allkeys-*`` eviction policy is
    refused.  A Redis that is down at start is not an error (the mirror serves, and the
    eviction check runs once it answers).  Needs the ``tlspolicy[redis]`` extra.
    """
    Path(local_path).parent.mkdir(parents=True, exist_ok=True)
    shared = await RedisStore.connect(url, prefix=prefix, timeout=timeout, require_up=False,
                                      clock=clock)
    return MirroredStore(shared, SqliteStore(local_path, clock=clock),
                         mirror_enforce_policies, retry_after=retry_after)
