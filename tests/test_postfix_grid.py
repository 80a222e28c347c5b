"""What a real sending Postfix driven by ``tlspolicy serve socketmap`` does, against the decision.

Seven real receiving Postfix instances run on their own loopback addresses (no TLS, a good
certificate from the test CA, a wrong name, an expired certificate, a self-signed one, TLS 1.3
only, STARTTLS refused with 500).  A real sending Postfix takes its ``smtp_tls_policy_maps``
from the real ``serve socketmap`` subprocess, which knows the same routes as Postfix: given
as ``--transport-map``/``--relayhost``, or read from the sender's own configuration (a hash:
table with per-recipient entries, an inline: table of next-hop lists, a relayhost).
Every case is one recipient domain with its own policy stanza, reached by one of four kinds of
key: the recipient domain itself (names from a private hosts file), a named next hop
``[host]:port`` through the transport table, an IP-literal next hop ``[127.0.0.x]:port``,
two domains with different policies sharing one next hop, a next-hop list whose first
element refuses connections, and the relayhost.  A further block drives every
``tls_protocols`` version set through Postfix.

For every case the outcome (read from the receivers' and the sender's logs) is compared with
tlspolicy's own decision for the same delivery: Postfix is never weaker, and every case where
it is stricter is explained by a loss note the lookup gives for that key.  The library's smtplib
driver then runs the same grid against the same receivers and must match the decision exactly.

The test CA carries keyUsage, so the drivers' trust check accepts it whatever their handling
of CA certificates without one.  Set ``TLSPOLICY_GRID_TABLE=FILE`` to write the measured
table as Markdown.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import attrs
import pytest

from certs_support import TestCA, make_self_signed
from postfix_support import (
    POSTFIX,
    Attempt,
    Delivery,
    PostfixServer,
    find_postfix_binary,
    free_port,
    receiving_postfix,
    requires_postfix_server,
    sending_postfix,
)
from tlspolicy import Action, Decision, Observation, Resolver
from tlspolicy.adapters import StartTlsStopped
from tlspolicy.adapters.smtplib import starttls
from tlspolicy.formats.loader import load_config
from tlspolicy.formats.postfix import load_transport_table
from tlspolicy.options import TlsVersion
from tlspolicy.postfix.lookup import PolicyLookup, parse_postfix_version
from tlspolicy.postfix.tables import STARTTLS_STATUS_FILTER
from tlspolicy.postfix.transport import parse_transport_table
from tlspolicy.servers.postfix_routes import read_postfix_routes


def _private_mounts() -> bool:
    """Whether ``unshare -m`` works here (the sender's private hosts file needs it)."""
    if shutil.which("unshare") is None:
        return False
    try:
        probe = subprocess.run(["unshare", "-m", "--propagation", "private", "true"],
                               capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.network, pytest.mark.postfix, requires_postfix_server,
    pytest.mark.skipif(not _private_mounts(),
                       reason="unshare -m (util-linux, root) is needed for the sending "
                              "Postfix's private hosts file"),
    pytest.mark.timeout(420),
]

MESSAGE = b"Subject: tlspolicy grid\r\n\r\ngrid\r\n"
SENDER = "grid@sender.tlspolicy.test"
#: Seconds allowed for every queued message to reach a final state.
SETTLE_TIMEOUT = 150.0

VARIANTS = ("notls", "good", "wrongname", "expired", "selfsigned", "tls13", "refused")
ADDRESS = {v: f"127.0.0.{11 + i}" for i, v in enumerate(VARIANTS)}
#: What the receivers' TLS stacks negotiate (pinned in their main.cf).
SUPPORTED = {"tls13": frozenset({TlsVersion.TLSv1_3})}
DEFAULT_SUPPORTED = frozenset({TlsVersion.TLSv1_2, TlsVersion.TLSv1_3})


@attrs.frozen
class Policy:
    id: str
    tls: str
    verify: str = "no"
    fallback: bool = True
    protocols: str | None = None

    def label(self) -> str:
        text = f"{self.tls}/{self.verify}"
        if self.tls == "ifavailable":
            text += f" fb={'on' if self.fallback else 'off'}"
        if self.protocols:
            text += f" {self.protocols}"
        return text

    def toml(self, name: str) -> str:
        lines = [f'[[domain]]\nname = "{name}"', f'tls = "{self.tls}"',
                 f'tls_verify = "{self.verify}"',
                 f"tls_ifavailable_fallback = {'true' if self.fallback else 'false'}"]
        if self.protocols:
            lines.append(f'tls_protocols = "{self.protocols}"')
        return "\n".join(lines) + "\n"


POLICIES = [Policy("p01", "no")]
for fb in (True, False):
    for v in ("no", "optional", "ca", "host"):
        POLICIES.append(Policy(f"p{len(POLICIES) + 1:02d}", "ifavailable", v, fb))
for v in ("no", "optional", "ca", "host"):
    POLICIES.append(Policy(f"p{len(POLICIES) + 1:02d}", "required", v))
for args in (("ifavailable", "no", True, "+ALL:-TLSv1.3"),
             ("ifavailable", "no", False, "+ALL:-TLSv1.3"),
             ("required", "host", True, "+ALL:-TLSv1.3"),
             ("required", "no", True, "-ALL:+TLSv1.3"),
             ("required", "no", True, "+ALL:-SSLv2:-SSLv3:-TLSv1.0:-TLSv1.1"),
             ("required", "no", True, "-ALL:+TLSv1.2"),
             ("ifavailable", "no", True, "+ALL:-TLSv1.2")):
    POLICIES.append(Policy(f"p{len(POLICIES) + 1:02d}", *args))
BY_ID = {p.id: p for p in POLICIES}
IP_POLICIES = [BY_ID[i] for i in ("p05", "p06", "p12", "p13", "p10")]
SHARED = (Policy("sa", "ifavailable", "no"), Policy("sb", "required", "host"))
#: Reached through a next-hop list whose first element refuses connections.
LIST_POLICIES = [BY_ID[i] for i in ("p05", "p13")]
#: Reached through main.cf's relayhost (the "good" receiver), combined at its strictest.
RELAY_POLICIES = [BY_ID[i] for i in ("p05", "p13")]
RELAY_HOP = "relay.hop.test"
DEAD_HOP = "dead.hop.test"
DEAD_ADDRESS = "127.0.0.99"


def _protocol_sets() -> list[frozenset[TlsVersion]]:
    """Every set of versions a tls_protocols value can allow, except SSL-only ones."""
    found = []
    for bits in range(1, 64):
        chosen = frozenset(v for i, v in enumerate(TlsVersion) if bits >> i & 1)
        if chosen & {TlsVersion.TLSv1_0, TlsVersion.TLSv1_1, TlsVersion.TLSv1_2,
                     TlsVersion.TLSv1_3}:
            found.append(chosen)
    return found


def _spec(versions: frozenset[TlsVersion]) -> str:
    return ":".join(["-ALL", *(f"+{v.value}" for v in TlsVersion if v in versions)])


@attrs.frozen
class Case:
    kind: str  # domain, nexthop, ip, shared, protocols
    policy: Policy
    variant: str
    domain: str
    #: The Postfix policy lookup key for this delivery.
    key: str
    #: The host Postfix connects to by name (the decision's MX host), if any.
    mx_host: str | None
    port: int

    @property
    def recipient(self) -> str:
        return f"rcpt@{self.domain}"


@attrs.frozen
class Grid:
    cases: tuple[Case, ...]
    config: str
    #: Every transport entry but the next-hop lists, as the explicit map holds them.
    transport: str
    hosts: str
    port: int
    ip_ports: tuple[int, ...]
    #: The next-hop list entries (pattern, result): in the explicit map, and in an
    #: inline: table of the sender's main.cf.
    lists: tuple[tuple[str, str], ...] = ()

    @property
    def relayhost(self) -> str:
        return f"[{RELAY_HOP}]:{self.port}"

    def explicit_map(self) -> str:
        """The whole transport table as one source file (--transport-map)."""
        return self.transport + "".join(f"{k} {v}\n" for k, v in self.lists)

    def inline_lists(self) -> str:
        """The next-hop list entries as an inline: table."""
        return "inline:{ " + ", ".join(f"{{ {k} = {v} }}" for k, v in self.lists) + " }"


def build_grid(port: int, ip_ports: tuple[int, ...]) -> Grid:
    """Every case; mail of a domain without an entry of its own goes to the relayhost,
    so the transport table sends each other domain's mail where it belongs: ``smtp:``
    (the recipient domain), a per-recipient entry for the next-hop cases."""
    cases: list[Case] = []
    stanzas: list[str] = []
    transport = ["sender.tlspolicy.test discard:"]
    hosts: list[str] = [f"{ADDRESS['good']} {RELAY_HOP}", f"{DEAD_ADDRESS} {DEAD_HOP}"]
    lists: list[tuple[str, str]] = []
    for variant in VARIANTS:
        addr = ADDRESS[variant]
        for policy in POLICIES:
            domain = f"d-{policy.id}-{variant}.rcpt.test"
            cases.append(Case("domain", policy, variant, domain, domain, None, port))
            stanzas.append(policy.toml(domain))
            transport.append(f"{domain} smtp:")
            hosts.append(f"{addr} {domain}")
            hop = f"h-{policy.id}-{variant}.hop.test"
            domain = f"n-{policy.id}-{variant}.rcpt.test"
            key = f"[{hop}]:{port}"
            cases.append(Case("nexthop", policy, variant, domain, key, hop, port))
            stanzas.append(policy.toml(domain))
            # The grid's recipient through its next hop; the domain's other mail direct.
            transport.append(f"rcpt@{domain} smtp:{key}")
            transport.append(f"{domain} smtp:")
            hosts.append(f"{addr} {hop}")
        for policy in LIST_POLICIES:
            hop = f"l-{policy.id}-{variant}.hop.test"
            domain = f"l-{policy.id}-{variant}.rcpt.test"
            key = f"[{hop}]:{port}"
            cases.append(Case("list", policy, variant, domain, key, hop, port))
            stanzas.append(policy.toml(domain))
            lists.append((domain, f"smtp:[{DEAD_HOP}]:{port}, {key}"))
            hosts.append(f"{addr} {hop}")
        for policy, ip_port in zip(IP_POLICIES, ip_ports, strict=True):
            domain = f"i-{policy.id}-{variant}.rcpt.test"
            key = f"[{addr}]:{ip_port}"
            cases.append(Case("ip", policy, variant, domain, key, None, ip_port))
            stanzas.append(policy.toml(domain))
            transport.append(f"{domain} smtp:{key}")
        hop = f"shared-{variant}.hop.test"
        hosts.append(f"{addr} {hop}")
        for policy in SHARED:
            domain = f"s-{policy.id}-{variant}.rcpt.test"
            key = f"[{hop}]:{port}"
            cases.append(Case("shared", policy, variant, domain, key, hop, port))
            stanzas.append(policy.toml(domain))
            transport.append(f"{domain} smtp:{key}")
    for variant in ("good", "tls13"):
        for tls in ("required", "ifavailable"):
            if tls == "ifavailable" and variant != "good":
                continue
            for versions in _protocol_sets():
                bits = sum(1 << i for i, v in enumerate(TlsVersion) if v in versions)
                policy = Policy(f"v{bits:02d}{tls[0]}", tls, "no", True, _spec(versions))
                domain = f"v-{bits:02d}-{tls}-{variant}.rcpt.test"
                cases.append(Case("protocols", policy, variant, domain, domain, None, port))
                stanzas.append(policy.toml(domain))
                transport.append(f"{domain} smtp:")
                hosts.append(f"{ADDRESS[variant]} {domain}")
    for policy in RELAY_POLICIES:
        domain = f"r-{policy.id}-good.rcpt.test"
        cases.append(Case("relay", policy, "good", domain, f"[{RELAY_HOP}]:{port}", RELAY_HOP,
                          port))
        stanzas.append(policy.toml(domain))
    return Grid(tuple(cases), "\n".join(stanzas), "\n".join(transport) + "\n",
                "\n".join(hosts) + "\n", port, ip_ports, tuple(lists))


# ------------------------------------------------------------------------ outcomes


def decision_outcome(decision: Decision, variant: str) -> str:
    """What tlspolicy's decision does with this receiver: tls, plain, defer or bounce."""
    if decision.plan is Action.SKIP:
        return "plain"
    if decision.plan is not Action.ATTEMPT:
        return "defer"
    if variant == "notls":
        outcome = decision.outcome(Observation.STARTTLS_NOT_ADVERTISED)
    elif variant == "refused":
        outcome = decision.outcome(Observation.STARTTLS_REJECTED)
    elif not decision.parameters.protocols & SUPPORTED.get(variant, DEFAULT_SUPPORTED):
        outcome = decision.outcome(Observation.HANDSHAKE_FAILED)
    else:
        problems = {"good": [], "tls13": [], "wrongname": [Observation.NAME_MISMATCH],
                    "expired": [Observation.CERTIFICATE_EXPIRED],
                    "selfsigned": [Observation.CHAIN_NOT_TRUSTED,
                                   Observation.NAME_MISMATCH]}[variant]
        outcome = decision.after_certificate(problems)
    if outcome.action is Action.PROCEED:
        return "tls"
    if outcome.action in (Action.SKIP, Action.FALLBACK):
        return "plain"
    assert outcome.status is not None
    return "bounce" if outcome.status.permanent else "defer"


_DELIVERED = ("tls", "plain", "tls-late", "plain-late")


def compare(postfix: str, decision: str) -> str:
    """``same``, ``stricter`` or ``weaker`` (Postfix against the decision)."""
    if postfix == decision:
        return "same"
    if postfix in _DELIVERED and decision not in _DELIVERED:
        return "weaker"
    if postfix.startswith("plain") and decision == "tls":
        return "weaker"
    return "stricter"


def explaining_codes(case: Case, postfix: str, decision: str) -> set[str]:
    """The loss codes that account for a stricter Postfix outcome."""
    codes: set[str] = set()
    if case.kind in ("shared", "relay"):
        codes.add("nexthop-strictest")
    if postfix.endswith("-late") and postfix.removesuffix("-late") == decision:
        codes.add("handshake-fallback-delayed")
    if postfix == "bounce":
        codes.add("starttls-5xx")
    if postfix in ("defer", "bounce") and decision == "plain":
        # Not offered: the decision skips TLS; refused or failed: it falls back.
        codes.add("ifavailable-verify")
        if case.variant == "notls":
            codes.add("fallback-false-encrypt")
    if postfix in ("defer", "bounce") and decision == "tls":
        if case.variant == "wrongname":
            codes |= {"ca-as-verify", "nexthop-match"}
        elif case.variant in ("good", "tls13"):
            codes |= {"nexthop-match", "protocols-not-contiguous"}
    return codes


# ------------------------------------------------------------------------ running


@attrs.frozen
class Result:
    case: Case
    decision: str
    postfix: str
    verdict: str
    codes: tuple[str, ...]


def _postfix_outcome(case: Case, attempts: dict[str, list[Attempt]],
                     delivered: dict[str, dict[str, Delivery]]) -> str | None:
    """The final outcome of one case so far, ``None`` while it is still open."""
    tries = attempts.get(case.recipient, [])
    deferred = sum(1 for a in tries if a.status == "deferred")
    if any(a.status == "bounced" for a in tries):
        return "bounce"
    if any(a.status == "sent" for a in tries):
        delivery = delivered[case.variant].get(case.recipient)
        if delivery is None:
            return None
        kind = "tls" if delivery.tls is not None else "plain"
        return f"{kind}-late" if deferred else kind
    if deferred >= 2:
        return "defer"
    return None


@contextlib.contextmanager
def _serve(config: Path, routes: list[str], listen: int = 0
           ) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    args = [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen",
            f"127.0.0.1:{listen}", "--config", str(config), *routes,
            # The private sending Postfix is not the machine's /etc/postfix the checks read.
            "--quiet", "--no-postfix-checks"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            process.kill()
            _out, err = process.communicate(timeout=10)
            pytest.fail(f"serve socketmap did not start: {line!r} {err}")
        yield int(line.strip().rpartition(":")[2]), process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def _receivers(stack: contextlib.ExitStack, directory: Path, grid: Grid
               ) -> dict[str, PostfixServer]:
    # Postfix's smtp client reads the CA (tafile=) as the postfix user.
    ca = TestCA(directory / "ca", name="tlspolicy grid CA")
    names = ["mx.tlspolicy.test", "*.rcpt.test", "*.hop.test"]
    now, day = datetime.datetime.now(datetime.UTC), datetime.timedelta(days=1)
    good = ca.issue(names, stem="good")
    certs = {
        "good": good, "tls13": good, "refused": good,
        "wrongname": ca.issue(["wrong.example"], stem="wrong"),
        "expired": ca.issue(names, stem="expired", not_before=now - 30 * day,
                            not_after=now - day),
        "selfsigned": make_self_signed(directory / "self", "mx.tlspolicy.test"),
    }
    (directory / "ca.pem").write_bytes(ca.pem)
    receivers: dict[str, PostfixServer] = {}
    for variant in VARIANTS:
        floor = ">=TLSv1.3" if variant == "tls13" else ">=TLSv1.2"
        extra = {"smtpd_tls_protocols": floor, "smtpd_tls_mandatory_protocols": floor}
        files: dict[str, str] = {}
        if variant == "refused":
            extra["smtpd_command_filter"] = "regexp:{conf}/commands"
            files["commands"] = "/^STARTTLS/ XSTARTTLS\n"
        cert = certs.get(variant)
        receivers[variant] = stack.enter_context(receiving_postfix(
            cert=cert.chain_path if cert else None, key=cert.key_path if cert else None,
            security_level="none" if variant == "notls" else "may",
            host=ADDRESS[variant], port=grid.port, extra_ports=grid.ip_ports,
            extra_main_cf=extra, extra_files=files))
    return receivers


def _driver_outcome(case: Case, decision: Decision, receiver: PostfixServer) -> str:
    try:
        result = starttls(decision, ADDRESS[case.variant], case.port,
                          local_hostname="driver.tlspolicy.test", timeout=15,
                          unsupported="warn")
    except StartTlsStopped as stopped:
        return "bounce" if stopped.status.permanent else "defer"
    recipient = f"driver@{case.domain}"
    try:
        result.smtp.sendmail(SENDER, [recipient], MESSAGE)
    finally:
        with contextlib.suppress(Exception):
            result.smtp.quit()
    delivery = receiver.wait_for_delivery(recipient, timeout=30)
    return "tls" if delivery.tls is not None else "plain"


def _cell(r: Result | None) -> str:
    if r is None:
        return ""
    if r.verdict == "same":
        return r.postfix
    return f"**{r.postfix}** ({r.decision}; {', '.join(r.codes)})"


def render_table(results: list[Result]) -> str:
    """Markdown: one row per policy and kind of key (kinds with equal rows merged), one
    column per receiver variant; a stricter cell shows the decision and the loss codes."""
    rows: dict[tuple[str, str], dict[str, Result]] = {}
    for r in results:
        if r.case.kind != "protocols":
            rows.setdefault((r.case.policy.label(), r.case.kind), {})[r.case.variant] = r
    merged: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for (label, kind), cells in rows.items():
        shown = tuple(_cell(cells.get(v)) for v in VARIANTS)
        merged.setdefault((label, shown), []).append(kind)
    lines = ["| key | policy | " + " | ".join(VARIANTS) + " |",
             "|" + "---|" * (len(VARIANTS) + 2)]
    for (label, shown), kinds in merged.items():
        lines.append(f"| {', '.join(kinds)} | `{label}` | " + " | ".join(shown) + " |")
    counts = Counter(r.verdict for r in results)
    proto = [r for r in results if r.case.kind == "protocols"]
    lines += ["", "| tls_protocols version sets | receiver | as the decision | stricter |",
              "|---|---|---|---|"]
    for tls, variant in (("required", "good"), ("required", "tls13"), ("ifavailable", "good")):
        block = [r for r in proto if r.case.policy.tls == tls and r.case.variant == variant]
        odd = Counter((r.postfix, r.decision, ", ".join(r.codes))
                      for r in block if r.verdict != "same")
        text = "; ".join(f"{n}: {got} where the decision is {want} ({why})"
                         for (got, want, why), n in odd.items()) or "0"
        lines.append(f"| {len(block)} at `{tls}/no` | {variant} | "
                     f"{sum(r.verdict == 'same' for r in block)} | {text} |")
    lines += ["", f"{len(results)} cases: {counts['same']} as the decision, "
              f"{counts['stricter']} stricter, {counts['weaker']} weaker."]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("routes", ["explicit-map", "postfix-routes"])
def test_postfix_and_drivers_against_the_decision(routes: str) -> None:
    """``explicit-map``: serve is given the transport table and relayhost
    (``--transport-map``, ``--relayhost``); ``postfix-routes``: serve reads them from the
    sending Postfix's own configuration (a hash: table through postmap -s, an inline:
    table of next-hop lists, main.cf's relayhost)."""
    assert POSTFIX is not None
    started = time.monotonic()
    # Not under tmp_path: the postfix user must read the CA file (tafile=) there.
    directory = Path(tempfile.mkdtemp(prefix="tlspolicy-grid-"))
    directory.chmod(0o755)
    port = free_port()
    ip_ports = tuple(free_port() for _ in IP_POLICIES)
    grid = build_grid(port, ip_ports)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, directory, ignore_errors=True)
        receivers = _receivers(stack, directory, grid)
        ca_path = directory / "ca.pem"
        config = directory / "policy.toml"
        config.write_text(f'[global]\ntls_ca = "{ca_path}"\n\n{grid.config}')
        transport = directory / "transport"
        transport.write_text(grid.explicit_map())
        explicit = routes == "explicit-map"
        if explicit:
            serve_port, serve_process = stack.enter_context(_serve(
                config, ["--transport-map", str(transport), "--relayhost", grid.relayhost]))
        else:
            serve_port = free_port()  # serve starts once the sender's main.cf is written
        version = parse_postfix_version(subprocess.run(
            [find_postfix_binary("postconf") or "postconf", "-h", "mail_version"],
            capture_output=True, text=True, check=True, timeout=30).stdout)
        resolver = Resolver(load_config(config))
        sender = stack.enter_context(sending_postfix(
            main_cf={
                "smtp_tls_policy_maps": f"socketmap:inet:127.0.0.1:{serve_port}:default",
                "transport_maps": "texthash:{conf}/transport" if explicit else
                                  f"hash:{{conf}}/transport, {grid.inline_lists()}",
                "relayhost": grid.relayhost,
                "smtp_tls_security_level": "none",
                "smtp_dns_support_level": "disabled",
                "smtp_host_lookup": "native",
                "smtp_tcp_port": str(port),
                "smtp_connect_timeout": "5s",
                "smtp_delivery_status_filter": "regexp:{conf}/status-filter",
                "minimal_backoff_time": "2s",
                "maximal_backoff_time": "3s",
                "queue_run_delay": "1s",
                "default_destination_concurrency_limit": "5",
            },
            files={"transport": grid.explicit_map() if explicit else grid.transport,
                   "status-filter": STARTTLS_STATUS_FILTER},
            hosts=grid.hosts, indexed=() if explicit else ("transport",)))
        if explicit:
            route_table = load_transport_table(transport) + parse_transport_table(
                f"* smtp:{grid.relayhost}\n", file="--relayhost")
        else:
            serve_port, serve_process = stack.enter_context(_serve(
                config, ["--postfix-config-dir", str(sender.config_dir)], listen=serve_port))
            route_table = read_postfix_routes(str(sender.config_dir)).routes
            assert {r.nexthop_text for r in route_table.routes} >= {
                grid.relayhost, f"[{DEAD_HOP}]:{port}"}
        lookup = PolicyLookup(resolver, routes=route_table, postfix_version=version)
        recipients = [c.recipient for c in grid.cases]
        for start in range(0, len(recipients), 100):
            sender.submit(SENDER, recipients[start:start + 100], MESSAGE)

        # The drivers run meanwhile, on the same receivers.
        decisions = {c: resolver.resolve(c.domain, mx_host=c.mx_host) for c in grid.cases}
        with ThreadPoolExecutor(8) as pool:
            driven = dict(zip(grid.cases, pool.map(
                lambda c: _driver_outcome(c, decisions[c], receivers[c.variant]), grid.cases),
                strict=True))

        deadline = time.monotonic() + SETTLE_TIMEOUT
        outcomes: dict[Case, str] = {}
        while True:
            # The logs are parsed once per round, not once per case.
            attempts = sender.attempts()
            delivered = {v: {d.recipient: d for d in r.deliveries()}
                         for v, r in receivers.items()}
            for case in grid.cases:
                if case not in outcomes:
                    found = _postfix_outcome(case, attempts, delivered)
                    if found is not None:
                        outcomes[case] = found
            if len(outcomes) == len(grid.cases) or time.monotonic() > deadline:
                break
            time.sleep(1.0)
        sender_log = sender.log_text
        if dump := os.environ.get("TLSPOLICY_GRID_LOG"):
            Path(dump).write_text(sender_log)
        serve_process.terminate()
        _out, serve_err = serve_process.communicate(timeout=15)

    missing = [c.recipient for c in grid.cases if c not in outcomes]
    assert not missing, f"no final outcome for {missing[:10]}; sender log:\n{sender_log[-5000:]}"
    assert "Invalid TLS protocol list" not in sender_log
    assert "unattributed" not in serve_err and "named by no transport route" not in serve_err

    results: list[Result] = []
    problems: list[str] = []
    for case in grid.cases:
        expected = decision_outcome(decisions[case], case.variant)
        got = outcomes[case]
        verdict = compare(got, expected)
        codes = tuple(sorted({n.code for n in lookup.notes("default", case.key)}))
        if verdict == "stricter":
            explained = explaining_codes(case, got, expected) & set(codes)
            if not explained:
                problems.append(f"{case.kind} {case.policy.label()} x {case.variant}: Postfix "
                                f"{got}, decision {expected}, no loss note explains it "
                                f"(notes: {codes})")
            codes = tuple(sorted(explained))
        elif verdict == "weaker":
            problems.append(f"WEAKER {case.kind} {case.policy.label()} x {case.variant}: "
                            f"Postfix {got}, decision {expected} (key {case.key})")
        if driven[case] != expected:
            problems.append(f"driver {case.kind} {case.policy.label()} x {case.variant}: "
                            f"{driven[case]}, decision {expected}")
        results.append(Result(case, expected, got, verdict, codes))

    table = render_table(results)
    sys.stdout.write(table)
    sys.stdout.write(f"grid finished in {time.monotonic() - started:.0f} s\n")
    if target := os.environ.get("TLSPOLICY_GRID_TABLE"):
        Path(f"{target}.{routes}" if routes != "explicit-map" else target).write_text(table)
    assert not problems, "\n".join(problems)
