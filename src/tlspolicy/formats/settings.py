"""Discovery's settings: the ``[discovery]`` table of a TOML configuration, the flags of
the same names, and the :class:`DiscoveryConfig` they build.

The table configures the I/O layer (resolver, cache, timeouts, the Postfix version
the answers are written for), never a decision, so it is not part of
:class:`~tlspolicy.Config`: the TOML loader checks it (a wrong key or type is a
located error, like any other) and ``serve`` reads it with
:func:`~tlspolicy.formats.loader.read_discovery_table`.

:class:`DiscoverySettings` is the table's one definition: every key with its type, what
it sets, its default and its command-line flag (:class:`Flag`, which the commands build
their options from).  :func:`discovery_settings` is the one rule that fills it: a
command-line flag given explicitly, else the table, else the default.

.. code-block:: toml

    [discovery]
    enabled = true
    resolver = "127.0.0.1"
    cache = "/var/lib/tlspolicy/discovery.sqlite3"
    redis = "redis://127.0.0.1:6379/0"
    answer_deadline = 10
    postfix_version = "3.7.11"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from .._serialise import LONGEST_SETTING, is_setting_time
from ..errors import (
    ConfigError,
    ConfigSyntaxError,
    InvalidValueError,
    Location,
    TlsPolicyError,
)

__all__ = [
    "DEFAULT_ANSWER_DEADLINE",
    "DEFAULT_BACKOFF_INITIAL",
    "DEFAULT_BACKOFF_MAX",
    "DEFAULT_CACHE_PATH",
    "DEFAULT_MEMORY_CACHE_SIZE",
    "DISCOVERY_FLAGS",
    "DISCOVERY_KEYS",
    "MAX_ANSWER_DEADLINE",
    "MAX_STATES_IN_MEMORY",
    "DiscoveryConfig",
    "DiscoveryError",
    "DiscoverySettings",
    "Flag",
    "check_discovery_table",
    "discovery_settings",
    "discovery_table",
]

DEFAULT_CACHE_PATH: Final = "/var/lib/tlspolicy/discovery.sqlite3"
"""Where discovery keeps its SQLite cache unless told otherwise (``cache``, ``--cache``)."""
#: Seconds a lookup is not sent again after its first failure (doubling while it fails).
DEFAULT_BACKOFF_INITIAL: Final = 1.0
#: Longest wait between two attempts of one failing lookup.
DEFAULT_BACKOFF_MAX: Final = 60.0
#: MTA-STS states held in memory by default (the store keeps them all).
DEFAULT_MEMORY_CACHE_SIZE: Final = 10_000
#: Seconds within which every answer is sent (SEMANTICS 11: well under Postfix's 100 s).
DEFAULT_ANSWER_DEADLINE: Final = 10.0
#: The longest answer deadline accepted: Postfix gives up on a map after 100 s.
MAX_ANSWER_DEADLINE: Final = 90.0

#: The largest ``memory_cache_size`` accepted.
_MEMORY_CACHE_CEILING: Final = 1_000_000
#: MTA-STS states held in memory at most, whatever ``memory_cache_size`` says (the
#: store keeps every one, so an evicted domain is read back from it).
MAX_STATES_IN_MEMORY: Final = _MEMORY_CACHE_CEILING


class DiscoveryError(TlsPolicyError):
    """Discovery cannot be set up as configured (bad resolver address, no store)."""


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    # Every such option is a time in seconds; at most ten years, so that the clock plus
    # it is a time the store can hold (a retry past the year 9999 would make every state
    # written with it unreadable, and so fetched again at every lookup).
    if not is_setting_time(value):
        raise DiscoveryError(f"discovery option {attribute.name} must be a positive number "
                             f"of seconds, at most {LONGEST_SETTING:,} (ten years), "
                             f"not {value!r}")


def _port(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    # Ports and the DNS TTL cap: whole numbers from 1 to 65535.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise DiscoveryError(f"discovery option {attribute.name} must be a port, not {value!r}")


#: How many times ``dns_timeout`` a refresh's lookups may take: the ``_mta-sts`` TXT
#: lookup, then the policy host's addresses, each bounded by 2.5 times ``dns_timeout``
#: (see :class:`~tlspolicy.discovery.dns.DnsClient`).
REFRESH_DNS_TIMEOUTS: Final = 5
#: Seconds a refresh's store write may wait (the SQLite store's default busy timeout).
REFRESH_STORE_WAIT: Final = 5.0


def _not_below_initial(instance: Any, attribute: attrs.Attribute[float],
                       value: float) -> None:
    if value < instance.dns_backoff_initial:
        raise DiscoveryError(f"discovery option dns_backoff_max ({value!r}) must not be "
                             f"below dns_backoff_initial ({instance.dns_backoff_initial!r})")


def _cache_size(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not (
            0 < value <= _MEMORY_CACHE_CEILING):
        raise DiscoveryError(f"discovery option {attribute.name} must be a whole number from 1 "
                             f"to {_MEMORY_CACHE_CEILING:,}, not {value!r}")


@attrs.frozen(slots=True)
class DiscoveryConfig:
    """How discovery queries and caches.  Every time is in seconds.

    - ``resolver`` / ``resolver_port``: the validating resolver (loopback, or
      ``resolver_trusted`` for one the operator vouches for); DNSSEC status is its
      AD bit, checked at :meth:`Discovery.start` on ``probe_name``.
    - ``https_port`` and ``ca_file``: 443 and the system store in production;
      tests point them at a loopback server and its CA.
    - ``first_wait``: how long a lookup on a cold cache waits for the policy
      before answering as if there were none (the fetch carries on).
    - ``no_policy_ttl``: how long "no policy" is remembered (never longer than
      the DNS answer that said so).
    - ``refresh_interval``: proactive refresh period; a policy is also
      refreshed once half its ``max_age`` has passed, so refreshes start well
      before expiry.
    - ``backoff_initial`` / ``backoff_max``: waits after consecutive failed
      fetches of one domain (doubling).
    - ``lock_ttl``: the single-flight lock's expiry (a dead holder blocks
      others no longer than this), raised to the longest a refresh may take
      when that is longer (see :attr:`refresh_lock_ttl`).
    - ``probe_backoff_initial`` / ``probe_backoff_max``: waits between probes of a
      resolver that does not validate (doubling, at most a minute by default);
      ``probe_interval``: between probes of one that does.
    - ``dns_backoff_initial`` / ``dns_backoff_max``: how long a failed DNS lookup
      (SERVFAIL, timeout, malformed answer) of one (name, type) is not sent again
      (doubling while it keeps failing); meanwhile the failure is the answer.
    - ``memory_cache_size``: MTA-STS states held in memory (least recently used
      evicted first); the store keeps every state and an evicted one is read back
      from it.
    """

    resolver: str = "127.0.0.1"
    resolver_port: int = attrs.field(default=53, validator=_port)
    resolver_trusted: bool = False
    probe_name: str = "."
    dns_timeout: float = attrs.field(default=3.0, validator=_positive)
    max_dns_ttl: int = attrs.field(default=3600, validator=_port)
    https_port: int = attrs.field(default=443, validator=_port)
    ca_file: str | None = None
    https_timeout: float = attrs.field(default=10.0, validator=_positive)
    first_wait: float = attrs.field(default=5.0, validator=_positive)
    no_policy_ttl: float = attrs.field(default=300.0, validator=_positive)
    refresh_interval: float = attrs.field(default=86400.0, validator=_positive)
    backoff_initial: float = attrs.field(default=60.0, validator=_positive)
    backoff_max: float = attrs.field(default=3600.0, validator=_positive)
    lock_ttl: float = attrs.field(default=30.0, validator=_positive)
    probe_backoff_initial: float = attrs.field(default=1.0, validator=_positive)
    probe_backoff_max: float = attrs.field(default=60.0, validator=_positive)
    probe_interval: float = attrs.field(default=60.0, validator=_positive)
    dns_backoff_initial: float = attrs.field(default=DEFAULT_BACKOFF_INITIAL,
                                             validator=_positive)
    dns_backoff_max: float = attrs.field(default=DEFAULT_BACKOFF_MAX,
                                         validator=[_positive, _not_below_initial])
    memory_cache_size: int = attrs.field(default=DEFAULT_MEMORY_CACHE_SIZE,
                                         validator=_cache_size)
    cache_path: str = DEFAULT_CACHE_PATH
    resolv_conf: str | None = "/etc/resolv.conf"

    @property
    def refresh_lock_ttl(self) -> float:
        """How long a refresh holds the single-flight lock: ``lock_ttl``, or the longest
        a refresh may take when that is longer (the ``_mta-sts`` TXT lookup, then the
        policy host's addresses, each bounded by 2.5 times ``dns_timeout``, then the
        fetch, bounded by ``https_timeout``, then the write that gives the lock back,
        :data:`REFRESH_STORE_WAIT`).  A lock that ran out while its holder was
        still fetching would let another process fetch the same policy meanwhile."""
        return max(self.lock_ttl, REFRESH_DNS_TIMEOUTS * self.dns_timeout + self.https_timeout
                   + REFRESH_STORE_WAIT)


#: A key's type when any number will do (read as a float).
_NUMBER: Final = (int, float)
_CONFIG: Final = DiscoveryConfig()


@attrs.frozen(slots=True)
class Flag:
    """The command-line flag that sets a key of ``[discovery]``, as its help shows it.

    ``dest`` is its destination; ``help`` says what it does, ``{default}`` in it standing
    for the key's default; ``metavar`` names the value it takes (``None`` for a true/false
    key: the flag alone says it).  ``kind`` and ``default`` are the key's, filled in by the
    key that holds the flag.
    """

    dest: str
    help: str
    metavar: str | None = None
    kind: type | tuple[type, ...] = str
    default: Any = None

    @property
    def option(self) -> str:
        """How the flag is spelt: its destination with dashes, after ``--no-`` for a key
        that is true by default (the flag turns it off)."""
        off = "no-" if self.kind is bool and self.default else ""
        return f"--{off}{self.dest.replace('_', '-')}"

    @property
    def shown_help(self) -> str:
        """The help with the key's default in it."""
        return self.help.format(default=self.default)


def _key(default: Any, kind: type | tuple[type, ...], sets: str, *,
         flag: Flag | None = None) -> Any:
    """One key of the table: its default, its type (checked when read), what it sets, and
    the command-line flag that sets the same (``None``: no flag)."""
    if flag is not None:
        flag = attrs.evolve(flag, kind=kind, default=default)
    return attrs.field(default=default,
                       metadata={"kind": kind, "sets": sets, "flag": flag})


@attrs.frozen(slots=True)
class DiscoverySettings:
    """Every key of ``[discovery]`` with its value: from a flag given explicitly, else the
    table, else the default shown here (the defaults of :class:`DiscoveryConfig` for what
    it holds).  Built by :func:`discovery_settings`; :meth:`discovery_config` is what
    discovery runs with.

    ``table`` is what the ``[discovery]`` tables said, key by key as written (a reload
    names the keys that changed in it).
    """

    enabled: bool = _key(False, bool, "answer with discovery (same as --discovery)",
                         flag=Flag("discovery",
                                   "look up MX, TLSA and MTA-STS for every next hop and answer "
                                   "with them (needs the tlspolicy[discovery] extra and the "
                                   "Postfix version)"))
    resolver: str = _key(_CONFIG.resolver, str, "the validating resolver's IP address",
                         flag=Flag("resolver", "the validating DNS resolver to ask (loopback "
                                   "unless --resolver-trusted; default {default})", "ADDRESS"))
    resolver_port: int = _key(_CONFIG.resolver_port, int, "its port",
                              flag=Flag("resolver_port", "its port (default {default})", "PORT"))
    resolver_trusted: bool = _key(_CONFIG.resolver_trusted, bool,
                                  "trust the AD bit of a resolver not on loopback",
                                  flag=Flag("resolver_trusted", "trust the AD bit of a resolver "
                                            "that is not on loopback"))
    probe_name: str = _key(_CONFIG.probe_name, str, "a signed name the resolver must "
                           "validate before DANE inputs are trusted",
                           flag=Flag("probe_name", "a signed name the resolver must validate "
                                     "before DANE inputs are trusted (default {default!r})",
                                     "NAME"))
    probe_backoff_initial: float = _key(
        _CONFIG.probe_backoff_initial, _NUMBER,
        "seconds before the first re-probe of a resolver that does not validate (doubling)")
    probe_backoff_max: float = _key(
        _CONFIG.probe_backoff_max, _NUMBER,
        "longest wait between probes of a resolver that does not validate",
        flag=Flag("probe_backoff_max", "longest wait between probes of a resolver that does "
                  "not validate yet (default {default:g})", "SECONDS"))
    probe_interval: float = _key(_CONFIG.probe_interval, _NUMBER,
                                 "seconds between probes of a resolver that validates")
    dns_backoff_initial: float = _key(
        _CONFIG.dns_backoff_initial, _NUMBER,
        "seconds a failed DNS lookup is not sent again (doubling while it fails)")
    dns_backoff_max: float = _key(_CONFIG.dns_backoff_max, _NUMBER,
                                  "longest wait before a failing DNS lookup is sent again")
    memory_cache_size: int = _key(
        _CONFIG.memory_cache_size, int, "MTA-STS states held in memory, least recently "
        "used evicted first (the cache file keeps them all)")
    cache: str = _key(_CONFIG.cache_path, str, "the SQLite cache file",
                      flag=Flag("cache", "the SQLite cache file; with --redis, the local "
                                "mirror of enforce policies (default {default})", "PATH"))
    redis: str | None = _key(None, str, "a Redis/Valkey URL shared by a fleet",
                             flag=Flag("redis", "share the cache with a fleet through "
                                       "Redis/Valkey at URL (redis://host:port/db)", "URL"))
    https_port: int = _key(_CONFIG.https_port, int, "port of the MTA-STS policy hosts",
                           flag=Flag("https_port", "port of the MTA-STS policy hosts "
                                     "(default {default})", "PORT"))
    ca_file: str | None = _key(_CONFIG.ca_file, str,
                               "CA bundle for MTA-STS policy hosts (tests)",
                               flag=Flag("ca_file", "trust this CA bundle for MTA-STS policy "
                                         "hosts instead of the system store (for test "
                                         "setups)", "FILE"))
    first_wait: float = _key(_CONFIG.first_wait, _NUMBER,
                             "seconds a cold lookup waits for a policy",
                             flag=Flag("first_wait", "on a cold cache, how long to wait for a "
                                       "policy before answering as if there were none "
                                       "(default {default:g})", "SECONDS"))
    dns_timeout: float = _key(_CONFIG.dns_timeout, _NUMBER, "seconds one DNS query may take")
    https_timeout: float = _key(_CONFIG.https_timeout, _NUMBER,
                                "seconds one MTA-STS policy fetch may take")
    answer_deadline: float = _key(DEFAULT_ANSWER_DEADLINE, _NUMBER,
                                  "seconds within which every answer is sent",
                                  flag=Flag("answer_deadline", "send every answer within this "
                                            "time; what has not arrived counts as failed "
                                            "(default {default:g}; Postfix waits 100)",
                                            "SECONDS"))
    # --postfix-version is not this key's flag: the version has more sources than a flag
    # and the table (serve reads it with postconf when neither gives it), and the table's
    # applies only with discovery on.
    postfix_version: str | None = _key(None, str,
                                       "the Postfix version the answers are written for")
    sts_mx_patterns: bool = _key(True, bool,
                                 "main.cf's smtp_tls_enforce_sts_mx_patterns (3.10.5+)",
                                 flag=Flag("sts_mx_patterns",
                                           "main.cf sets smtp_tls_enforce_sts_mx_patterns = no "
                                           "(Postfix 3.10.5+): MX hosts are then not filtered "
                                           "by MTA-STS patterns, which the answers' notes "
                                           "report"))
    table: Mapping[str, Any] = attrs.field(factory=dict, hash=False, repr=False)

    def discovery_config(self) -> DiscoveryConfig:
        """What discovery runs with; raises :class:`DiscoveryError` for a value it refuses."""
        return DiscoveryConfig(
            resolver=self.resolver, resolver_port=self.resolver_port,
            resolver_trusted=self.resolver_trusted, probe_name=self.probe_name,
            https_port=self.https_port, ca_file=self.ca_file, first_wait=self.first_wait,
            cache_path=self.cache, dns_timeout=self.dns_timeout,
            https_timeout=self.https_timeout,
            probe_backoff_initial=self.probe_backoff_initial,
            probe_backoff_max=self.probe_backoff_max, probe_interval=self.probe_interval,
            dns_backoff_initial=self.dns_backoff_initial,
            dns_backoff_max=self.dns_backoff_max, memory_cache_size=self.memory_cache_size)

    def checked_deadline(self) -> float:
        """``answer_deadline``; raises :class:`DiscoveryError` unless it is above 0 and
        at most :data:`MAX_ANSWER_DEADLINE`."""
        deadline = self.answer_deadline
        if not 0 < deadline <= MAX_ANSWER_DEADLINE:
            raise DiscoveryError(f"the answer deadline must be above 0 and at most "
                                 f"{MAX_ANSWER_DEADLINE:g} s (Postfix gives up after 100 s), "
                                 f"got {deadline:g}")
        return deadline


_KEYS: Final = tuple(f for f in attrs.fields(DiscoverySettings) if f.name != "table")

#: Every key of ``[discovery]`` with its type and what it sets (read from
#: :class:`DiscoverySettings`, which also holds its default and flag).
DISCOVERY_KEYS: Final[Mapping[str, tuple[type | tuple[type, ...], str]]] = {
    f.name: (f.metadata["kind"], f.metadata["sets"]) for f in _KEYS}

#: The command-line flag of every key that has one, by its destination, in the order of
#: the keys.
DISCOVERY_FLAGS: Final[Mapping[str, Flag]] = {
    f.metadata["flag"].dest: f.metadata["flag"] for f in _KEYS if f.metadata["flag"]}


def _typed(kind: type | tuple[type, ...], value: Any) -> Any:
    # A whole number where any number will do is read as the float it stands for.
    return float(value) if kind == _NUMBER else value


def discovery_settings(table: Mapping[str, Any] | None = None, *,
                       flags: object = None) -> DiscoverySettings:
    """The settings, key by key: the command-line flag when it was given, else the
    table's value, else the default.

    ``flags`` holds the flags by destination (an ``argparse.Namespace``): a flag was given
    when its attribute is there and not ``None`` (every flag of these keys defaults to
    ``None``; its help shows the default).  ``table`` is a ``[discovery]`` table already
    checked (:func:`check_discovery_table`,
    :func:`~tlspolicy.formats.loader.read_discovery_table`).
    """
    table = dict(table or {})
    values: dict[str, Any] = {}
    for field in _KEYS:
        flag = field.metadata["flag"]
        given = None if flag is None or flags is None else getattr(flags, flag.dest, None)
        if given is not None:
            values[field.name] = given
        elif field.name in table:
            values[field.name] = _typed(field.metadata["kind"], table[field.name])
    return DiscoverySettings(**values, table=table)


def check_discovery_table(table: object, filename: str | None, *,
                          where: Location | None = None) -> list[ConfigError]:
    """Located errors for a ``[discovery]`` value (empty when it is valid); ``where``
    (the table's location, with its line) defaults to the file alone."""
    where = (where or Location(file=filename)).evolve(scope="discovery")
    if not isinstance(table, dict):
        return [ConfigSyntaxError("'discovery' must be a table ([discovery])", where,
                                  value=table, has_value=True)]
    errors: list[ConfigError] = []
    for key, value in table.items():
        spec = DISCOVERY_KEYS.get(key)
        if spec is None:
            errors.append(ConfigSyntaxError(
                f"unknown discovery key {key!r} (known: {', '.join(DISCOVERY_KEYS)})",
                where.evolve(option=key)))
            continue
        kind = spec[0]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            wanted = "true or false" if kind is bool else "a string" if kind is str else \
                "a whole number" if kind is int else "a number"
            errors.append(InvalidValueError(f"must be {wanted}", where.evolve(option=key),
                                            value=value, has_value=True))
        elif kind == _NUMBER and not is_setting_time(value):
            # Every number key is a time in seconds: the bound DiscoveryConfig holds it to,
            # reported here with the file and line.
            errors.append(InvalidValueError(
                f"out of range: a positive number of seconds, at most {LONGEST_SETTING:,} "
                "(ten years)", where.evolve(option=key), value=value, has_value=True))
        elif isinstance(value, int | float) and not 0 <= value <= 1e9:
            errors.append(InvalidValueError("out of range", where.evolve(option=key),
                                            value=value, has_value=True))
    return errors


def discovery_table(data: Mapping[str, Any], filename: str,
                    line_of: Callable[[str], int | None]
                    ) -> tuple[dict[str, Any], list[ConfigError]]:
    """The ``[discovery]`` table of a parsed TOML file (its name in any case; ``{}``
    without one) and its located errors: those of :func:`check_discovery_table`, and a
    second table whose name differs only in case (which one would count would depend on
    their order).  ``line_of(key)`` is the line of a top-level key.  The loader's check
    and ``serve``'s reading both go through this."""
    keys = [key for key in data if key.lower() == "discovery"]
    if not keys:
        return {}, []
    first, *more = keys
    errors = check_discovery_table(data[first], filename,
                                   where=Location(file=filename, line=line_of(first)))
    errors += [ConfigSyntaxError(f"a second discovery table, {key!r} (table names are "
                                 "case-insensitive: one [discovery] table a file)",
                                 Location(file=filename, line=line_of(key)))
               for key in more]
    return ({} if errors else dict(data[first])), errors
