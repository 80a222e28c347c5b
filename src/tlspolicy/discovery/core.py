"""The discovery service: DNS + MTA-STS + TLS-RPT fetching and caching -> Destination."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from ..names import normalise_domain
from ..policies import ststate
from ..policies.dane import TlsaLookup, TlsaLookupStatus
from ..policies.destination import Destination
from ..policies.mtasts import (
    FetchOutcome,
    policy_in_force,
)
from ..policies.ststate import aware, needs_check
from ..stores import (
    NOT_READ,
    SqliteStore,
    Store,
    StoreEntry,
    StoreError,
    StoreUnavailableError,
    acquire_get,
    dumps_json,
    get_now,
    redis_with_mirror,
    set_release,
)
from .backoff import FailureBackoff, FailureLog
from .check import check
from .dane import lookup_tlsa
from .dns import DnsAnswer, DnsClient, check_resolv_conf, is_loopback
from .https import make_ssl_context
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
from .records import mx_lookup, next_hop, tlsrpt_record
from .stscache import (
    POLICY_NAMESPACE,
    ScheduleLimits,
    StateDecoder,
    encode_state,
    mirror_enforce_policies,
    stored_schedule,
    stored_states,
)
from .trust import OUTCOME_LOGGER, ResolverTrust

__all__ = ["OUTCOME_LOGGER", "POLICY_NAMESPACE", "Discovery", "redis_cache"]

_log = logging.getLogger("tlspolicy.discovery")
_outcome_log = logging.getLogger(OUTCOME_LOGGER)
#: Background policy checks in flight at most (see Discovery.max_background_checks): as
#: many as the DNS client lets queries run at once, past which a check would only wait.
MAX_BACKGROUND_CHECKS: Final = 256
#: Domains whose latest cache read failed that a :class:`Discovery` keeps (the oldest
#: go first).
MAX_UNREADABLE: Final = 100_000


class Discovery(ResolverTrust):
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
        # Domains whose latest cache read failed (the store is down): see sts_state.  The
        # most recent failures are kept, the oldest dropped past MAX_UNREADABLE.
        self._unreadable: OrderedDict[str, None] = OrderedDict()
        self._schedule = ScheduleLimits.of(config)
        self._decode = StateDecoder(self._share, clock, self._schedule)
        self._background: set[asyncio.Task[Any]] = set()
        #: Checks nobody waits for (a due check of a policy in force, a proactive refresh)
        #: in flight at most; past it a lookup answers with the policy in force and leaves
        #: the check to a later lookup, so that a burst cannot pile up tasks (each holding
        #: its frames, store and DNS state) faster than they finish.
        self.max_background_checks = MAX_BACKGROUND_CHECKS
        #: Due checks not started because that many were in flight, since start.
        self.checks_deferred = 0
        self._room: asyncio.Event | None = None
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
        check_resolv_conf(self.config.resolv_conf, self.config.resolver,
                          self.config.resolver_port)
        return trusted

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
        self.dns.close()
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
        return self._mx_from(name, await self.dns.query(name, "MX"))

    def _mx_from(self, name: str, answer: DnsAnswer) -> MxLookup:
        # Reused while it comes from the very same cached answer.
        memo = self._mx_memo.get(name)
        if memo is not None and memo[0] is answer:
            return memo[1]
        lookup = mx_lookup(name, answer)
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
        return self._mx_from(name, answer), answer.expires_at

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
        if state is not None and not needs_check(state, self._clock()):
            self._memory.touch(name)
            self.observer.cache_lookup("hit")
            return state
        return None

    def sts_stored(self, name: str) -> StsState | None:
        """:meth:`sts_state` without waiting, for a state not held: read from the store
        if it can be at once (:func:`~tlspolicy.stores.get_now`), and then held, when it
        needs no check or its policy is in force meanwhile (the check then starts in the
        background, as :meth:`sts_state` starts it); else ``None``."""
        entry = get_now(self.store, POLICY_NAMESPACE, name)
        if entry is NOT_READ or entry is None:
            return None
        try:
            state = self._decode(name, entry.value)
        except StoreError:
            return None  # corrupt: the awaited read reports it, once
        self._remember(name, state)  # as the most recently used
        now = self._clock()
        if not needs_check(state, now):
            self.observer.cache_lookup("hit")
            return state
        self.failure_log.tick(now)
        return state if self._in_force_meanwhile(name, state, now) else None

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
        lookup = await lookup_tlsa(self.dns, name, port, used_answers)
        if len(self._tlsa_memo) > 100_000:
            self._tlsa_memo.clear()
        self._tlsa_memo[(name, port)] = (tuple(used_answers), lookup)
        return lookup

    async def tlsrpt(self, domain: str) -> TlsRptRecord:
        """The ``_smtp._tls`` TXT record: exactly one ``v=TLSRPTv1`` record, else none."""
        name = normalise_domain(domain)
        return tlsrpt_record(await self.dns.query(f"_smtp._tls.{name}", "TXT"))

    # ----------------------------------------------------------------- MTA-STS

    async def _load(self, domain: str, timeout: float | None = None) -> StsState | None:
        # With ``timeout``: a read not done by then is unreadable (unknown), as a failed
        # one is, and the caller keeps what it holds.
        entry: StoreEntry | StoreError | None
        try:
            async with asyncio.timeout(timeout):
                entry = await self.store.get(POLICY_NAMESPACE, domain)
        except TimeoutError:
            entry = StoreUnavailableError(f"no answer within {timeout:g} s")
        except StoreError as exc:
            entry = exc
        if isinstance(entry, StoreError):
            self._unreadable_entry(domain, entry)
            return None
        return self._decoded(domain, entry)

    def _unreadable_entry(self, domain: str, exc: StoreError) -> None:
        _log.warning("MTA-STS cache read for %s failed: %s", domain, exc)
        self._unreadable[domain] = None
        self._unreadable.move_to_end(domain)
        if len(self._unreadable) > MAX_UNREADABLE:
            self._unreadable.popitem(last=False)

    def _decoded(self, domain: str, entry: StoreEntry | None) -> StsState | None:
        """The state in an entry read from the store (``None``: none stored, or corrupt)."""
        self._unreadable.pop(domain, None)
        try:
            return None if entry is None else self._decode(domain, entry.value)
        except StoreError as exc:
            self._unreadable_entry(domain, exc)
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

    async def _save(self, state: StsState, lock: str | None = None) -> bool:
        # With ``lock``: this process's lock of that name is given back with the write.
        # Returns whether the state was written.
        value = dumps_json(encode_state(state))
        try:
            if lock is None:
                await self.store.set(POLICY_NAMESPACE, state.domain, value,
                                     expires_at=ststate.expiry(state))
            else:
                await set_release(self.store, POLICY_NAMESPACE, state.domain, value,
                                  expires_at=ststate.expiry(state), name=lock,
                                  owner=self._owner)
        except StoreError as exc:
            _log.warning("MTA-STS cache write for %s failed: %s", state.domain, exc)
            return False
        return True

    def forget_without_policy(self) -> int:
        """Drop what this process holds for every domain without an MTA-STS policy in
        force, so that the next lookup reads the store again (a reload after
        ``import-cache`` wrote policies into it); returns how many were dropped.  Held
        policies stay: the store never holds an older one for the same domain."""
        return self._memory.forget_without_policy(aware(self._clock()))

    async def sts_state(self, domain: str, *, wait: float | None = None) -> StsState:
        """The MTA-STS state to use now, refreshing as SEMANTICS 10 says.

        With an unexpired policy held, the answer is immediate and any due
        refresh runs in the background.  With none, waits up to ``wait``
        (``config.first_wait``) for the fetch, then answers ``"pending"``.  The
        store's read counts in that wait: one that does not finish in it leaves the
        state held (if any) in force, else the state is ``"unreadable"`` (unknown),
        never "no policy" (SEMANTICS 10, Outages).
        """
        name = normalise_domain(domain)
        now = self._clock()
        self.failure_log.tick(now)
        timeout = self.config.first_wait if wait is None else wait
        ends = time.monotonic() + timeout
        state = self._memory.get(name)
        if state is None or needs_check(state, now):
            stored = await self._load(name, timeout)
            if stored is not None:
                state = stored
                self._remember(name, stored)
        if state is not None and not needs_check(state, now):
            self._memory.touch(name)
            self.observer.cache_lookup("hit")
            return state
        joined = name in self._refreshing
        if state is not None and self._in_force_meanwhile(name, state, now):
            return state
        task = self._refresh_task(name)
        self.observer.cache_lookup("miss")
        if joined:
            self.observer.single_flight_wait("process")
        done, _ = await asyncio.wait({task}, timeout=max(0.0, ends - time.monotonic()))
        if done:
            return task.result()
        if state is not None:
            return state
        return ststate.not_fetched(name, now, unreadable=name in self._unreadable,
                                   timeout=timeout)

    def _in_force_meanwhile(self, name: str, state: StsState, now: float) -> bool:
        # A state due for a check whose policy is in force: nobody waits for the check,
        # the policy is the answer meanwhile (SEMANTICS 10), so at the bound the check
        # waits for a later lookup.
        if policy_in_force(state.cached, aware(now)) is None:
            return False
        if name in self._refreshing or self.background_room():
            self._refresh_task(name)
        else:
            self.checks_deferred += 1
        self.observer.cache_lookup("stale")
        return True

    def background_room(self) -> bool:
        """Whether another background check may start now (fewer than
        :attr:`max_background_checks` in flight)."""
        return len(self._refreshing) < self.max_background_checks

    async def wait_background_room(self) -> None:
        """Wait until another background check may start (:meth:`background_room`)."""
        while not self.background_room() and self._refreshing:
            # Set by the next check to finish (see _checked): one wait, not one callback
            # on every check in flight.
            room = self._room
            if room is None:
                room = self._room = asyncio.Event()
            await room.wait()

    def _checked(self, domain: str) -> None:
        self._refreshing.pop(domain, None)
        room = self._room
        if room is not None and self.background_room():
            self._room = None
            room.set()

    def refresh_if_due(self, domain: str, *, ahead: float = 0.0) -> bool:
        """Start a background refresh of ``domain``'s MTA-STS state when its next check
        falls within ``ahead`` seconds (a failure's retry: once it is due), or when neither
        this process nor the store (if it can be read at once) holds one; never waits.

        For proactive refresh of the domains a server answers for, so that queries
        find a fresh policy rather than start its refresh.  Returns whether a refresh
        runs now (started here or already running).
        """
        name = normalise_domain(domain)
        if name in self._refreshing:
            return True
        state = self._memory.get(name)
        # Not held: the stored schedule, not a refresh that locks and decodes to see it.
        entry = get_now(self.store, POLICY_NAMESPACE, name) if state is None else None
        when = (state.next_check, state.retry_at) if state is not None else (
            None if entry is NOT_READ or entry is None else
            stored_schedule(entry.value, self._clock(), self._schedule))
        if when is not None and not ststate.due_within(*when, self._clock(), ahead):
            return False
        self._refresh_task(name)
        return True

    def _refresh_task(self, domain: str, *, force: bool = False) -> asyncio.Task[StsState]:
        task = self._refreshing.get(domain)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._refresh(domain, force))
            self._refreshing[domain] = task
            task.add_done_callback(lambda t: self._checked(domain))
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
        # Two store operations in the common case: take the lock and read the entry in
        # one, write the result and give the lock back in one.
        lock = f"mta-sts.{domain}"
        lock_ttl = self.config.refresh_lock_ttl
        deadline = time.monotonic() + lock_ttl
        held = False
        waited = False
        old: StsState | None = None
        read = False
        try:
            while True:
                try:
                    held, entry = await acquire_get(self.store, lock, self._owner,
                                                    lock_ttl, POLICY_NAMESPACE,
                                                    domain)
                except StoreError as exc:
                    _log.warning("single-flight lock for %s unavailable: %s", domain, exc)
                    break
                stored = self._decoded(domain, entry)
                if held:
                    old, read = stored, True
                    break
                if stored is not None and not needs_check(stored, self._clock()):
                    # Another process fetched this domain meanwhile: use its result.
                    self._keep(domain, stored)
                    return stored
                if not waited:
                    waited = True
                    self.observer.single_flight_wait("store")
                if time.monotonic() > deadline:
                    break
                # Another process is fetching this domain: use its result when it lands.
                await asyncio.sleep(0.05)
            if not read:
                old = await self._load(domain)
            if old is None:
                old = self._memory.get(domain)
            if not force and old is not None and not needs_check(old, self._clock()):
                self._keep(domain, old)
                return old
            state = await check(self, domain, old, force)
            self._remember(domain, state)
            if await self._save(state, lock if held else None) and state.retry_at is not None:
                # A failure, held and stored: its retry holds the next check (the TXT
                # lookup, the warning) back, so the DNS client's entry for that lookup
                # and the warning's window, which end no later, would only hold back the
                # same again, for some 300 bytes a domain in an outage.
                self.dns.release(f"_mta-sts.{domain}", "TXT", state.retry_at)
                self.failure_log.release(domain, state.retry_at)
            held = False  # given back with the write
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
        now = aware(self._clock())
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
        return next_hop(domain)

    # ---------------------------------------------------- cache management (CLI)

    async def cache_entry(self, domain: str) -> StsState | None:
        """The stored MTA-STS state of ``domain`` (for ``cache show``), or ``None``."""
        return await self._load(normalise_domain(domain))

    async def cache_entries(self) -> list[StsState]:
        """Every stored MTA-STS state, by domain."""
        return await stored_states(self.store.entries(POLICY_NAMESPACE), self._clock(),
                                   self._schedule)

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

    Unexpired enforce MTA-STS policies, written here or read from Redis, are mirrored into
    ``local_path`` and served from it while Redis is down or has no usable entry for them
    (SEMANTICS 10); Redis with any eviction policy but ``noeviction`` is refused.  A Redis
    that is down at start is not an error (the mirror serves, and the eviction check runs
    once it answers).  Needs the ``tlspolicy[redis]`` extra.
    """
    return await redis_with_mirror(url, local_path, mirror_enforce_policies, prefix=prefix,
                                   timeout=timeout, retry_after=retry_after, clock=clock)
