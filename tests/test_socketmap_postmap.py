"""End to end: ``tlspolicy serve socketmap`` queried by Debian's real ``postmap -q``.

The server runs as a subprocess of this test (the real command line), on a
free loopback port, and is stopped with SIGTERM by the test.  The expected
answers for the bundled example are written out by hand from the example's
stanzas and the mapping rules in docs/postfix-answers.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from postfix_support import postmap_config_dir, postmap_query, postmap_query_many, requires_postmap
from tlspolicy.postfix.netstring import encode_netstring

EXAMPLE = Path(__file__).parent.parent / "src" / "tlspolicy" / "data" / "example.toml"

# Run the server through the real command line in a child process.
_SCRIPT = """
import sys
from tlspolicy.cli import main
raise SystemExit(main(sys.argv[1:]))
"""

P = "protocols=>=TLSv1.2"
VERIFY = "verify match=hostname:nexthop"
DANE = f"dane {P}"
# ifavailable with fallback false exports as encrypt (SEMANTICS 11 (e)): dane and may
# would deliver in plaintext after a refused STARTTLS where the decision defers.
NO_FALLBACK = f"encrypt {P}"

# binding -> domain -> expected answer (bundled example; every global setting
# has use_dane on, so plaintext and opportunistic answers become "dane").
EXPECTED: dict[str, dict[str, str]] = {
    "tx-eu-1": {
        "health-insurer.example": f"{VERIFY} {P}",
        "payroll-partner.example":
            f"{VERIFY} tafile=/etc/tlspolicy/ca/payroll-partner.pem {P}",
        # The transactional group says tls_verify = "no" for the appliance; without
        # fallback that is still encrypt.
        "[192.0.2.25]": NO_FALLBACK,
        "legacy-mail.example": DANE,
        "mx.bank.example": f"{VERIFY} tafile=/etc/tlspolicy/ca/bank-root.pem {P}",
        "other.example": f"{VERIFY} {P}",
    },
    "bulk-1": {
        # Floors raise the marketing group's tls_verify = "no" for partners.
        "payroll-partner.example":
            f"{VERIFY} tafile=/etc/tlspolicy/ca/payroll-partner.pem {P}",
        "[192.0.2.25]": NO_FALLBACK,
        "legacy-mail.example": DANE,
        "mx.bank.example": f"{VERIFY} tafile=/etc/tlspolicy/ca/bank-root.pem {P}",
        "other.example": DANE,
    },
    "relay-internal": {
        "partner-vpn.example": f"{VERIFY} {P}",
        # The payroll floor: never plaintext, even through the plaintext relay.
        "payroll-partner.example":
            f"{VERIFY} tafile=/etc/tlspolicy/ca/payroll-partner.pem {P}",
        "legacy-mail.example": DANE,
        "other.example": DANE,
    },
    "default": {
        "payroll-partner.example":
            f"{VERIFY} tafile=/etc/tlspolicy/ca/payroll-partner.pem {P}",
        "[192.0.2.25]": NO_FALLBACK,
        "bank.example": f"{VERIFY} tafile=/etc/tlspolicy/ca/bank-root.pem {P}",
        "other.example": DANE,
    },
}
EXPECTED["tx-us-1"] = EXPECTED["tx-eu-1"]
EXPECTED["bulk-2"] = EXPECTED["bulk-1"]


def key_forms(domain: str) -> list[str]:
    """Every next-hop spelling Postfix may send for ``domain`` (parent form excluded)."""
    if domain.startswith("["):
        bare = domain[1:-1]
        return [domain, f"{domain}:25", bare]
    return [domain, f"{domain}.", f"[{domain}]", f"[{domain}]:587", f"{domain}:587",
            f"{domain.upper()}", f"[{domain}]:submission"]


class Server:
    """A running ``serve socketmap`` subprocess."""

    def __init__(self, process: subprocess.Popen[str], port: int) -> None:
        self.process = process
        self.port = port

    def table(self, binding: str) -> str:
        return f"socketmap:inet:127.0.0.1:{self.port}:{binding}"

    def raw(self, request: str) -> str:
        """One request over a raw socket; the reply text without framing."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(encode_netstring(request.encode()))
            data = b""
            while not data.endswith(b","):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        length, _sep, rest = data.partition(b":")
        return rest[: int(length)].decode()


def start_server(*configs: Path) -> Server:
    args = [sys.executable, "-c", _SCRIPT, "serve", "socketmap", "--listen", "127.0.0.1:0",
            # postmap is never chrooted: the machine's Postfix settings are not in play.
            "--no-file-checks", "--no-postfix-checks"]
    for config in configs:
        args += ["--config", str(config)]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stdout is not None
    deadline = time.monotonic() + 20
    line = ""
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if line.startswith("listening on ") or not line:
            break
    if not line.startswith("listening on "):
        process.kill()
        _out, err = process.communicate(timeout=10)
        pytest.fail(f"server did not start: {line!r} {err}")
    port = int(line.strip().rpartition(":")[2])
    return Server(process, port)


def stop_server(server: Server) -> str:
    """SIGTERM, wait, return standard error; the exit status must be 0."""
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        _out, err = server.process.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.communicate(timeout=10)
        raise
    assert server.process.returncode == 0, err
    return err


@pytest.fixture(scope="module")
def example_server() -> Iterator[Server]:
    server = start_server(EXAMPLE)
    try:
        yield server
    finally:
        stop_server(server)


@pytest.fixture(scope="module")
def postmap_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return postmap_config_dir(tmp_path_factory.mktemp("postmap"))


@requires_postmap
@pytest.mark.parametrize("binding", sorted(EXPECTED))
def test_every_binding_domain_and_key_form(example_server: Server, postmap_dir: Path,
                                           binding: str) -> None:
    keys: list[str] = []
    wanted: list[str] = []
    for domain, answer in EXPECTED[binding].items():
        for key in key_forms(domain):
            keys.append(key)
            wanted.append(answer)
    result = postmap_query_many(postmap_dir, example_server.table(binding), keys)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(keys), result.stdout
    for key, answer, line in zip(keys, wanted, lines, strict=True):
        got_key, _tab, value = line.partition("\t")
        assert got_key.lower() == key.lower()
        assert value == answer, f"{binding} {key}"


@requires_postmap
def test_single_queries(example_server: Server, postmap_dir: Path) -> None:
    for binding, domain in (("bulk-1", "payroll-partner.example"),
                            ("tx-us-1", "[192.0.2.25]"), ("default", "bank.example")):
        result = postmap_query(postmap_dir, example_server.table(binding), domain)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == EXPECTED[binding][domain]


@requires_postmap
def test_parent_form_is_not_found(example_server: Server, postmap_dir: Path) -> None:
    result = postmap_query(postmap_dir, example_server.table("bulk-1"), ".example.com")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error" not in result.stderr
    assert example_server.raw("bulk-1 .example.com") == "NOTFOUND "


@requires_postmap
def test_unknown_binding_is_a_permanent_error(example_server: Server,
                                              postmap_dir: Path) -> None:
    result = postmap_query(postmap_dir, example_server.table("no-such-binding"), "example.com")
    assert result.returncode != 0
    assert result.stdout == ""
    assert "error" in result.stderr
    reply = example_server.raw("no-such-binding example.com")
    assert reply.startswith("PERM unknown binding 'no-such-binding'")


@requires_postmap
def test_malformed_key_is_a_permanent_error(example_server: Server, postmap_dir: Path) -> None:
    result = postmap_query(postmap_dir, example_server.table("bulk-1"), "[example.com")
    assert result.returncode != 0
    assert "error" in result.stderr
    assert example_server.raw("bulk-1 [example.com").startswith("PERM malformed key:")
    assert example_server.raw("bulk-1 192.0.2.300").startswith("PERM malformed key:")


@requires_postmap
def test_sighup_reload_and_bad_reload(tmp_path: Path, postmap_dir: Path) -> None:
    config = tmp_path / "policy.toml"
    config.write_text('[global]\ntls = "ifavailable"\n')
    server = start_server(config)
    try:
        table = server.table("default")
        assert postmap_query(postmap_dir, table, "example.com").stdout.strip() == "may"

        config.write_text('[global]\ntls = "required"\n[[binding]]\nname = "b1"\n'
                          'tls_verify = "host"\n')
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if postmap_query(postmap_dir, table, "example.com").stdout.strip() == "encrypt":
                break
            time.sleep(0.1)
        assert postmap_query(postmap_dir, table, "example.com").stdout.strip() == "encrypt"
        assert postmap_query(postmap_dir, server.table("b1"), "example.com"
                             ).stdout.strip() == VERIFY

        # A broken file: the old policy stays, the located error goes to stderr.
        config.write_text('[global]\ntls = "requried"\n')
        server.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert postmap_query(postmap_dir, table, "example.com").stdout.strip() == "encrypt"
    finally:
        err = stop_server(server)
    assert "reload failed" in err
    assert "policy.toml" in err and "tls" in err and "requried" in err


def test_first_load_failure_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[global]\ntls = "requried"\n')
    args = [sys.executable, "-c", _SCRIPT, "serve", "socketmap", "--listen", "127.0.0.1:0",
            "--config", str(config)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "requried" in result.stderr
