"""Shadow evaluation (SEMANTICS section 9), the Python part."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategies import PROPERTY_EXAMPLES, configs, requests
from tlspolicy import Config, Resolver, UnknownBindingError, loads_toml
from tlspolicy.cli import main
from tlspolicy.servers.shadow import ShadowResolver

LIVE = """
[global]
tls = "ifavailable"
[[domain]]
name = "partner.example"
tls = "required"
[[binding]]
name = "bulk"
"""
CANDIDATE = """
[global]
tls = "required"
[[domain]]
name = "partner.example"
tls = "ifavailable"
"""


def shadow(**kw: object) -> ShadowResolver:
    return ShadowResolver(Resolver(loads_toml(LIVE)), Resolver(loads_toml(CANDIDATE)),
                          **kw)  # type: ignore[arg-type]


def test_differences_are_classed_counted_and_logged_once_per_key(
        caplog: pytest.LogCaptureFixture) -> None:
    s = shadow(inline=True)
    with caplog.at_level(logging.WARNING, logger="tlspolicy.shadow"):
        for _ in range(3):
            s.resolve("partner.example")
            s.resolve("other.example")
    counts = s.counts()
    assert counts.requests == 6
    assert counts.differing["downgrade"] == 3 and counts.differing["upgrade"] == 3
    assert counts.keys == {"downgrade": 1, "review": 0, "upgrade": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "shadow: downgrade binding 'default' -> partner.example: tls required -> ifavailable",
        "shadow: upgrade binding 'default' -> other.example: tls ifavailable -> required",
    ]
    # A new load logs again.
    s.reset()
    assert s.counts().requests == 0


def test_distinct_keys_are_capped_and_overflow_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    s = shadow(inline=True, max_keys=2)
    with caplog.at_level(logging.WARNING, logger="tlspolicy.shadow"):
        for i in range(5):
            s.resolve(f"d{i}.example")
    counts = s.counts()
    assert counts.keys["upgrade"] == 2 and counts.overflow["upgrade"] == 3
    assert len(caplog.records) == 2


def test_queued_comparisons_and_shedding() -> None:
    s = shadow(queue_size=2)
    for i in range(5):
        s.resolve(f"d{i}.example")
    assert s.pending == 2 and s.counts().shed == 3 and s.counts().requests == 0
    assert s.run_pending(limit=1) == 1 and s.pending == 1
    assert s.run_pending() == 1
    assert s.counts().requests == 2 and s.counts().differing["upgrade"] == 2


def test_candidate_errors_never_reach_the_caller() -> None:
    s = shadow(inline=True)
    decision = s.resolve("x.example", "bulk")  # "bulk" exists only in the live file
    assert decision == Resolver(loads_toml(LIVE)).resolve("x.example", "bulk")
    assert s.counts().errors == 1
    # A live error is the live error, unchanged.
    with pytest.raises(UnknownBindingError):
        s.resolve("x.example", "nope")


@settings(max_examples=PROPERTY_EXAMPLES, suppress_health_check=[HealthCheck.too_slow],
          deadline=None)
@given(configs(), configs(), st.booleans(), st.data())
def test_a_shadow_never_changes_a_live_answer(live: Config, candidate: Config, inline: bool,
                                              data: st.DataObject) -> None:
    plain = Resolver(live)
    s = ShadowResolver(Resolver(live), Resolver(candidate), inline=inline, max_keys=3,
                       queue_size=4)
    for _ in range(3):
        request = data.draw(requests(live, unknown_bindings=True))
        try:
            expected: object = plain.resolve(request.domain, **request.call())
        except Exception as exc:  # the same error must come back
            with pytest.raises(type(exc)):
                s.resolve(request.domain, **request.call())
            continue
        assert s.resolve(request.domain, **request.call()) == expected
    s.run_pending()


# ------------------------------------------------------------------ socketmap mode

def test_postfix_answers_are_classed() -> None:
    from tlspolicy.diff import ChangeClass as C
    from tlspolicy.servers.shadow import class_answers
    from tlspolicy.servers.socketmap import SocketmapReply as R

    assert class_answers(R.ok("may"), R.ok("may")) is None
    assert class_answers(R.ok("may"), R.ok("encrypt")) is C.UPGRADE
    assert class_answers(R.ok("verify match=x"), R.ok("encrypt")) is C.DOWNGRADE
    assert class_answers(R.ok("dane"), R.ok("none")) is C.DOWNGRADE
    assert class_answers(R.ok("dane"), R.ok("encrypt")) is C.REVIEW
    assert class_answers(R.ok("verify tafile=a"), R.ok("verify tafile=b")) is C.REVIEW
    assert class_answers(R.ok("may"), R.perm("broken")) is C.REVIEW


def test_serve_socketmap_with_a_shadow_and_the_report(tmp_path: Path) -> None:
    import signal
    import socket
    import subprocess
    import sys

    from tlspolicy.cli import main
    from tlspolicy.postfix.netstring import encode_netstring

    live = tmp_path / "live.toml"
    live.write_text(LIVE)
    candidate = tmp_path / "candidate.toml"
    candidate.write_text(CANDIDATE)
    report = tmp_path / "shadow.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen", "127.0.0.1:0",
         str(live), "--shadow", str(candidate), "--shadow-report", str(report), "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on"), line + (proc.stderr.read() if proc.stderr
                                                        else "")
        port = int(line.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.settimeout(10)
            answers = []
            for key in ("partner.example", "other.example", "partner.example"):
                sock.sendall(encode_netstring(f"default {key}".encode()))
                data = b""
                while not data.endswith(b","):
                    chunk = sock.recv(4096)
                    assert chunk
                    data += chunk
                answers.append(data.decode())
        # The live answers: the partner encrypted, the rest opportunistic.
        assert answers[0].endswith(":OK encrypt,") and answers[1].endswith(":OK may,")
        import time

        time.sleep(0.5)  # let the shadow drain its queue
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["shadow-report", str(report), "--fail-on-downgrade"])
    text = out.getvalue()
    assert code == 1
    assert "compared 3 requests" in text
    assert "downgrade 2 requests, 1 distinct keys logged" in text
    assert "upgrade   1 requests, 1 distinct keys logged" in text


_GOOD_REPORT = {"written_at": 1.0, "requests": 3, "shed": 0, "errors": 0,
                "differing": {"downgrade": 2, "review": 0, "upgrade": 1},
                "keys": {"downgrade": 1, "review": 0, "upgrade": 1},
                "overflow": {"downgrade": 0, "review": 0, "upgrade": 0}}


@pytest.mark.parametrize(("change", "said"), [
    ({"differing": {"downgrade": None, "review": 0, "upgrade": 0}}, "differing.downgrade"),
    ({"differing": {"downgrade": "0", "review": 0, "upgrade": 0}}, "differing.downgrade"),
    ({"differing": {"review": 0, "upgrade": 0}}, "differing.downgrade"),
    ({"requests": True}, "requests"),
    ({"shed": -1}, "shed"),
    ({"keys": [1, 2]}, "keys"),
])
def test_a_damaged_shadow_report_is_an_error_never_a_pass(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, object],
        said: str) -> None:
    """``shadow-report --fail-on-downgrade`` is a CI gate: a report whose counts cannot be
    read is exit status 2 naming the field, not "None requests" and a pass, nor a
    traceback with the status of a downgrade found."""
    report = tmp_path / "shadow.json"
    report.write_text(json.dumps(_GOOD_REPORT))
    assert main(["shadow-report", str(report), "--fail-on-downgrade"]) == 1
    capsys.readouterr()
    report.write_text(json.dumps({**_GOOD_REPORT, **change}))
    assert main(["shadow-report", str(report), "--fail-on-downgrade"]) == 2
    err = capsys.readouterr().err
    assert "not a shadow report" in err and said in err and "Traceback" not in err


def test_a_shadow_report_that_is_no_regular_json_file_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    for path in (fifo, deep, tmp_path / "absent.json"):
        assert main(["shadow-report", str(path)]) == 2
        err = capsys.readouterr().err
        assert str(path) in err and "Traceback" not in err, err
