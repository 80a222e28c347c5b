"""Finding: certificate files were found missing only at send time.

:func:`check_tls_files` verifies every ``tls_ca``, ``tls_certificate`` and
``tls_key`` before mail flows: a readable regular file with PEM of the right
kind, and a key matching its certificate, each error located at the scope
path and option with the file as its value.  Certificates are made here.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tlspolicy import ConfigErrors, loads_toml
from tlspolicy.errors import TlsFileError
from tlspolicy.formats.tlsfiles import check_tls_files

pytest.importorskip("cryptography")

from bounded import within

from certs_support import TestCA


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("pki")
    ca = TestCA(base / "ca")
    one = ca.issue(["client.example"], stem="one")
    two = ca.issue(["other.example"], stem="two")
    encrypted = base / "encrypted.key"
    encrypted.write_text("-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n"
                         "-----END ENCRYPTED PRIVATE KEY-----\n")
    garbage = base / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
                       "-----END CERTIFICATE-----\n")
    bundle_with_key = base / "bundle-with-key.pem"
    bundle_with_key.write_bytes(ca.cert_path.read_bytes() + one.key_path.read_bytes())
    fifo = base / "fifo.pem"
    os.mkfifo(fifo)
    return {"ca": ca.cert_path, "cert1": one.cert_path, "key1": one.key_path,
            "cert2": two.cert_path, "key2": two.key_path, "encrypted": encrypted,
            "garbage": garbage, "bundle_with_key": bundle_with_key, "fifo": fifo,
            "dir": base}


def _config(body: str) -> str:
    return "[global]\ntls = \"required\"\n" + body


def _errors(text: str) -> list[TlsFileError]:
    config = loads_toml(text)

    def run() -> list[TlsFileError]:
        try:
            check_tls_files(config, filename="policy.toml")
        except ConfigErrors as many:
            return list(many.errors)  # type: ignore[arg-type]
        except TlsFileError as one:
            return [one]
        return []
    result: list[TlsFileError] = within(run)
    return result


def test_good_files_pass(pki: dict[str, Path]) -> None:
    text = _config(f'tls_ca = "{pki["ca"]}"\ntls_certificate = "{pki["cert1"]}"\n'
                   f'tls_key = "{pki["key1"]}"\n')
    assert _errors(text) == []


@pytest.mark.parametrize(("option", "which", "fragment"), [
    ("tls_ca", "/nonexistent.pem", "cannot read the file"),
    ("tls_ca", "fifo", "not a regular file"),
    ("tls_ca", "dir", "not a regular file"),
    ("tls_ca", "key1", "no PEM certificate"),
    ("tls_ca", "bundle_with_key", "holds a private key"),
    ("tls_ca", "garbage", "cannot be read"),
    ("tls_ca", "/dev/zero", "not a regular file"),
])
def test_bad_ca_files(pki: dict[str, Path], option: str, which: str, fragment: str) -> None:
    path = str(pki.get(which, which))
    errors = _errors(_config(f'{option} = "{path}"\n'))
    assert len(errors) == 1 and fragment in str(errors[0])
    location = errors[0].location
    assert (location.file, location.scope, location.option) == ("policy.toml", "global", option)
    assert errors[0].value == path


def test_certificate_and_key_of_the_wrong_kind(pki: dict[str, Path]) -> None:
    text = ('[[binding]]\nname = "b1"\n'
            f'tls_certificate = "{pki["key1"]}"\ntls_key = "{pki["cert1"]}"\n')
    messages = sorted(str(e) for e in _errors(text))
    assert any("option 'tls_certificate': the file holds no PEM certificate" in m for m in messages)
    assert any("option 'tls_key': the file holds no PEM private key" in m for m in messages)
    assert all('binding "b1"' in m for m in messages)


def test_encrypted_key_is_refused(pki: dict[str, Path]) -> None:
    text = _config(f'tls_certificate = "{pki["cert1"]}"\ntls_key = "{pki["encrypted"]}"\n')
    (error,) = _errors(text)
    assert "encrypted" in str(error) and error.location.option == "tls_key"


def test_key_not_matching_its_certificate(pki: dict[str, Path]) -> None:
    text = _config(f'tls_certificate = "{pki["cert1"]}"\ntls_key = "{pki["key2"]}"\n')
    (error,) = _errors(text)
    assert "does not match" in str(error) and error.location.option == "tls_key"


def test_mismatch_made_by_inheritance(pki: dict[str, Path]) -> None:
    # The global key with a binding's certificate: neither scope sets both.
    text = (_config(f'tls_key = "{pki["key1"]}"\n') +
            f'[[binding]]\nname = "b2"\ntls_certificate = "{pki["cert2"]}"\n')
    errors = _errors(text)
    assert any("does not match" in str(e) for e in errors)
    assert any("no tls_certificate applies" in str(e) for e in errors)


def test_none_cancels_and_is_not_a_file(pki: dict[str, Path]) -> None:
    text = _config(f'tls_certificate = "{pki["cert1"]}"\ntls_key = "{pki["key1"]}"\n'
                   '[[domain]]\nname = "plain.example"\ntls_certificate = "none"\n'
                   'tls_key = "none"\n')
    assert _errors(text) == []


# Finding (issue 15, documented as the one weaker case): Postfix's tafile ignores a trust
# anchor's expiry, so with an expired CA in tls_ca Postfix delivered where the decision
# fails the host.  serve now refuses such a file (check_tls_files with at=now).

def _expired_ca(path: Path) -> Path:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "expired test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=60))
            .not_valid_after(now - datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_expired_anchor_refused_when_checked_at_a_time(tmp_path: Path,
                                                       pki: dict[str, Path]) -> None:
    import datetime

    ca = _expired_ca(tmp_path / "expired-ca.pem")
    config = loads_toml(f'[global]\ntls = "required"\ntls_verify = "host"\ntls_ca = "{ca}"\n')
    check_tls_files(config)  # without a time: the PEM is fine
    with pytest.raises(TlsFileError, match=r"expired on .*Postfix ignores a trust anchor"):
        check_tls_files(config, at=datetime.datetime.now(datetime.UTC))
    # A valid CA is still accepted at the same time, and refused once it has expired.
    good = loads_toml(f'[global]\ntls_ca = "{pki["ca"]}"\n')
    check_tls_files(good, at=datetime.datetime.now(datetime.UTC))
    with pytest.raises(TlsFileError, match="expired"):
        check_tls_files(good, at=datetime.datetime.now(datetime.UTC)
                        + datetime.timedelta(days=365))


def test_serve_refuses_an_expired_anchor(tmp_path: Path) -> None:
    import subprocess
    import sys

    ca = _expired_ca(tmp_path / "expired-ca.pem")
    policy = tmp_path / "policy.toml"
    policy.write_text(f'[global]\ntls = "required"\ntls_verify = "host"\ntls_ca = "{ca}"\n')
    result = subprocess.run(
        [sys.executable, "-m", "tlspolicy", "serve", "socketmap", str(policy), "--listen",
         "127.0.0.1:0", "--postfix-version", "3.7.11", "--no-postfix-checks"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "expired on" in result.stderr and "Traceback" not in result.stderr
