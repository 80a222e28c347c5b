"""An input that does not apply is never dropped without a word.

Each destination-policy input that has no effect on a decision (its policy is
switched off, another input outranks it, the plan is already settled) leaves a
note in ``decision.notes`` saying why; ``tlspolicy resolve`` prints the notes,
and its JSON carries them. An input that does apply leaves no "ignored" note.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tlspolicy import (
    Destination,
    MtaStsPolicy,
    Resolver,
    StsMode,
    TlsaLookup,
    TlsaLookupStatus,
    TlsaRecord,
    cli,
    loads_toml,
)
from tlspolicy.policies.mtasts import FetchOutcome

MX = "mx1.example.net"
DOMAIN = "example.net"
ENFORCE = MtaStsPolicy(StsMode.ENFORCE, ("*.example.net",), 86400)
USABLE = TlsaRecord.parse("3 1 1 " + "ab" * 32)


def resolver(tls: str = "ifavailable", *, sts: str = "use_mta_sts = true",
             dane: str = "use_dane = true") -> Resolver:
    return Resolver(loads_toml(f'[global]\ntls = "{tls}"\n{sts}\n{dane}\n'))


CASES = [
    # (configuration, destination, the note that must say why)
    (resolver(sts="use_mta_sts = false"), Destination(mta_sts=ENFORCE),
     "MTA-STS input ignored: use_mta_sts is off"),
    (resolver(sts="use_mta_sts = true\nenable_mta_sts = false"), Destination(mta_sts=ENFORCE),
     "MTA-STS input ignored: enable_mta_sts is off"),
    (resolver(sts="use_mta_sts = false\nenable_mta_sts = false"),
     Destination(mta_sts_fetch=FetchOutcome.FETCH_ERROR),
     "MTA-STS input ignored: use_mta_sts and enable_mta_sts are off"),
    (resolver(dane="use_dane = false"),
     Destination(tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (USABLE,))),
     "TLSA lookup ignored: use_dane is off"),
    (resolver(), Destination(tlsa=TlsaLookup(TlsaLookupStatus.NXDOMAIN)),
     "TLSA lookup nxdomain: no DANE for this host; configuration applies"),
    (resolver(), Destination(tlsa=TlsaLookup(TlsaLookupStatus.INSECURE), mta_sts=ENFORCE),
     "TLSA lookup insecure: no DANE for this host; MTA-STS applies"),
    (resolver(), Destination(mx_dnssec=True),
     "mx_dnssec has no effect here: it only decides whether a REQUIRETLS message"),
    (resolver(), Destination(requiretls=True, tls_required_no=True, mx_dnssec=True),
     "TLS-Required: No ignored: the message carries REQUIRETLS"),
    (resolver(), Destination(tls_required_no=True, mta_sts=ENFORCE),
     "TLS-Required: No: MTA-STS and DANE ignored"),
    (resolver("no"), Destination(tls_broken=True),
     "remembered broken TLS has no effect: TLS is not attempted (tls no)"),
    (resolver(), Destination(tls_broken=True, tlsa=TlsaLookup(TlsaLookupStatus.BOGUS)),
     "remembered broken TLS has no effect: the plan already fails"),
    (resolver(), Destination(mta_sts=ENFORCE,
                             tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (USABLE,))),
     "MTA-STS enforce: its certificate rules give way to DANE"),
]


@pytest.mark.parametrize(("res", "destination", "note"), CASES)
def test_an_input_that_does_not_apply_says_why(res: Resolver, destination: Destination,
                                               note: str) -> None:
    decision = res.resolve(DOMAIN, mx_host=MX, destination=destination)
    assert any(n.startswith(note) for n in decision.notes), decision.notes
    assert list(decision.notes) == decision.to_dict()["notes"]


@pytest.mark.parametrize("destination", [
    Destination(mta_sts=ENFORCE),
    Destination(tlsa=TlsaLookup(TlsaLookupStatus.RECORDS, (USABLE,))),
    Destination(requiretls=True, mx_dnssec=True),
    Destination(tls_broken=True),
    Destination(mta_sts_fetch=FetchOutcome.INVALID),
])
def test_an_input_that_applies_has_no_ignored_note(destination: Destination) -> None:
    decision = resolver().resolve(DOMAIN, mx_host=MX, destination=destination)
    assert not any("ignored" in n or "no effect" in n for n in decision.notes), decision.notes


def test_resolve_prints_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[global]\ntls = "ifavailable"\nuse_mta_sts = false\n', "utf-8")
    policy = tmp_path / "sts.txt"
    policy.write_text("version: STSv1\nmode: enforce\nmx: *.example.net\nmax_age: 86400\n")
    argv = ["resolve", DOMAIN, "--mx-host", MX, "--mta-sts", str(policy), str(config)]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "  note                MTA-STS input ignored: use_mta_sts is off\n" in out
    assert cli.main([*argv, "--json"]) == 0
    assert "MTA-STS input ignored: use_mta_sts is off" in json.loads(
        capsys.readouterr().out)["notes"]
