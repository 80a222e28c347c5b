"""The ``[discovery]`` table of a TOML configuration: how ``serve socketmap`` discovers.

The table configures the I/O layer (resolver, cache, timeouts, the Postfix version
the answers are written for), never a decision, so it is not part of
:class:`~tlspolicy.Config`: the TOML loader checks it (a wrong key or type is a
located error, like any other) and ``serve`` reads it with
:func:`read_discovery_table`.  Command-line flags given explicitly win over it.

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

import tomllib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from ..errors import ConfigError, ConfigErrors, ConfigSyntaxError, InvalidValueError, Location
from .files import read_regular_text

__all__ = ["DEFAULT_CACHE_PATH", "DISCOVERY_KEYS", "check_discovery_table",
           "read_discovery_table"]

DEFAULT_CACHE_PATH: Final = "/var/lib/tlspolicy/discovery.sqlite3"
"""Where discovery keeps its SQLite cache unless told otherwise (``cache``, ``--cache``)."""

#: Every key of ``[discovery]`` with its type and what it sets (the flag of the same
#: name with ``-`` for ``_``).
DISCOVERY_KEYS: Final[Mapping[str, tuple[type | tuple[type, ...], str]]] = {
    "enabled": (bool, "answer with discovery (same as --discovery)"),
    "resolver": (str, "the validating resolver's IP address"),
    "resolver_port": (int, "its port"),
    "resolver_trusted": (bool, "trust the AD bit of a resolver not on loopback"),
    "probe_name": (str, "a signed name the resolver must validate before DANE inputs are "
                   "trusted"),
    "probe_backoff_initial": ((int, float), "seconds before the first re-probe of a resolver "
                              "that does not validate (doubling)"),
    "probe_backoff_max": ((int, float), "longest wait between probes of a resolver that does "
                          "not validate"),
    "probe_interval": ((int, float), "seconds between probes of a resolver that validates"),
    "dns_backoff_initial": ((int, float), "seconds a failed DNS lookup is not sent again "
                            "(doubling while it fails)"),
    "dns_backoff_max": ((int, float), "longest wait before a failing DNS lookup is sent "
                        "again"),
    "memory_cache_size": (int, "MTA-STS states held in memory, least recently used evicted "
                          "first (the cache file keeps them all)"),
    "cache": (str, "the SQLite cache file"),
    "redis": (str, "a Redis/Valkey URL shared by a fleet"),
    "https_port": (int, "port of the MTA-STS policy hosts"),
    "ca_file": (str, "CA bundle for MTA-STS policy hosts (tests)"),
    "first_wait": ((int, float), "seconds a cold lookup waits for a policy"),
    "dns_timeout": ((int, float), "seconds one DNS query may take"),
    "https_timeout": ((int, float), "seconds one MTA-STS policy fetch may take"),
    "answer_deadline": ((int, float), "seconds within which every answer is sent"),
    "postfix_version": (str, "the Postfix version the answers are written for"),
    "sts_mx_patterns": (bool, "main.cf's smtp_tls_enforce_sts_mx_patterns (3.10.5+)"),
}


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
        elif isinstance(value, int | float) and not 0 <= value <= 1e9:
            errors.append(InvalidValueError("out of range", where.evolve(option=key),
                                            value=value, has_value=True))
    return errors


def read_discovery_table(paths: Sequence[str]) -> dict[str, Any]:
    """The ``[discovery]`` settings of the TOML files among ``paths``, later files winning
    key by key.  Raises the located errors of :func:`check_discovery_table`."""
    merged: dict[str, Any] = {}
    errors: list[ConfigError] = []
    for path in paths:
        if not str(path).endswith(".toml"):
            continue
        try:
            data = tomllib.loads(read_regular_text(path))
        except tomllib.TOMLDecodeError:
            continue  # the configuration load reports it, with its line
        if "discovery" not in data:
            continue
        found = check_discovery_table(data["discovery"], str(path))
        errors += found
        if not found:
            merged.update(data["discovery"])
    ConfigErrors.raise_if_any(errors)
    return merged
