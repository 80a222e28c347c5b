"""The policy daemon end to end: a real sending Postfix asks ``tlspolicy serve socketmap``
for its TLS policy and delivers to real receiving Postfix instances, with DNS (NSD behind a
validating Unbound, a signed zone) and MTA-STS (HTTPS with a test CA) all real.

Everything runs inside private network, mount and PID namespaces (``unshare``), because
Postfix delivers to port 25 of the MX host and its own DANE asks the resolver of
``/etc/resolv.conf`` on port 53: there the lab may bind ports 25, 53 and 443 and mount its
own ``resolv.conf`` and ``/etc/postfix`` without touching the machine's.  The worker
(``daemon_e2e_worker.py``) builds the lab, sends one message per scenario and prints what the
logs say; the kernel ends every server with the namespace.

Scenarios, each proved from the sending Postfix's log and the receiver's:

- ``sts_wrong_name``: an MTA-STS ``enforce`` domain whose MX host presents a certificate for
  another name: deferred, nothing delivered;
- ``sts_good``: the same with a good certificate: delivered over verified TLS;
- ``dane_good``: a signed zone with TLSA ``3 1 1`` of the MX host's key: Postfix matches the
  TLSA record and delivers;
- ``dane_mismatch``: the TLSA record names another key: deferred, nothing delivered;
- ``dane_over_sts``: DANE and an MTA-STS enforce policy for one domain, the MX host's
  certificate self-signed: the answer must be DANE's (as MTA-STS's it would defer);
- the outage (discovery only): the policy hosts stop and the daemon restarts on its SQLite
  cache; new mail to the two MTA-STS domains still gets their cached enforce policies
  (deferred, delivered verified), while a policy never fetched gives the operator's answer,
  not TEMP.

The daemon runs twice: with its static configuration (stanzas saying what the policies and
TLSA records would: ``verify`` and Postfix's level ``dane``), and with ``--discovery`` and
``use_dane``/``use_mta_sts`` on, where it finds the MTA-STS policies and TLSA records itself
and answers ``secure match=<policy mx> servername=hostname`` and ``dane-only`` (SEMANTICS
section 11 (d) and (b)).  Postfix's first lookup of each domain meets a cold cache; the
answers are asked again with ``postmap`` afterwards.

Drop-in mode (SEMANTICS 11) runs the lab twice more: the command of the migration pages with
no file, on postfix-mta-sts-resolver's port with its map name ``postfix`` and on
postfix-tlspol's with ``QUERY``, against a sending Postfix configured as Debian ships it plus
only that main.cf line (so DANE is off, one warning says so): the enforce policy is answered
and delivered verified or deferred, a domain with nothing published is NOTFOUND and goes at
Postfix's own level, and ``QUERYwithTLSRPT`` carries no MTA-STS attributes to Postfix 3.7.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from postfix_support import find_postfix_binary

WORKER = Path(__file__).with_name("daemon_e2e_worker.py")
#: Seconds the whole worker may take (a hang guard, not a timing assert).
WORKER_TIMEOUT = 120.0
#: Seconds the worker's own waits may take, inside WORKER_TIMEOUT.
WORKER_DEADLINE = 90.0
UNSHARE = ["unshare", "--net", "--mount", "--pid", "--fork", "--kill-child", "--mount-proc",
           "--propagation", "private"]
_BINARIES = ("unshare", "ip", "mount", "postfix", "postmap", "postconf", "sendmail", "nsd",
             "unbound", "ldns-keygen", "ldns-signzone")


def _which(name: str) -> str | None:
    return find_postfix_binary(name)


@functools.cache
def _missing() -> str | None:
    """Why the lab cannot run here, or ``None``."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root (private namespaces, ports 25, 53 and 443)"
    absent = [name for name in _BINARIES if _which(name) is None]
    if absent:
        return (f"{', '.join(absent)} not installed (.ci/install-postfix.sh, "
                ".ci/install-discovery.sh, .ci/install-e2e.sh)")
    try:
        probe = subprocess.run([*UNSHARE, "sh", "-c", "ip link set lo up"],
                               capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"private namespaces are not permitted here ({exc})"
    if probe.returncode != 0:
        return f"private namespaces are not permitted here: {probe.stderr.strip()}"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.network, pytest.mark.postfix,
    pytest.mark.skipif(_missing() is not None, reason=_missing() or ""),
    pytest.mark.timeout(2 * WORKER_TIMEOUT + 60),
]

# Each module-scoped lab takes half a minute to build and serves several tests.  Spread
# test by test over the xdist workers (``--dist loadgroup``), every worker built every lab
# for its share; one group per fixture builds each lab once, and the two groups still run
# beside each other.
ON_LAB = pytest.mark.xdist_group("daemon-e2e-lab")
ON_DROP_IN_LAB = pytest.mark.xdist_group("daemon-e2e-drop-in-lab")


def run_worker(discovery: bool, drop_in: str = "") -> dict[str, Any]:
    """Run the lab once in fresh namespaces; its JSON result."""
    # The worker mounts a tmpfs on this directory inside its mount namespace; here it stays
    # empty, and the tmpfs goes with the namespace.
    directory = Path(tempfile.mkdtemp(prefix="tlspolicy-e2e-"))
    try:
        options = {"directory": str(directory), "discovery": discovery,
                   "deadline": WORKER_DEADLINE, "drop_in": drop_in}
        try:
            # Not exec'd: the shell stays the namespace's first process and reaps orphans.
            done = subprocess.run([*UNSHARE, "sh", "-c", '"$@"; exit $?', "sh", sys.executable,
                                   str(WORKER), json.dumps(options)],
                                  capture_output=True, text=True, timeout=WORKER_TIMEOUT,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            # unshare was killed; --kill-child ends the namespace's first process, and with
            # it every process of the namespace.
            pytest.fail(f"the end-to-end worker did not finish within {WORKER_TIMEOUT} s; "
                        f"stderr:\n{exc.stderr!r}")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    lines = done.stdout.strip().splitlines()
    if not lines:
        pytest.fail(f"the worker printed nothing (exit {done.returncode}); stderr:\n"
                    f"{done.stderr[-5000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "error" in result:
        pytest.fail(f"the worker failed: {result['error']}\n{result.get('traceback', '')}\n"
                    f"stderr:\n{done.stderr[-5000:]}")
    return result


@pytest.fixture(scope="module", params=["static", "discovery"])
def lab(request: pytest.FixtureRequest) -> dict[str, Any]:
    discovery = request.param == "discovery"
    result = run_worker(discovery)
    assert result["discovery"] is discovery
    # The daemon answered every query and was still running at the end.
    assert result["daemon_exit"] is None, result["daemon_stderr"]
    # Its start-up checks of the sending Postfix's settings (--postfix-config-dir) found
    # nothing to report, and no answer was logged as a problem.
    noisy = [line for line in result["daemon_stderr"]
             if line.startswith(("tlspolicy: WARNING", "tlspolicy: ERROR", "tlspolicy: error"))]
    assert noisy == [], noisy
    return result


def _scenario(lab: dict[str, Any], name: str) -> dict[str, Any]:
    scenario: dict[str, Any] = lab["scenarios"][name]
    return scenario


def _explain(scenario: dict[str, Any]) -> str:
    return ("answer: " + json.dumps(scenario["answer"]) + "\nattempts: "
            + json.dumps(scenario["attempts"]) + "\nsender log:\n"
            + "\n".join(scenario["sender_log"]) + "\nreceiver:\n"
            + json.dumps(scenario["deliveries"]))


def _has_line(scenario: dict[str, Any], text: str) -> bool:
    return any(text in line for line in scenario["sender_log"])


def _answer_level(scenario: dict[str, Any]) -> tuple[str, list[str]]:
    answer = scenario["answer"]
    assert answer["status"] == 0, answer
    level, *attributes = answer["value"].split()
    return level, attributes


def _check_sts_answer(lab: dict[str, Any], scenario: dict[str, Any]) -> None:
    level, attributes = _answer_level(scenario)
    if lab["discovery"]:
        # SEMANTICS 11 (d): the policy's MX patterns, the host name for SNI.
        assert level == "secure", scenario["answer"]
        assert f"match={scenario['mx']}" in attributes, scenario["answer"]
        assert "servername=hostname" in attributes, scenario["answer"]
        # Postfix 3.7 takes no MTA-STS attributes (3.10).
        assert not any(a.startswith("policy_") for a in attributes), scenario["answer"]
        # Found for real: the daemon fetched the policy from its host.
        assert f"mta-sts.{scenario['domain']}" in lab["https_requests"]
    else:
        assert level == "verify", scenario["answer"]


def _check_dane_answer(lab: dict[str, Any], scenario: dict[str, Any]) -> None:
    level, attributes = _answer_level(scenario)
    # SEMANTICS 11 (b) with discovery; use_dane exported as Postfix's level without it.
    assert level == ("dane-only" if lab["discovery"] else "dane"), scenario["answer"]
    assert not any(a.startswith(("match=", "tafile=")) for a in attributes), scenario["answer"]


def _deferred_for_certificate(scenario: dict[str, Any]) -> None:
    attempts = scenario["attempts"]
    assert attempts, "no attempt logged\n" + _explain(scenario)
    assert all(a["status"] == "deferred" for a in attempts), _explain(scenario)
    assert attempts[0]["why"] == "Server certificate not verified", _explain(scenario)
    assert scenario["deliveries"] == [], _explain(scenario)


def _delivered_verified(scenario: dict[str, Any]) -> None:
    attempts = scenario["attempts"]
    assert [a["status"] for a in attempts] == ["sent"], _explain(scenario)
    assert _has_line(scenario, f"Verified TLS connection established to {scenario['mx']}"
                               f"[{scenario['address']}]:25"), _explain(scenario)
    deliveries = scenario["deliveries"]
    assert [d["status"] for d in deliveries] == ["sent"], _explain(scenario)
    # The receiver logged the session the message came in on as TLS.
    assert deliveries[0]["tls"] is not None, _explain(scenario)
    assert deliveries[0]["tls"]["protocol"].startswith("TLSv1."), _explain(scenario)


@ON_LAB
def test_sts_enforce_wrong_name_defers(lab: dict[str, Any]) -> None:
    scenario = _scenario(lab, "sts_wrong_name")
    _check_sts_answer(lab, scenario)
    _deferred_for_certificate(scenario)
    assert _has_line(scenario, f"server certificate verification failed for {scenario['mx']}"
                               f"[{scenario['address']}]:25: num=62:hostname mismatch"), \
        _explain(scenario)


@ON_LAB
def test_sts_enforce_good_certificate_delivers_verified(lab: dict[str, Any]) -> None:
    scenario = _scenario(lab, "sts_good")
    _check_sts_answer(lab, scenario)
    _delivered_verified(scenario)
    assert _has_line(scenario, f"matched peername: {scenario['mx']}"), _explain(scenario)


@ON_LAB
def test_dane_tlsa_verified_by_postfix(lab: dict[str, Any]) -> None:
    scenario = _scenario(lab, "dane_good")
    _check_dane_answer(lab, scenario)
    _delivered_verified(scenario)
    usage, selector, mtype, digest = scenario["tlsa"].split()
    # The certificate is self-signed: only the TLSA record can have verified it.
    assert _has_line(scenario, f"Matched DANE EE certificate at depth 0: {usage} {selector} "
                               f"{mtype} {digest.upper()}"), _explain(scenario)


@ON_LAB
def test_dane_tlsa_mismatch_defers(lab: dict[str, Any]) -> None:
    scenario = _scenario(lab, "dane_mismatch")
    _check_dane_answer(lab, scenario)
    _deferred_for_certificate(scenario)
    assert _has_line(scenario, "num=65:no matching DANE TLSA records"), _explain(scenario)


@ON_LAB
def test_dane_wins_over_mta_sts(lab: dict[str, Any]) -> None:
    scenario = _scenario(lab, "dane_over_sts")
    _check_dane_answer(lab, scenario)
    _delivered_verified(scenario)
    assert _has_line(scenario, "Matched DANE EE certificate at depth 0: "), _explain(scenario)


@ON_LAB
def test_outage_cached_enforce_policies_still_apply(lab: dict[str, Any]) -> None:
    if not lab["discovery"]:
        pytest.skip("a static configuration has no cache to fall back on")
    outage = lab["outage"]
    assert outage["daemon_exit"] is None, outage["daemon_stderr"]
    wrong = outage["scenarios"]["sts_wrong_name"]
    _check_sts_answer(lab, wrong)
    _deferred_for_certificate(wrong)
    assert _has_line(wrong, "num=62:hostname mismatch"), _explain(wrong)
    good = outage["scenarios"]["sts_good"]
    _check_sts_answer(lab, good)
    _delivered_verified(good)
    # The control: without a cached policy the fetch failure leaves the operator's mapping.
    cold = outage["cold_answer"]
    assert (cold["status"], cold["value"]) == (0, "may"), cold


# ------------------------------------------------------------------- drop-in mode


@pytest.fixture(scope="module", params=["mta-sts-resolver", "tlspol"])
def drop_in_lab(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The drop-in command with no file on a peer's port, and a sending Postfix as Debian
    ships it plus only that peer's main.cf line (SEMANTICS 11, "Drop-in mode")."""
    result = run_worker(True, request.param)
    assert result["drop_in"] == request.param
    assert result["daemon_exit"] is None, result["daemon_stderr"]
    # Debian's defaults have no DNSSEC support level: one warning says DANE is off and
    # what to change; nothing else is logged as a problem.
    noisy = [line for line in result["daemon_stderr"]
             if line.startswith(("tlspolicy: WARNING", "tlspolicy: ERROR", "tlspolicy: error"))]
    assert len(noisy) == 1 and "DANE is off" in noisy[0], noisy
    assert "smtp_dns_support_level = dnssec" in noisy[0], noisy
    return result


def _notfound(answer: dict[str, Any]) -> None:
    # postmap -q: exit 1 and no output when the table has no entry (NOTFOUND).
    assert (answer["status"], answer["value"]) == (1, ""), answer


@ON_DROP_IN_LAB
def test_drop_in_enforce_policy_answered_and_delivered_verified(
        drop_in_lab: dict[str, Any]) -> None:
    good = _scenario(drop_in_lab, "sts_good")
    assert good["answer"]["status"] == 0, good["answer"]
    assert good["answer"]["value"] == "secure match=mx.stsgood.test servername=hostname"
    _delivered_verified(good)
    assert _has_line(good, f"matched peername: {good['mx']}"), _explain(good)
    wrong = _scenario(drop_in_lab, "sts_wrong_name")
    assert wrong["answer"]["value"].startswith("secure match=mx.stswrong.test"), wrong
    _deferred_for_certificate(wrong)


@ON_DROP_IN_LAB
def test_drop_in_nothing_published_is_notfound_and_postfix_own_level_applies(
        drop_in_lab: dict[str, Any]) -> None:
    _notfound(drop_in_lab["unknown_answer"])
    # A DANE domain without MTA-STS while Postfix cannot do DANE: NOTFOUND, and Postfix's
    # own level (may) delivers it over TLS.
    scenario = _scenario(drop_in_lab, "dane_good")
    _notfound(scenario["answer"])
    assert [a["status"] for a in scenario["attempts"]] == ["sent"], _explain(scenario)
    assert _has_line(scenario, "TLS connection established to mx.danegood.test"), \
        _explain(scenario)
    assert scenario["deliveries"][0]["tls"] is not None, _explain(scenario)


@ON_DROP_IN_LAB
def test_drop_in_query_with_tlsrpt_against_postfix_37_has_no_sts_attributes(
        drop_in_lab: dict[str, Any]) -> None:
    assert drop_in_lab["postfix"].startswith("3.7"), drop_in_lab["postfix"]
    answer = _scenario(drop_in_lab, "sts_good")["answer_with_tlsrpt"]
    assert answer == {"status": 0, "value": "secure match=mx.stsgood.test servername=hostname",
                      "error": ""}, answer
