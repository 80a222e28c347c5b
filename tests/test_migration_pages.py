"""The migration pages' commands run as written.

Each ```` ```console ```` block of ``docs/howto/replace-postfix-mta-sts-resolver.md`` and
``docs/howto/replace-postfix-tlspol.md`` that follows a ``<!-- tested -->`` line is run
here, in page order: ``$ `` lines are commands, the lines under one are its expected
output. Only what a test machine must change is changed, through the explicit lists
below: the ports and paths the pages name, the test domains of the signed DNS and HTTPS
labs on loopback for the pages' example domains, and the lab's resolver, policy port,
CA and cache appended to tlspolicy's own commands. ``serve socketmap`` without
``--check`` is started as the daemon the later commands ask; ``systemctl restart
tlspolicy`` stops and starts it, ``systemctl reload tlspolicy`` sends it ``SIGHUP``;
``postmap`` is Postfix's own, asking the daemon over its socket.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from discovery_support import PolicyAnswer
from postfix_support import POSTMAP, free_port, postmap_config_dir, requires_postmap
from test_importcache import ENTRIES, TLSPOL_CACHE, write_resolver_sqlite

ROOT = Path(__file__).resolve().parent.parent
PAGES = ROOT / "docs" / "howto"
DEADLINE = 30.0
"""Seconds one command (or the daemon's start, or an answer on a cold cache) may take."""

pytestmark = [pytest.mark.network, pytest.mark.postfix, pytest.mark.slow,
              pytest.mark.timeout(300), requires_postmap]

_BLOCK = re.compile(r"^<!-- tested -->\n```console\n(.*?)^```$", re.M | re.S)


@attrs.frozen
class Command:
    line: str
    expected: tuple[str, ...]


def page_commands(page: str) -> list[Command]:
    """The commands of the page's tested console blocks, with their expected output."""
    commands: list[Command] = []
    for block in _BLOCK.findall((PAGES / page).read_text("utf-8")):
        for line in block.splitlines():
            if line.startswith("$ "):
                commands.append(Command(line[2:], ()))
            else:
                assert commands, f"{page}: output before any command: {line!r}"
                last = commands[-1]
                commands[-1] = attrs.evolve(last, expected=(*last.expected, line))
    return commands


# The page's example domains -> the labs' domains with the same publication.
DOMAINS = (
    ("example.com", "ok.secure.test"),      # an enforce policy, served
    ("example.org", "keep.secure.test"),    # imported from the old cache; host now down
    ("example.net", "nodane.secure.test"),  # nothing published
)


@attrs.frozen
class Lab:
    """Where a page's commands run: the port for the page's, the Postfix configuration
    postmap reads, the page's paths and domains replaced, and the flags appended to the
    tlspolicy commands that start with a prefix (the labs' resolver, policy port, CA and
    cache, which a real machine has at their defaults)."""

    port: int
    conf: Path
    paths: tuple[tuple[str, str], ...]
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    domains: tuple[tuple[str, str], ...] = DOMAINS

    def substitute(self, text: str, page_port: str) -> str:
        text = text.replace(f"127.0.0.1:{page_port}", f"127.0.0.1:{self.port}")
        for old, new in (*self.domains, *self.paths):
            text = text.replace(old, new)
        return text

    def command(self, line: str) -> list[str] | None:
        """The argv of one page command, or None for a `systemctl reload|restart`."""
        if line in ("systemctl reload tlspolicy", "systemctl restart tlspolicy"):
            return None
        shell = line
        if line.startswith("tlspolicy "):
            extra = next((flags for prefix, flags in self.extra if line.startswith(prefix)),
                         ())
            shell = f"{sys.executable} -m {' '.join((line, *extra))}"
        elif line.startswith("postmap "):
            assert POSTMAP is not None
            shell = f"{POSTMAP} -c {self.conf} {line.removeprefix('postmap ')}"
        else:
            pytest.fail(f"a tested command the test does not know how to run: {line!r}")
        return ["bash", "-c", shell]


@pytest.fixture
def lab(dns_lab: Any, https_lab: Any, tmp_path: Path) -> Iterator[Lab]:
    https_lab.reset()
    # The imported domain's policy host is down: only the imported policy can answer.
    https_lab.set("keep.secure.test", PolicyAnswer(b"", status=503))
    old_sqlite = tmp_path / "mta-sts-cache.db"
    write_resolver_sqlite(old_sqlite, ENTRIES)
    # Debian's defaults (no DANE prerequisites): drop-in mode starts and serves MTA-STS.
    conf = postmap_config_dir(tmp_path / "postfix")
    (conf / "master.cf").write_text("smtp unix - - y - - smtp\n")
    cache = ("--cache", str(tmp_path / "discovery.sqlite3"))
    discovery = ("--resolver", "127.0.0.1", "--resolver-port", str(dns_lab.port),
                 "--probe-name", "test.", "--https-port", str(https_lab.port),
                 "--ca-file", str(https_lab.ca_file),
                 # The answers the pages show are Postfix 3.7's (no STS attributes).
                 "--postfix-version", "3.7.11", "--postfix-config-dir", str(conf))
    yield Lab(
        port=free_port(), conf=conf,
        paths=(("/var/lib/mta-sts/cache.db", str(old_sqlite)),
               ("/var/lib/postfix-tlspol/cache.db", str(TLSPOL_CACHE))),
        extra=(("tlspolicy serve socketmap", (*discovery, *cache)),
               ("tlspolicy import-cache", cache)))
    https_lab.reset()


def _wait_listening(process: subprocess.Popen[bytes], out: Path, err: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while "listening on" not in out.read_text():
        if process.poll() is not None:
            pytest.fail(f"the daemon exited {process.returncode}: {err.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"the daemon did not listen within {DEADLINE:.0f} s")
        time.sleep(0.1)


def _run_until(argv: list[str], expected: tuple[str, ...], limit: float = DEADLINE
               ) -> subprocess.CompletedProcess[str]:
    """Run a command; a lookup whose answer is not the page's yet (a cold cache) is asked
    again, within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE,
                                check=False)
        if not expected or tuple(result.stdout.splitlines()) == expected:
            return result
        if time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def run_page(page: str, page_port: str, lab: Lab, tmp_path: Path,
             commands: list[Command] | None = None, limit: float = DEADLINE) -> list[str]:
    commands = page_commands(page) if commands is None else commands
    out, err = tmp_path / "daemon.out", tmp_path / "daemon.err"
    daemon: subprocess.Popen[bytes] | None = None
    daemon_argv: list[str] = []
    ran: list[str] = []
    try:
        for command in commands:
            line = lab.substitute(command.line, page_port)
            expected = tuple(lab.substitute(x, page_port) for x in command.expected)
            argv = lab.command(line)
            if argv is None:
                assert daemon is not None, f"{page}: {line} before the daemon runs"
                if line.endswith("reload tlspolicy"):
                    daemon.send_signal(signal.SIGHUP)
                    time.sleep(0.5)
                    assert daemon.poll() is None, err.read_text()
                else:
                    daemon.terminate()
                    daemon.wait(20)
                    with out.open("wb") as o, err.open("ab") as e:
                        daemon = subprocess.Popen(daemon_argv, stdout=o, stderr=e)
                    _wait_listening(daemon, out, err)
                ran.append(command.line)
                continue
            if "serve socketmap" in line and "--check" not in line:
                daemon_argv = argv
                with out.open("wb") as o, err.open("wb") as e:
                    daemon = subprocess.Popen(argv, stdout=o, stderr=e)
                _wait_listening(daemon, out, err)
                ran.append(command.line)
                continue
            result = _run_until(argv, expected, limit)
            detail = f"{command.line}\n{result.stdout}{result.stderr}"
            if daemon is not None:
                detail += f"\n--- daemon log ---\n{err.read_text()}"
            assert result.returncode == 0, detail
            assert "Traceback" not in result.stderr, detail
            if expected:
                assert tuple(result.stdout.splitlines()) == expected, detail
            ran.append(command.line)
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(20)
    return ran


def _kinds(ran: list[str]) -> set[str]:
    kinds = set()
    for line in ran:
        if line.startswith("tlspolicy serve socketmap"):
            kinds.add("check" if line.endswith("--check") else "serve")
        else:
            kinds.add(line.split()[0] + (" " + line.split()[1] if " " in line else ""))
    return kinds


def test_replace_postfix_mta_sts_resolver_page_runs(lab: Lab, tmp_path: Path) -> None:
    ran = run_page("replace-postfix-mta-sts-resolver.md", "8461", lab, tmp_path)
    assert "tlspolicy serve socketmap --discovery --listen 127.0.0.1:8461" in ran
    assert {"check", "serve", "tlspolicy import-cache", "postmap -q",
            "systemctl reload"} <= _kinds(ran), ran
    # The old map name's line in main.cf, unchanged, is what the page asks through.
    assert any(line.endswith("socketmap:inet:127.0.0.1:8461:postfix") for line in ran)


def test_replace_postfix_tlspol_page_runs(lab: Lab, tmp_path: Path) -> None:
    ran = run_page("replace-postfix-tlspol.md", "8642", lab, tmp_path)
    assert "tlspolicy serve socketmap --discovery --listen 127.0.0.1:8642" in ran
    assert {"check", "serve", "tlspolicy import-cache", "postmap -q",
            "systemctl reload"} <= _kinds(ran), ran
    assert any(line.endswith("socketmap:inet:127.0.0.1:8642:QUERY") for line in ran)


def _import_into_a_running_daemon(then: str) -> list[Command]:
    """The resolver page's commands in the other order: tlspolicy already serves (and has
    already failed to fetch the imported domain's policy) when the old cache is imported;
    then ``then``, and the lookup of the imported domain."""
    commands = page_commands("replace-postfix-mta-sts-resolver.md")
    serve = next(c for c in commands if c.line.startswith("tlspolicy serve socketmap")
                 and not c.line.endswith("--check"))
    imports = next(c for c in commands if c.line.startswith("tlspolicy import-cache"))
    imported = next(c for c in commands if c.line.startswith("postmap")
                    and "example.org" in c.line)
    # Asked before the import: the policy host is down and nothing is cached.
    before = Command(imported.line + '; echo "exit $?"', ("exit 1",))
    return [serve, before, imports, Command(then, ()), imported]


def test_an_import_into_a_running_daemon_takes_effect_on_restart(lab: Lab,
                                                                 tmp_path: Path) -> None:
    commands = _import_into_a_running_daemon("systemctl restart tlspolicy")
    ran = run_page("replace-postfix-mta-sts-resolver.md", "8461", lab, tmp_path, commands)
    assert len(ran) == 5


def test_an_import_into_a_running_daemon_takes_effect_on_reload(lab: Lab,
                                                                tmp_path: Path) -> None:
    commands = _import_into_a_running_daemon("systemctl reload tlspolicy")
    run_page("replace-postfix-mta-sts-resolver.md", "8461", lab, tmp_path, commands, limit=10)


def test_daemon_tutorial_runs(tmp_path: Path) -> None:
    """The tutorial's demo: the bundled example written, checked, tested, resolved,
    served, and asked through Postfix's postmap."""
    lab = Lab(port=free_port(), conf=postmap_config_dir(tmp_path / "postfix"),
              paths=(("/srv/tlspolicy-demo", str(tmp_path / "demo")),), domains=())
    ran = run_page("../tutorial-daemon.md", "10027", lab, tmp_path)
    assert {"tlspolicy example", "tlspolicy check", "tlspolicy test", "tlspolicy resolve",
            "serve", "postmap -q"} <= _kinds(ran), ran


def test_every_tested_block_is_found() -> None:
    # A marker the pattern misses would leave commands untested without a word.
    for page in ("replace-postfix-mta-sts-resolver.md", "replace-postfix-tlspol.md",
                 "../tutorial-daemon.md"):
        text = (PAGES / page).read_text("utf-8")
        assert text.count("<!-- tested -->") == len(_BLOCK.findall(text)) > 0, page
    assert os.path.isdir(PAGES)
