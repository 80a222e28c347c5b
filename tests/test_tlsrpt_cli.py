"""``tlspolicy report build|send|show`` against real stores, DNS, HTTPS and SMTP."""

from __future__ import annotations

import datetime
import gzip
import json
import time
from pathlib import Path

import attrs
import pytest

from discovery_support import TLSRPT_DOMAIN, TLSRPT_SUBMITTER, DnsLab, HttpsLab
from smtp_servers import Mode, make_cert_set, smtp_server
from test_tlsrpt_reports import check_report
from tlspolicy.cli import main
from tlspolicy.cli.report import _KINDS
from tlspolicy.policies.tlsrpt import PolicyType, SessionResult
from tlspolicy.reporting import DAY, BufferedSink, ReportingConfig, period_start
from tlspolicy.stores import SqliteStore

pytestmark = [pytest.mark.network, pytest.mark.timeout(120)]


def _record(path: Path, moment: float) -> None:
    with BufferedSink(lambda: SqliteStore(path), clock=lambda: moment) as sink:
        for n in range(7):
            sink.record(SessionResult(PolicyType.NO_POLICY_FOUND, TLSRPT_DOMAIN) if n % 3 else
                        SessionResult(PolicyType.NO_POLICY_FOUND, TLSRPT_DOMAIN,
                                      result_type="certificate-expired",
                                      receiving_mx_hostname=f"mx.{TLSRPT_DOMAIN}",
                                      receiving_ip="127.0.0.1"))


def test_build_send_show(dns_lab: DnsLab, https_lab: HttpsLab, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    certs = make_cert_set(tmp_path / "certs")
    start = period_start(time.time()) - 2 * DAY
    day = datetime.datetime.fromtimestamp(start, datetime.UTC).date().isoformat()
    store = tmp_path / "tlsrpt.sqlite3"
    _record(store, start + 100)
    with smtp_server(Mode.TLS, tls_context=certs.context("valid")) as receiver:
        settings = tmp_path / "report.toml"
        settings.write_text(f"""
[reporting]
organization_name = "tlspolicy CLI test"
contact_info = "mailto:postmaster@{TLSRPT_SUBMITTER}"
submitter = "{TLSRPT_SUBMITTER}"
mail_from = "tlsrpt@{TLSRPT_SUBMITTER}"
dkim_key_file = "{dns_lab.dkim_key}"
smtp_port = {receiver.port}
https_port = {https_lab.port}
ca_file = "{https_lab.ca_file}"
timeout = 10.0

[store]
sqlite = "{store}"

[discovery]
resolver = "127.0.0.1"
resolver_port = {dns_lab.port}
probe_name = "test."
resolv_conf = false
""".replace("resolv_conf = false", ""))
        assert main(["report", "show", "-s", str(settings), "--date", day]) == 0
        shown = capsys.readouterr().out
        assert "certificate-expired" in shown and "none built" in shown
        out = tmp_path / "out"
        assert main(["report", "build", "-s", str(settings), "--date", day,
                     "--domain", TLSRPT_DOMAIN, "-o", str(out)]) == 0
        [line] = capsys.readouterr().out.splitlines()
        assert line.startswith(f"built\t{TLSRPT_DOMAIN}\t")
        [written] = out.iterdir()
        report = json.loads(gzip.decompress(written.read_bytes()))
        check_report(report)
        assert report["policies"][0]["summary"] == {"total-successful-session-count": 4,
                                                    "total-failure-session-count": 3}
        assert main(["report", "build", "-s", str(settings), "--date", day,
                     "-o", str(out)]) == 0
        assert capsys.readouterr().out.startswith("exists\t")
        assert main(["report", "send", "-s", str(settings)]) == 0
        sent = capsys.readouterr().out.splitlines()
        assert sorted(line.split("\t")[0] for line in sent) == ["delivered", "delivered"]
        assert main(["report", "send", "-s", str(settings)]) == 0
        assert capsys.readouterr().out == ""
        assert len(receiver.messages) == 1
        assert main(["report", "show", "-s", str(settings), "--date", day]) == 0
        shown = capsys.readouterr().out
        assert shown.count("delivered") == 2 and written.name in shown


def test_bad_settings_are_clear_errors(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "bad.toml"
    settings.write_text('[reporting]\norganization_name = "x"\ncolour = "blue"\n')
    assert main(["report", "show", "-s", str(settings)]) == 2
    err = capsys.readouterr().err
    assert "colour" in err and "Traceback" not in err
    settings.write_text('[reporting]\norganization_name = "x"\n[store]\n'
                        f'sqlite = "{tmp_path / "x.sqlite3"}"\n')
    assert main(["report", "show", "-s", str(settings)]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["report", "show", "-s", str(tmp_path / "absent.toml")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["report", "show", "-s", str(settings), "--date", "someday"]) == 2
    capsys.readouterr()
    # Values of the wrong type are refused by name (a true was a 1-second period), a bad
    # Redis URL names the file, and a file nested too deeply is not valid TOML.
    base = ('[reporting]\norganization_name = "x"\ncontact_info = "a@b.example"\n'
            'submitter = "b.example"\nmail_from = "a@b.example"\n')
    for extra, said in [("period = true\n", "period must be a whole number, not True"),
                        ("organization_name = 5\n", "organization_name must be a string"),
                        ("smtp_port = \"x\"\n", "smtp_port must be a whole number"),
                        ("https_port = -5\n", "https_port must be a port, 1 to 65535"),
                        ("smtp_port = 99999999\n", "smtp_port must be a port"),
                        ('[store]\nredis = "foo://x"\n', "[store] redis: not a Redis URL"),
                        ("x = " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply")]:
        text = base.replace('organization_name = "x"\n', "") if "organization" in extra \
            else base
        settings.write_text(text + extra)
        assert main(["report", "show", "-s", str(settings)]) == 2
        err = capsys.readouterr().err
        assert said in err and str(settings) in err and "Traceback" not in err, err


def test_every_reporting_option_has_a_kind_a_settings_file_is_checked_against() -> None:
    assert {str(f.type).removesuffix(" | None") for f in attrs.fields(ReportingConfig)} \
        <= set(_KINDS)
