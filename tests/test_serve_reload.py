"""Reloads under load: each setting a reload re-reads, changed while clients keep asking.

The real ``serve socketmap --discovery`` runs against the signed DNS lab and the HTTPS lab
(real servers on loopback), with Postfix's configuration in a private directory read with
the real ``postconf`` and ``postmap``.  Eight clients ask without pause over their own
connections, as Postfix's processes do, while the test changes, one after the other: the
policy file, ``mail_version``, the ``[discovery]`` table, Postfix's DANE prerequisites,
main.cf's relayhost (each followed by SIGHUP) and an indexed transport table (``postmap``
alone: the server notices the new ``.db``).  After each change the new answer must come,
and at the end every request sent must have had its answer.
"""

from __future__ import annotations

import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from postfix_support import POSTMAP, requires_postmap

pytestmark = [pytest.mark.network, pytest.mark.slow, requires_postmap,
              pytest.mark.timeout(300)]

KEYS = ("a.test", "b.test", "[hop.test]:25", "[smart.test]:587", "e2e.secure.test")


def _faults() -> Any:
    import test_daemon_faults

    return test_daemon_faults


class Load:
    """Clients asking every key in turn, each over its own connection, until stopped."""

    def __init__(self, port: int, faults: Any, clients: int = 8) -> None:
        self.port = port
        self.faults = faults
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.answered = 0
        self.errors: list[str] = []
        self.bad: list[str] = []
        self.threads = [threading.Thread(target=self._run, daemon=True)
                        for _ in range(clients)]

    def _run(self) -> None:
        try:
            client = self.faults.Client(self.port, timeout=30.0)
        except OSError as exc:
            with self.lock:
                self.errors.append(f"connect: {exc}")
            return
        try:
            while not self.stop.is_set():
                for key in KEYS:
                    with self.lock:
                        self.sent += 1
                    reply = client.ask(key)
                    with self.lock:
                        self.answered += 1
                        if not reply.startswith(("OK ", "NOTFOUND")):
                            self.bad.append(f"{key}: {reply}")
        except Exception as exc:  # every failure is reported by the test
            with self.lock:
                self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            client.close()

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)


def test_every_reread_setting_changes_the_answers_under_load(
        dns_lab: Any, https_lab: Any, tmp_path: Path) -> None:
    faults = _faults()
    https_lab.reset()
    cache = tmp_path / "cache.sqlite3"
    table = faults.discovery_table(dns_lab.port, https_lab, cache)
    del table["postfix_version"]  # read from postconf: mail_version below
    config = faults.BASE + (
        '\n[[domain]]\nname = "a.test"\ntls = "required"\n'
        'tls_protocols = "-ALL:+TLSv1.2:+TLSv1.3"\nuse_dane = false\nuse_mta_sts = false\n'
        '\n[[domain]]\nname = "h.test"\ntls = "required"\ntls_verify = "host"\n'
        'use_dane = false\nuse_mta_sts = false\n')
    daemon = faults.Daemon(tmp_path, config, table, ("--route-poll", "0.5"))
    conf = tmp_path / "postfix"
    assert POSTMAP is not None
    original = faults._postfix_dir

    def postfix_dir(directory: Path) -> Path:
        made = original(directory)
        with (made / "main.cf").open("a") as main:
            main.write(f"mail_version = 3.7.11\ntransport_maps = hash:{made}/transport\n")
        (made / "transport").write_text("a.test smtp:[other.test]\n")
        subprocess.run([POSTMAP, "-c", str(made), f"hash:{made / 'transport'}"], check=True,
                       timeout=30)
        return made

    faults._postfix_dir = postfix_dir
    try:
        daemon.start()
    finally:
        faults._postfix_dir = original
    main_cf = conf / "main.cf"
    policy = tmp_path / "policy.toml"

    def sighup() -> None:
        assert daemon.process is not None
        daemon.process.send_signal(signal.SIGHUP)

    def wait_for(what: str, key: str, good: Callable[[str], bool]) -> str:
        seen: list[str] = []

        def check() -> bool:
            seen.append(daemon.ask(key))
            return good(seen[-1])

        faults.poll(what, check, limit=60.0, every=0.2,
                    detail=lambda: f"{seen[-3:]!r}\n{daemon.log()[-2000:]}")
        return seen[-1]

    try:
        wait_for("DANE answers", "e2e.secure.test", lambda a: a == "OK dane-only")
        assert daemon.ask("a.test") == "OK encrypt protocols=>=TLSv1.2"
        assert daemon.ask("b.test").startswith("OK may")
        # No route names these yet: the host's own policy.
        assert daemon.ask("[hop.test]:25").startswith("OK may")
        assert daemon.ask("[smart.test]:587").startswith("OK may")
        with Load(daemon.port, faults) as load:
            # 1. The policy file.
            policy.write_text(policy.read_text().replace(
                "[discovery]", '[[domain]]\nname = "b.test"\ntls = "required"\n'
                "use_dane = false\nuse_mta_sts = false\n\n[discovery]"))
            sighup()
            wait_for("the new policy file", "b.test", lambda a: a.startswith("OK encrypt"))
            # 2. mail_version: the protocol syntax of Postfix before 3.6.
            main_cf.write_text(main_cf.read_text().replace("mail_version = 3.7.11",
                                                           "mail_version = 3.5.9"))
            sighup()
            wait_for("mail_version 3.5.9", "a.test",
                     lambda a: a == "OK encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1")
            # 3. The [discovery] table: its postfix_version wins over mail_version; a
            # setting that needs a restart is named in the log and stays.
            policy.write_text(policy.read_text().replace(
                "[discovery]\n", '[discovery]\npostfix_version = "3.7.11"\n').replace(
                "dns_timeout = 0.5", "dns_timeout = 0.75"))
            sighup()
            wait_for("the table's postfix_version", "a.test",
                     lambda a: a == "OK encrypt protocols=>=TLSv1.2")
            faults.poll("the restart notice", lambda: "dns_timeout (0.5 -> 0.75)" in
                        daemon.log() and "only after a restart" in daemon.log())
            # 4. Postfix's DANE prerequisites: gone, so no answer is dane or dane-only.
            main_cf.write_text(main_cf.read_text().replace(
                "smtp_dns_support_level = dnssec", "smtp_dns_support_level = enabled"))
            sighup()
            wait_for("DANE off", "e2e.secure.test", lambda a: "dane" not in a)
            # 5. main.cf's relayhost: routes every domain without an entry of its own.
            with main_cf.open("a") as main:
                main.write("relayhost = [smart.test]:587\n")
            sighup()
            wait_for("the relayhost route", "[smart.test]:587",
                     lambda a: a.startswith("OK secure") or a.startswith("OK verify"))
            # 6. The indexed transport table, rebuilt with postmap and no SIGHUP.
            (conf / "transport").write_text("a.test smtp:[other.test]\n"
                                            "h.test smtp:[hop.test]:25\n")
            subprocess.run([POSTMAP, "-c", str(conf), f"hash:{conf / 'transport'}"],
                           check=True, timeout=30)
            wait_for("the rebuilt transport table", "[hop.test]:25",
                     lambda a: a.startswith(("OK secure", "OK verify")))
            assert "transport.db changed: reloading" in daemon.log()
        assert not load.errors, load.errors[:5]
        assert load.sent == load.answered > 100, (load.sent, load.answered)
        assert not load.bad, load.bad[:5]
    finally:
        daemon.stop()
