"""Checking the certificate files a configuration names, before any mail is sent.

``tls_ca = "/nonexistent.pem"`` used to load, pass ``check`` and reach the
MTA, which failed at send time.  :func:`check_tls_files` reads every
``tls_ca``, ``tls_certificate`` and ``tls_key`` the way the readers of
:mod:`tlspolicy.formats.files` do (regular files only, a size cap, no
blocking) and checks that each holds PEM of the right kind and that every
client key matches the certificate it is used with.  It reads files, so it
lives in the formats layer, not in the core.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Final

from ..errors import ConfigError, ConfigErrors, FileReadError, Location, TlsFileError
from ..options import Options
from ..resolver import Resolver
from ..scopes import Config, DomainScope
from ..scopes.stanzas import iter_stanzas
from .files import MAX_PEM_BYTES, open_regular_file, read_regular_text

__all__ = ["MAX_PAIR_CHECKS", "check_tls_files"]

MAX_PAIR_CHECKS: Final = 50_000
"""Most (binding, domain) combinations resolved to find certificate/key pairs."""

_CERT: Final = "-----BEGIN CERTIFICATE-----"
_KEY_MARK: Final = "PRIVATE KEY-----"
_FILE_OPTIONS: Final = ("tls_ca", "tls_certificate", "tls_key")


def _scopes(config: Config) -> Iterator[tuple[str, Options]]:
    yield from config.iter_options()


def _text(path: str, option: str) -> str:
    return read_regular_text(path, max_bytes=MAX_PEM_BYTES, what=option)


def _pem_problem(option: str, text: str) -> str | None:
    """What is wrong with the PEM of one file for ``option``, or ``None``."""
    has_key = _KEY_MARK in text
    if option == "tls_key":
        if not has_key:
            return "holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
        if "ENCRYPTED PRIVATE KEY-----" in text or "Proc-Type: 4,ENCRYPTED" in text:
            return "holds an encrypted private key: an MTA cannot type its passphrase"
        return None
    if _CERT not in text:
        return "holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
    if option == "tls_ca" and has_key:
        return "holds a private key: a CA bundle holds certificates only"
    try:
        # Parses every certificate of the file (OpenSSL's PEM reader).
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=text)
    except (ssl.SSLError, ValueError) as exc:
        return f"holds a certificate that cannot be read: {exc.args[-1] if exc.args else exc}"
    return None


def _load_pair(cert: str, key: str) -> None:
    """Load a certificate and key with OpenSSL, which checks that they belong together."""
    with open_regular_file(cert, "tls_certificate") as cert_fd, \
            open_regular_file(key, "tls_key") as key_fd:
        names = [f"/dev/fd/{cert_fd}", f"/dev/fd/{key_fd}"]
        if not all(os.path.exists(n) for n in names):
            names = [cert, key]
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # An empty passphrase: an encrypted key fails instead of prompting on a terminal.
        context.load_cert_chain(names[0], names[1], password=lambda: b"")


def _expired_anchor(text: str, at: datetime) -> str | None:
    """The first certificate of a CA file that expired before ``at``, described, or ``None``."""
    from cryptography import x509  # the dane or adapters extra

    try:
        certificates = x509.load_pem_x509_certificates(text.encode("utf-8", "replace"))
    except ValueError:
        return None  # the PEM check already reported what cannot be read
    for certificate in certificates:
        if certificate.not_valid_after_utc < at:
            subject = certificate.subject.rfc4514_string()[:200]
            return (f"holds a CA certificate that expired on "
                    f"{certificate.not_valid_after_utc:%Y-%m-%d %H:%M} UTC ({subject}): "
                    "Postfix ignores a trust anchor's expiry (tafile), so it would trust it "
                    "where tlspolicy fails the host; renew it or remove it from the file")
    return None


class _Checker:
    def __init__(self, config: Config, filename: str | None,
                 at: datetime | None = None,
                 line_of: Callable[[str, str | None], int | None] | None = None) -> None:
        self.config = config
        self.at = at
        self.filename = filename
        self.line_of = line_of
        self.errors: list[ConfigError] = []
        self.file_ok: dict[tuple[str, str], bool] = {}
        self.pair_ok: set[tuple[str, str]] = set()

    def fail(self, message: str, scope: str, option: str, value: str) -> None:
        line = self.line_of(scope, option) if self.line_of is not None else None
        self.errors.append(TlsFileError(
            message, Location(file=self.filename, line=line, scope=scope, option=option),
            value=value, has_value=True))

    def file(self, scope: str, option: str, path: str) -> bool:
        key = (option, path)
        if key in self.file_ok:
            return self.file_ok[key]
        # The location already names the option: the message speaks of "the file".
        try:
            text = _text(path, "the file")
            found = _pem_problem(option, text)
            if found is None and option == "tls_ca" and self.at is not None:
                found = _expired_anchor(text, self.at)
            problem = None if found is None else f"the file {found}"
        except FileReadError as exc:
            problem = exc.message
        self.file_ok[key] = problem is None
        if problem is not None:
            self.fail(problem, scope, option, path)
        return problem is None

    def pair(self, scope: str, cert: str, key: str | None) -> None:
        if key is None:
            key = cert  # Momentum, like OpenSSL, then reads the key from the certificate file
        if (cert, key) in self.pair_ok:
            return
        self.pair_ok.add((cert, key))
        if not (self.file_ok.get(("tls_certificate", cert), True)
                and self.file_ok.get(("tls_key", key), True)):
            return  # already reported
        try:
            _load_pair(cert, key)
        except FileReadError as exc:
            self.fail(exc.message, scope, "tls_key", key)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or (exc.args[-1] if exc.args else exc)
            self.fail(f"tls_key {key!r} does not match tls_certificate {cert!r} or cannot be "
                      f"loaded with it ({reason})", scope, "tls_key", key)

    def run(self) -> None:
        for scope, options in _scopes(self.config):
            for option in _FILE_OPTIONS:
                value = getattr(options, option)
                if isinstance(value, str):
                    self.file(scope, option, value)
        self.pairs()

    def pairs(self) -> None:
        # Scope-local pairs first: a scope setting both names a pair for sure.
        for scope, options in _scopes(self.config):
            cert, key = options.tls_certificate, options.tls_key
            if isinstance(cert, str) and isinstance(key, str):
                self.pair(scope, cert, key)
        if not any(isinstance(o.tls_certificate, str) or isinstance(o.tls_key, str)
                   for _s, o in _scopes(self.config)):
            return
        # Then the pairs inheritance makes: resolve every binding with every exact
        # domain name the configuration lists (and one it does not).
        resolver = Resolver(self.config, decision_cache_size=0)
        names = sorted({d.name.key for d in _domain_stanzas(self.config)
                        if d.name.regex is None} | {"unlisted.invalid"})
        bindings = resolver.bindings
        if len(bindings) * len(names) > MAX_PAIR_CHECKS:
            names = ["unlisted.invalid"]
        for binding in bindings:
            for name in names:
                values, sources = resolver.effective(name, binding)
                cert_value, key_value = values.get("tls_certificate"), values.get("tls_key")
                if isinstance(key_value, str) and not isinstance(cert_value, str):
                    where = str(sources.get("tls_key", "global"))
                    if ("key-alone", where) not in self.pair_ok:
                        self.pair_ok.add(("key-alone", where))
                        self.fail("tls_key is set where no tls_certificate applies "
                                  f"(binding {binding!r}, domain {name!r})", where, "tls_key",
                                  key_value)
                elif isinstance(cert_value, str):
                    where = str(sources.get("tls_key", sources.get("tls_certificate", "global")))
                    self.pair(where, cert_value,
                              key_value if isinstance(key_value, str) else None)


def _domain_stanzas(config: Config) -> list[DomainScope]:
    return [s for _path, s in iter_stanzas(config) if isinstance(s, DomainScope)]


def check_tls_files(config: Config, *, filename: str | None = None,
                    at: datetime | None = None,
                    line_of: Callable[[str, str | None], int | None] | None = None) -> None:
    """Check every ``tls_ca``, ``tls_certificate`` and ``tls_key`` file of ``config``.

    Each must be a readable regular file (no FIFO, device or directory; at
    most :data:`~tlspolicy.formats.files.MAX_PEM_BYTES`) holding PEM of its
    kind: certificates for ``tls_ca`` (and no private key), a certificate for
    ``tls_certificate``, an unencrypted private key for ``tls_key``.  Every
    certificate and key used together (set in one scope, or combined by
    inheritance for a binding and a listed domain) must match, as OpenSSL
    checks when loading them.  ``filename`` goes into the locations.  With ``at``
    (``serve`` passes the current time), a ``tls_ca`` file holding a certificate
    expired by then is refused too: Postfix's ``tafile`` ignores anchor expiry.

    Raises :class:`~tlspolicy.errors.TlsFileError` (scope path, option and
    file name) or :class:`~tlspolicy.errors.ConfigErrors` listing several;
    returns ``None`` when every file is usable.  ``line_of(scope, option)``
    (:func:`~tlspolicy.formats.loader.line_finder` of the one file ``config``
    came from) puts the line into each location.
    """
    checker = _Checker(config, filename, at, line_of)
    checker.run()
    ConfigErrors.raise_if_any(checker.errors)
