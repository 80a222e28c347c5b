"""An :class:`ssl.SSLContext` built from a decision's :class:`~tlspolicy.decision.TlsParameters`.

The context is made for the handshake only: it does not verify the peer
(``CERT_NONE``, no host name check), because a certificate problem must be
classified and acted on per the decision (SEMANTICS section 4), never turned
into an aborted handshake.  :mod:`tlspolicy.adapters.peer` checks the peer
once TLS is up.  The CA bundle is still loaded here so a bad ``tls_ca`` fails
before any connection is made.

Settings Python's :mod:`ssl` cannot express are never dropped in silence:

* ``tlsv13_ciphersuites`` (no ``SSL_CTX_set_ciphersuites`` binding), a
  ``tls_ciphers`` value under ``tls_engine = gnutls`` (a GnuTLS priority
  string means nothing to OpenSSL), and an allowed protocol set with a hole
  (``TLSv1.0`` + ``TLSv1.2`` without ``TLSv1.1``) raise
  :class:`UnsupportedTlsSettingError`; with ``unsupported="warn"`` they emit an
  :class:`UnsupportedTlsSettingWarning` instead and the handshake uses the
  library's defaults for that one setting (the caller asked for that).
* ``SSLv2`` / ``SSLv3`` cannot be offered by any OpenSSL Python links against;
  an allowed set holding them is narrowed to its TLS versions (stricter, never
  weaker) with a :class:`ProtocolNarrowedWarning`, except for the default
  ``+ALL`` (every version), which means "whatever the engine supports".  A set
  holding only SSL versions raises :class:`UnsupportedTlsSettingError`.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import warnings
from collections.abc import Iterator
from typing import Final, Literal

from tlspolicy.decision import TlsParameters
from tlspolicy.errors import FileReadError, FileTooLargeError, Location, TlsPolicyError
from tlspolicy.formats.files import MAX_PEM_BYTES, open_regular_file, read_regular_text
from tlspolicy.options import TlsEngine, TlsVersion

__all__ = [
    "ProtocolNarrowedWarning",
    "TlsSetupError",
    "Unsupported",
    "UnsupportedTlsSettingError",
    "UnsupportedTlsSettingWarning",
    "build_context",
]

Unsupported = Literal["error", "warn"]
"""What to do with a setting Python's ssl cannot express: raise, or warn and go on."""


class TlsSetupError(TlsPolicyError):
    """A TLS parameter that cannot be applied: unreadable CA, bad key, no cipher left."""


class UnsupportedTlsSettingError(TlsSetupError):
    """A security setting Python's :mod:`ssl` cannot express (see the module doc)."""


class UnsupportedTlsSettingWarning(UserWarning):
    """A security setting Python's ssl cannot express was left to the library default."""


class ProtocolNarrowedWarning(UnsupportedTlsSettingWarning):
    """SSLv2/SSLv3 were allowed but cannot be offered; the TLS versions remain."""


_SSL_ONLY: Final = frozenset({TlsVersion.SSLv2, TlsVersion.SSLv3})
_PY_VERSIONS: Final = {
    TlsVersion.TLSv1_0: ssl.TLSVersion.TLSv1,
    TlsVersion.TLSv1_1: ssl.TLSVersion.TLSv1_1,
    TlsVersion.TLSv1_2: ssl.TLSVersion.TLSv1_2,
    TlsVersion.TLSv1_3: ssl.TLSVersion.TLSv1_3,
}
_TLS_ORDER: Final = tuple(_PY_VERSIONS)


def _unsupported(message: str, mode: Unsupported) -> None:
    if mode == "error":
        raise UnsupportedTlsSettingError(message)
    warnings.warn(message, UnsupportedTlsSettingWarning, stacklevel=3)


def _protocol_range(
    parameters: TlsParameters, mode: Unsupported
) -> tuple[ssl.TLSVersion, ssl.TLSVersion]:
    """The (floor, ceiling) for ``minimum_version`` / ``maximum_version``."""
    allowed = parameters.protocols
    tls_allowed = [v for v in _TLS_ORDER if v in allowed]
    if not tls_allowed:
        raise UnsupportedTlsSettingError(
            f"tls_protocols allows only {', '.join(sorted(v.value for v in allowed))}, which "
            "Python's ssl (OpenSSL 1.1.1 or newer) cannot negotiate")
    if allowed & _SSL_ONLY and allowed != frozenset(TlsVersion):
        warnings.warn(
            f"tls_protocols allows {', '.join(sorted(v.value for v in allowed & _SSL_ONLY))}, "
            "which Python's ssl cannot offer; only "
            f"{', '.join(v.value for v in tls_allowed)} will be negotiated",
            ProtocolNarrowedWarning, stacklevel=3)
    idx = [_TLS_ORDER.index(v) for v in tls_allowed]
    if idx != list(range(idx[0], idx[-1] + 1)):
        missing = [v.value for v in _TLS_ORDER[idx[0]:idx[-1] + 1] if v not in allowed]
        _unsupported(
            f"tls_protocols allows {', '.join(v.value for v in tls_allowed)} but not "
            f"{', '.join(missing)}; Python's ssl can only set one contiguous range", mode)
        if mode == "warn":
            # Keep the newest contiguous run: narrower than asked, never wider.
            run = [tls_allowed[-1]]
            for v in reversed(tls_allowed[:-1]):
                if _TLS_ORDER.index(v) + 1 != _TLS_ORDER.index(run[0]):
                    break
                run.insert(0, v)
            tls_allowed = run
    return _PY_VERSIONS[tls_allowed[0]], _PY_VERSIONS[tls_allowed[-1]]


@contextlib.contextmanager
def _checked(path: str | None, what: str) -> Iterator[str | None]:
    """A name OpenSSL can open for ``path``, checked to be a regular file first.

    ``load_cert_chain`` takes only names, so the file is opened (non-blocking,
    checked with fstat) and OpenSSL is given that open descriptor's name where
    the system has one (``/dev/fd``): the file checked is the file read.
    """
    if path is None:
        yield None
        return
    with open_regular_file(path, what) as fd:
        if os.fstat(fd).st_size > MAX_PEM_BYTES:
            raise FileTooLargeError(f"{what} is larger than {MAX_PEM_BYTES} bytes",
                                    Location(file=path))
        through_fd = f"/dev/fd/{fd}"
        yield through_fd if os.path.exists(through_fd) else path


def build_context(
    parameters: TlsParameters, *, unsupported: Unsupported = "error"
) -> ssl.SSLContext:
    """A client context for the STARTTLS handshake described by ``parameters``.

    Sets the CA bundle (``tls_ca``, else the system store), the client
    certificate and key, the OpenSSL cipher list and the protocol floor and
    ceiling.  The peer is not verified during the handshake (see the module
    doc); pass ``parameters.sni`` as ``server_hostname`` when wrapping.
    Raises :class:`TlsSetupError` for a file or value that cannot be used and
    :class:`UnsupportedTlsSettingError` for what Python cannot express.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        if parameters.ca_file is not None:
            # Read through the safe reader (regular file, size cap): a FIFO or a
            # device named as tls_ca must fail at once, not block the handshake.
            bundle = read_regular_text(parameters.ca_file, max_bytes=MAX_PEM_BYTES,
                                       what="tls_ca")
            context.load_verify_locations(cadata=bundle)
        else:
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    except FileReadError as exc:
        raise TlsSetupError(f"tls_ca {parameters.ca_file!r} cannot be loaded: "
                            f"{exc.message}") from None
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise TlsSetupError(f"tls_ca {parameters.ca_file!r} cannot be loaded: {exc}") from exc

    if parameters.key_file is not None and parameters.certificate_file is None:
        raise TlsSetupError(
            f"tls_key {parameters.key_file!r} is set without tls_certificate")
    if parameters.certificate_file is not None:
        try:
            with _checked(parameters.certificate_file, "tls_certificate") as cert, \
                    _checked(parameters.key_file, "tls_key") as key:
                context.load_cert_chain(cert, key)  # type: ignore[arg-type]
        except FileReadError as exc:
            raise TlsSetupError(
                f"client certificate {parameters.certificate_file!r} / key "
                f"{parameters.key_file!r} cannot be loaded: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise TlsSetupError(
                f"client certificate {parameters.certificate_file!r} / key "
                f"{parameters.key_file!r} cannot be loaded: {exc}") from exc

    if parameters.ciphers is not None:
        if parameters.engine is TlsEngine.GNUTLS:
            _unsupported(
                f"tls_ciphers {parameters.ciphers!r} is a GnuTLS priority string "
                "(tls_engine = gnutls); Python's ssl uses OpenSSL cipher lists", unsupported)
        else:
            try:
                context.set_ciphers(parameters.ciphers)
            except ssl.SSLError as exc:
                raise TlsSetupError(
                    f"tls_ciphers {parameters.ciphers!r} selects no cipher OpenSSL knows: "
                    f"{exc}") from exc

    floor, ceiling = _protocol_range(parameters, unsupported)
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1 floors, but tls_protocols allows them
        # and an opportunistic MTA must honour that; OpenSSL's security level
        # may still refuse them, which only ever makes the floor stricter.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = floor
        context.maximum_version = ceiling

    if parameters.tls13_ciphersuites is not None and ceiling is ssl.TLSVersion.TLSv1_3:
        _unsupported(
            f"tlsv13_ciphersuites {parameters.tls13_ciphersuites!r} cannot be set: Python's ssl "
            "has no TLS 1.3 suite list (allow at most TLSv1.2, or drop the option)", unsupported)
    return context
