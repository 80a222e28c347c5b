"""Non-OK socketmap answers are logged once per map name, key and cause, at WARNING,
rate-limited (issue: an operator must see why Postfix deferred mail, and a flood of bad
keys must not become a flood of log lines)."""

from __future__ import annotations

import logging

import pytest

from tlspolicy.postfix.replies import SocketmapReply
from tlspolicy.servers.answerlog import NonOkLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_once_per_key_and_cause(caplog: pytest.LogCaptureFixture) -> None:
    log = NonOkLog(clock=Clock())
    unknown = SocketmapReply.perm("unknown binding 'postfix' (declared: default)")
    with caplog.at_level(logging.INFO, logger="tlspolicy"):
        for _ in range(3):
            log.note("postfix", "example.com", unknown)
        log.note("postfix", "example.org", unknown)
        log.note("default", "example.com", SocketmapReply.temp("neither could be read"))
        log.note("default", "example.com", SocketmapReply.ok("may"))
        log.note("default", "x.example", SocketmapReply.notfound())
    lines = [r for r in caplog.records if r.name == "tlspolicy"]
    assert len(lines) == 3
    assert all(r.levelno == logging.WARNING for r in lines)
    assert "PERM" in lines[0].getMessage() and "'example.com'" in lines[0].getMessage()
    assert "unknown binding 'postfix'" in lines[0].getMessage()
    assert "asking again gives the same answer" in lines[0].getMessage()
    assert "TEMP" in lines[2].getMessage() and "asks again later" in lines[2].getMessage()
    assert log.counts == {"PERM": 4, "TEMP": 1}


def test_rate_limited_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    log = NonOkLog(clock=clock, rate=1.0, burst=5.0)
    reply = SocketmapReply.perm("malformed key: not a domain")
    with caplog.at_level(logging.WARNING, logger="tlspolicy"):
        for n in range(100):
            log.note("default", f"bad{n}", reply)
        assert len(caplog.records) == 5
        assert log.held_back == 95
        clock.now = 10.0
        log.note("default", "one-more", reply)
    assert len(caplog.records) == 6
    assert "[95 more non-OK answers not logged]" in caplog.records[-1].getMessage()
    assert log.held_back == 0


def test_remembers_a_bounded_number_of_keys() -> None:
    log = NonOkLog(clock=Clock(), remembered=10, rate=1e9, burst=1e9)
    reply = SocketmapReply.perm("x")
    for n in range(1000):
        log.note("m", f"k{n}", reply)
    assert len(log._seen) == 10
