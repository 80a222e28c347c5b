"""The SSL context built from a decision's TLS parameters."""

from __future__ import annotations

import ssl
import warnings
from pathlib import Path

import pytest

from smtp_servers import MX_HOST, CertSet, decision_from_toml, make_cert_set
from tlspolicy import TlsPolicyError
from tlspolicy.adapters.sslcontext import (
    ProtocolNarrowedWarning,
    TlsSetupError,
    UnsupportedTlsSettingError,
    UnsupportedTlsSettingWarning,
    build_context,
)
from tlspolicy.decision import TlsParameters
from tlspolicy.options import TlsEngine, TlsVersion


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertSet:
    return make_cert_set(tmp_path_factory.mktemp("certs"))


def _params(**changes: object) -> TlsParameters:
    base: dict[str, object] = dict(
        ca_file=None, certificate_file=None, key_file=None, ciphers=None,
        tls13_ciphersuites=None, protocols=frozenset(TlsVersion), sni=MX_HOST,
        engine=TlsEngine.OPENSSL)
    base.update(changes)
    return TlsParameters(**base)  # type: ignore[arg-type]


def test_from_a_real_config(certs: CertSet) -> None:
    files = certs.files["valid"]
    decision = decision_from_toml(
        tls="required", verify="host", ca=certs.ca_path,
        extra=f'tls_protocols = "+ALL:-SSLv2:-SSLv3:-TLSv1.0:-TLSv1.1"\n'
              f'tls_ciphers = "ECDHE+AESGCM"\n'
              f'tls_certificate = "{files.cert_path}"\ntls_key = "{files.key_path}"\n')
    # The TOML [global] table already holds tls etc.; extra lines extend it.
    context = build_context(decision.parameters)
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.maximum_version is ssl.TLSVersion.TLSv1_3
    assert context.verify_mode is ssl.CERT_NONE and not context.check_hostname
    names = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names and all("ECDHE" in n and "GCM" in n for n in names)
    assert any(c["subject"] for c in context.get_ca_certs())
    assert decision.parameters.sni == MX_HOST


def test_default_all_has_no_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        context = build_context(_params())
    assert context.minimum_version is ssl.TLSVersion.TLSv1


def test_ssl_versions_are_narrowed_with_a_warning() -> None:
    allowed = frozenset({TlsVersion.SSLv3, TlsVersion.TLSv1_2, TlsVersion.TLSv1_3})
    with pytest.warns(ProtocolNarrowedWarning, match="SSLv3"):
        context = build_context(_params(protocols=allowed))
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2


def test_only_ssl_versions_is_an_error() -> None:
    with pytest.raises(UnsupportedTlsSettingError, match="SSLv2, SSLv3"):
        build_context(_params(protocols=frozenset({TlsVersion.SSLv2, TlsVersion.SSLv3})))


def test_non_contiguous_protocols() -> None:
    holey = frozenset({TlsVersion.TLSv1_0, TlsVersion.TLSv1_2})
    with pytest.raises(UnsupportedTlsSettingError, match=r"not TLSv1\.1"):
        build_context(_params(protocols=holey))
    with pytest.warns(UnsupportedTlsSettingWarning, match="contiguous"):
        context = build_context(_params(protocols=holey), unsupported="warn")
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2  # narrowed, never widened
    assert context.maximum_version is ssl.TLSVersion.TLSv1_2


def test_tls13_suites_cannot_be_expressed() -> None:
    with pytest.raises(UnsupportedTlsSettingError, match="tlsv13_ciphersuites"):
        build_context(_params(tls13_ciphersuites="TLS_AES_256_GCM_SHA384"))
    # Irrelevant when TLS 1.3 is not allowed at all.
    build_context(_params(tls13_ciphersuites="TLS_AES_256_GCM_SHA384",
                          protocols=frozenset({TlsVersion.TLSv1_2})))


def test_gnutls_priority_string() -> None:
    with pytest.raises(UnsupportedTlsSettingError, match="GnuTLS"):
        build_context(_params(ciphers="NORMAL:-VERS-TLS1.0", engine=TlsEngine.GNUTLS))
    with pytest.warns(UnsupportedTlsSettingWarning):
        build_context(_params(ciphers="NORMAL", engine=TlsEngine.GNUTLS), unsupported="warn")


@pytest.mark.parametrize(("changes", "match"), [
    ({"ca_file": "/nonexistent/ca.pem"}, "tls_ca"),
    ({"ciphers": "NO-SUCH-CIPHER"}, "tls_ciphers"),
    ({"key_file": "/nonexistent/key.pem"}, "without tls_certificate"),
    ({"certificate_file": "/nonexistent/cert.pem"}, "client certificate"),
])
def test_bad_files_and_values_fail_closed(changes: dict[str, object], match: str) -> None:
    with pytest.raises(TlsSetupError, match=match) as info:
        build_context(_params(**changes))
    assert isinstance(info.value, TlsPolicyError)


def test_client_certificate_is_loaded(certs: CertSet, tmp_path: Path) -> None:
    files = certs.files["valid"]
    build_context(_params(certificate_file=str(files.cert_path), key_file=str(files.key_path)))
    other = certs.files["expired"]
    with pytest.raises(TlsSetupError):  # key does not belong to the certificate
        build_context(_params(certificate_file=str(files.cert_path),
                              key_file=str(other.key_path)))
