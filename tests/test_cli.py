"""The command line as one tool: help for every argument, one way to take configuration files.

- Every command's ``--help`` runs, and every argument it lists has help text
  (the deprecated spellings kept for old scripts are hidden on purpose).
- Table-driven: every command that reads configuration files takes them the
  same way (positional ``FILE`` and ``--config FILE`` give the same result,
  ``--format`` reads a TOML file whatever its name, a bad file is an error
  naming it, exit 2), and without files the inspecting commands say on
  standard error that they use the bundled example while ``check``, ``lint``
  and ``serve`` refuse.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

import tlspolicy
from tlspolicy import cli

EXAMPLE = Path(tlspolicy.__file__).parent / "data" / "example.toml"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _subcommands(parser: argparse.ArgumentParser,
                 path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                              argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _subcommands(sub, (*path, name))


COMMANDS = [path for path, _ in _subcommands(cli.build_parser())]


def test_every_command_is_reached() -> None:
    assert {p[0] for p in COMMANDS if p} == {
        "resolve", "check", "lint", "convert", "serve", "test", "diff", "tree", "discover",
        "cache", "report", "exceptions", "shadow-report", "import-cache", "example"}
    assert ("serve", "socketmap") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=lambda p: " ".join(p) or "tlspolicy")
def test_help_describes_every_argument(path: tuple[str, ...],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main([*path, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    parser = dict(_subcommands(cli.build_parser()))[path]
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            # Hidden on purpose: an old spelling that still works.
            assert all(o in cli.DEPRECATED_OPTIONS for o in action.option_strings), action
            continue
        name = "/".join(action.option_strings) or str(action.metavar or action.dest)
        assert action.help, f"{' '.join(path)}: argument {name} has no help text"
        shown = action.option_strings[0] if action.option_strings else (
            action.metavar if isinstance(action.metavar, str) else action.dest)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                assert choice.help, f"{' '.join(path)}: command {choice.dest} has no help text"
                assert choice.dest in text
        else:
            assert shown in text, f"{' '.join(path)} --help does not show {name}"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out == f"tlspolicy {tlspolicy.__version__}\n"


# ---------------------------------------------------------------------------
# Configuration files, one rule for every command


@attrs.frozen
class Command:
    """How one command is run in the table below."""

    argv: tuple[str, ...]
    positional: bool = True        # takes configuration files as positional FILE
    without_files: str = "example"  # "example": bundled example, noted; "refuse"
    words: int = 1                  # words before the files: the command, its DOMAIN


def _expectations(tmp: Path) -> str:
    path = tmp / "cases.toml"
    path.write_text('[[case]]\ndomain = "ordinary.example"\nplan = "attempt"\n', "utf-8")
    return str(path)


TABLE: dict[str, Callable[[Path], Command]] = {
    "resolve": lambda tmp: Command(("resolve", "payroll-partner.example",
                                    "--binding", "tx-us-1"), words=2),
    "tree": lambda tmp: Command(("tree",)),
    "convert": lambda tmp: Command(("convert", "--to", "toml")),
    "check": lambda tmp: Command(("check",), without_files="refuse"),
    "lint": lambda tmp: Command(("lint",), without_files="refuse"),
    # The Postfix version is given: postconf, which would read it, fails on a machine
    # without main.cf (a "No configuration" install), and no Postfix is involved here.
    "serve": lambda tmp: Command(("serve", "socketmap", "--listen", "127.0.0.1:0",
                                  "--no-file-checks", "--no-postfix-checks",
                                  "--postfix-version", "3.7.11"),
                                 without_files="refuse", words=2),
    "test": lambda tmp: Command(("test", _expectations(tmp)), positional=False),
    "exceptions": lambda tmp: Command(("exceptions",)),
}


def test_table_covers_every_command_reading_one_configuration() -> None:
    # diff takes two configurations (OLD NEW, or --old/--new): tested on its own below.
    # discover takes files the same way but needs the real DNS and HTTPS servers: its
    # positional/--config equality is in test_discovery_cli.py. cache and shadow-report read
    # no configuration, nor does import-cache; report reads its settings file (and --config
    # only for delivery); example writes the bundled example and reads none.
    assert set(TABLE) | {"diff", "discover", "cache", "report", "shadow-report",
                         "import-cache", "example"} == {
        p[0] for p in COMMANDS if p}


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Stand in for the blocking server loop: build the lookup once, as it would, and
    return (the socketmap server itself has its own tests)."""
    from tlspolicy.servers import running

    built: list[Any] = []

    def run_once(factory: Callable[[], Any], **_: Any) -> None:
        built.append(factory())
        print("served")

    monkeypatch.setattr(running, "run_forever", run_once)
    return built


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    target = tmp_path / "policy.toml"
    shutil.copy(EXAMPLE, target)
    return target


@pytest.mark.parametrize("name", sorted(TABLE))
def test_positional_and_config_are_the_same(name: str, tmp_path: Path, policy: Path,
                                            served: list[Any],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    command = TABLE[name](tmp_path)
    by_option = run(capsys, *command.argv, "--config", str(policy))
    assert by_option[0] in (0, 1), by_option
    assert by_option[2] == "" or "note: no configuration" not in by_option[2]
    short = run(capsys, *command.argv, "-c", str(policy))
    assert short == by_option
    if command.positional:
        # Before the command's own arguments, after them, or among them.
        assert run(capsys, *command.argv, str(policy)) == by_option
        head, tail = command.argv[:command.words], command.argv[command.words:]
        assert run(capsys, *head, str(policy), *tail) == by_option


@pytest.mark.parametrize("name", sorted(TABLE))
def test_format_reads_toml_whatever_the_name(name: str, tmp_path: Path, policy: Path,
                                             served: list[Any],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    command = TABLE[name](tmp_path)
    misnamed = tmp_path / "outbound.conf"
    shutil.copy(policy, misnamed)
    expected = run(capsys, *command.argv, "--config", str(policy))
    code, out, err = run(capsys, *command.argv, "--config", str(misnamed))
    assert code == 2 or (name in ("check", "lint") and code == 1)
    assert "pass --format toml" in err
    code, out, err = run(capsys, *command.argv, "--format", "toml", "--config", str(misnamed))
    assert code == expected[0]
    assert out.replace(str(misnamed), str(policy)) == expected[1]


@pytest.mark.parametrize("name", sorted(TABLE))
def test_a_bad_file_is_an_error_naming_it(name: str, tmp_path: Path, served: list[Any],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    command = TABLE[name](tmp_path)
    bad = tmp_path / "bad.toml"
    bad.write_text('[global]\ntls = "requried"\n', "utf-8")
    code, out, err = run(capsys, *command.argv, "--config", str(bad))
    assert code in (1, 2)
    assert f"{bad}:2" in out + err and "requried" in out + err
    assert "Traceback" not in err
    missing = tmp_path / "missing.toml"
    code, out, err = run(capsys, *command.argv, "--config", str(missing))
    assert code in (1, 2) and str(missing) in out + err


@pytest.mark.parametrize("name", sorted(TABLE))
def test_without_files(name: str, tmp_path: Path, served: list[Any],
                       capsys: pytest.CaptureFixture[str]) -> None:
    command = TABLE[name](tmp_path)
    code, out, err = run(capsys, *command.argv)
    if command.without_files == "example":
        assert code in (0, 1)
        assert "tlspolicy: note: no configuration file given: using the bundled example" in err
        shutil.copy(EXAMPLE, tmp_path / "example.toml")
        same = run(capsys, *command.argv, "--config", str(tmp_path / "example.toml"))
        described = same[1].replace(str(tmp_path / "example.toml"),
                                    "the bundled example configuration")
        assert (code, out) == (same[0], described)
    else:
        assert code == 2 and out == ""
        assert f"{command.argv[0]} needs configuration files (FILE or --config FILE)" in err
        assert not served


def test_diff_sides(tmp_path: Path, policy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = tmp_path / "new.toml"
    # A stanza no floor holds up (the partners' floors would keep their tls required).
    new.write_text(policy.read_text("utf-8").replace(
        'name = "partner-vpn.example"\n  tls = "required"',
        'name = "partner-vpn.example"\n  tls = "ifavailable"'), "utf-8")
    positional = run(capsys, "diff", str(policy), str(new))
    assert positional[0] == 0 and "downgrade" in positional[1]
    assert run(capsys, "diff", "--old", str(policy), "--new", str(new)) == positional
    misnamed = tmp_path / "new.conf"
    shutil.copy(new, misnamed)
    code, out, _ = run(capsys, "diff", "--format", "toml", str(policy), str(misnamed))
    assert code == 0 and out.replace(str(misnamed), str(new)) == positional[1]
    code, _out, err = run(capsys, "diff", str(policy))
    assert code == 2 and "no new configuration given" in err


# ---------------------------------------------------------------------------
# One vocabulary: resolve's flags, expectation files' [case.inputs], Destination

_HEX = "ab" * 32
_POLICY = "version: STSv1\nmode: enforce\nmx: mx1.payroll-partner.example\nmax_age: 86400\n"


def _resolve_parser() -> argparse.ArgumentParser:
    return dict(_subcommands(cli.build_parser()))[("resolve",)]


def test_every_input_has_the_flag_of_its_name() -> None:
    from tlspolicy import Destination
    from tlspolicy.cli.resolve import INPUT_FLAGS
    from tlspolicy.policytests.expectations import INPUT_KEYS

    assert list(INPUT_FLAGS) == list(INPUT_KEYS)
    fields = {f.name for f in attrs.fields(Destination)}
    options = {o for a in _resolve_parser()._actions for o in a.option_strings}
    for key, flag in INPUT_FLAGS.items():
        assert flag in options
        # The flag is the key with dashes (one record per --tlsa-record).
        assert flag == "--" + key.replace("_", "-").replace("records", "record")
        assert key in fields or key.startswith("tlsa_")
    assert "--mx-host" in options  # mx_host of a case and of the decision JSON


def test_input_values_are_the_expectation_values() -> None:
    from tlspolicy.policies.dane import TlsaLookupStatus
    from tlspolicy.policies.mtasts import FetchOutcome

    actions = {a.option_strings[0]: a for a in _resolve_parser()._actions if a.option_strings}
    assert tuple(actions["--mta-sts-fetch"].choices or ()) == tuple(o.value for o in FetchOutcome)
    assert tuple(actions["--tlsa"].choices or ()) == tuple(s.value for s in TlsaLookupStatus)


CASES = [
    # (resolve flags, the same inputs as an expectation file writes them)
    (["--mta-sts", "POLICY", "--mta-sts-fetch", "fetch-error"],
     f'mta_sts = """{_POLICY}"""\nmta_sts_fetch = "fetch-error"'),
    (["--tlsa", "nxdomain", "--mx-dnssec"], 'tlsa = "nxdomain"\nmx_dnssec = true'),
    (["--tlsa-record", f"3 1 1 {_HEX}", "--tlsa-base-domain", "mx1.payroll-partner.example"],
     f'tlsa_records = ["3 1 1 {_HEX}"]\ntlsa_base_domain = "mx1.payroll-partner.example"'),
    (["--tlsa", "bogus"], 'tlsa = "bogus"'),
    (["--tls-broken"], "tls_broken = true"),
    (["--requiretls", "--tls-required-no", "--mx-dnssec"],
     "requiretls = true\ntls_required_no = true\nmx_dnssec = true"),
]


@pytest.mark.parametrize(("flags", "inputs"), CASES)
def test_flags_and_expectation_inputs_decide_alike(flags: list[str], inputs: str,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tlspolicy import Resolver
    from tlspolicy.policytests.reader import loads_expectations

    policy_file = tmp_path / "sts.txt"
    policy_file.write_text(_POLICY, "utf-8")
    flags = [str(policy_file) if f == "POLICY" else f for f in flags]
    mx = "mx1.payroll-partner.example"
    code, out, _ = run(capsys, "resolve", "payroll-partner.example", "--binding", "tx-us-1",
                       "--mx-host", mx, "--json", *flags, "--config", str(EXAMPLE))
    assert code == 0
    [case] = loads_expectations(
        f'[[case]]\ndomain = "payroll-partner.example"\nbinding = "tx-us-1"\n'
        f'mx_host = "{mx}"\nsni = "only loaded, never run"\n[case.inputs]\n{inputs}\n').cases
    from tlspolicy.formats.loader import load_config

    expected = Resolver(load_config(EXAMPLE)).resolve(
        case.domain, case.binding, mx_host=case.mx_host, destination=case.destination)
    assert json.loads(out) == expected.to_dict()


@pytest.mark.parametrize(("old", "new"), [
    (["--mx", "mx1.payroll-partner.example"], ["--mx-host", "mx1.payroll-partner.example"]),
    (["--broken-tls"], ["--tls-broken"]),
    (["--mta-sts-fetch", "failed"], ["--mta-sts-fetch", "fetch-error"]),
    (["--dnssec", "secure"], ["--tlsa", "nodata"]),
    (["--dnssec", "secure", "--tlsa-record", f"3 1 1 {_HEX}"],
     ["--tlsa", "records", "--tlsa-record", f"3 1 1 {_HEX}"]),
    (["--dnssec", "failed"], ["--tlsa", "failed"]),
])
def test_old_spellings_still_work_and_say_so(old: list[str], new: list[str],
                                             capsys: pytest.CaptureFixture[str]) -> None:
    base = ["resolve", "payroll-partner.example", "--mx-host", "mx1.payroll-partner.example",
            "--json", "--config", str(EXAMPLE)]
    now = run(capsys, *base, *new)
    then = run(capsys, *base, *old)
    assert now[0] == then[0] == 0 and now[1] == then[1]
    assert "is deprecated; use" in then[2]


def test_the_vocabulary_table_names_each_flag() -> None:
    from tlspolicy.cli.resolve import INPUT_FLAGS

    page = (Path(__file__).resolve().parent.parent / "docs" / "testing-in-ci.md").read_text()
    rows = {line.split("`")[1]: line.split("`")[3] for line in page.splitlines()
            if line.startswith("| `") and line.count("|") == 4 and "`--" in line}
    assert rows == dict(INPUT_FLAGS)


def test_cli_reference_page_lists_every_command_and_argument() -> None:
    import importlib.util
    import re
    import sys

    root = Path(__file__).resolve().parent.parent
    spec = importlib.util.spec_from_file_location("docs_hook_cli", root / "docs" / "hooks"
                                                  / "tables.py")
    assert spec is not None and spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = hook
    spec.loader.exec_module(hook)
    page = (root / "docs" / "cli.md").read_text("utf-8")
    assert "<!-- generated: cli -->" in page
    text = hook.cli_reference()
    assert text in hook.expand(page)
    parsers = dict(_subcommands(cli.build_parser()))
    for path, parser in parsers.items():
        if path:
            assert f"tlspolicy {' '.join(path)}\n" in text
        for action in parser._actions:
            hidden = action.help == argparse.SUPPRESS
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    listed = re.search(rf"(`|, ){re.escape(option)}[ `,]", text) is not None
                    assert listed != hidden, option
    assert "--dnssec" not in text.split("## tlspolicy resolve", 1)[1]
    nav = (root / "mkdocs.yml").read_text("utf-8")
    assert "cli.md" in nav


# ---------------------------------------------------------------------------
# Certificate files are checked when the configuration is, not at send time


_MISSING_CA = '[global]\ntls = "required"\ntls_verify = "host"\ntls_ca = "{ca}"\n'


def test_check_finds_a_missing_ca_file(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "outbound.toml"
    config.write_text(_MISSING_CA.format(ca=tmp_path / "missing.pem"))
    code, out, _ = run(capsys, "check", str(config))
    assert code == 1
    assert "tls_ca" in out and "missing.pem" in out and "1 error" in out
    code, out, _ = run(capsys, "check", str(config), "--no-file-checks")
    assert code == 0 and out == f"{config}: ok\n"


def test_serve_refuses_a_missing_ca_file(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "outbound.toml"
    config.write_text(_MISSING_CA.format(ca=tmp_path / "missing.pem"))
    result = subprocess.run(
        [sys.executable, "-m", "tlspolicy", "serve", "socketmap", "--listen", "127.0.0.1:0",
         "--postfix-version", "3.7.11", str(config)],
        capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "tls_ca" in result.stderr and "missing.pem" in result.stderr
    assert "Traceback" not in result.stderr


_WITHOUT_EXTRAS = """
import importlib.abc
import sys


class Refuse(importlib.abc.MetaPathFinder):
    # As after a plain `pip install .`: the discovery extra's libraries are missing.
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("dns", "httpx", "redis", "prometheus_client"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Refuse())
from tlspolicy.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("args", [
    ["--help"],
    ["serve", "socketmap", "--help"],
    ["discover", "--help"],
    ["resolve", "payroll-partner.example", "--binding", "tx-us-1", "--mx-host",
     "mx1.payroll-partner.example"],
])
def test_the_command_line_builds_without_the_optional_extras(args: list[str]) -> None:
    # Every option default, discovery's included, must exist without the extra installed
    # (README's example runs after a plain install).
    result = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS, *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr


def test_each_command_parses_with_its_own_module_as_with_every_command() -> None:
    # main builds the parser of the first word's module only (cli.COMMANDS): that
    # parser must be the whole parser's for the command, help text and all.
    whole = dict(_subcommands(cli.build_parser()))
    assert set(cli.COMMANDS) == {p[0] for p in whole if p}
    assert set(cli.COMMANDS.values()) == set(cli.COMMAND_MODULES)
    for command, module in cli.COMMANDS.items():
        own = dict(_subcommands(cli.build_parser(command)))
        paths = [p for p in own if p]
        assert {p[0] for p in paths} == {c for c, m in cli.COMMANDS.items() if m == module}
        for path in paths:
            assert own[path].format_help() == whole[path].format_help(), path
        assert own[()].format_usage() == whole[()].format_usage()
    for word in ("no-such-command", "--help", "--version"):
        assert dict(_subcommands(cli.build_parser(word))).keys() == whole.keys()


def test_running_a_command_imports_no_other_commands_module() -> None:
    # What the one-module parser is for: serve starts without lint's, report's or
    # convert's modules (it shares discover's options, so that one it imports).
    code = ("import contextlib, sys\nfrom tlspolicy import cli\n"
            "with contextlib.suppress(SystemExit):\n    cli.main(['serve', '--help'])\n"
            "print(' '.join(m for m in sys.modules if m.startswith('tlspolicy.')))")
    last = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                          text=True).stdout.splitlines()[-1]
    loaded = set(last.split())
    assert "tlspolicy.cli.serve" in loaded
    assert not {f"tlspolicy.cli.{m}" for m in ("check", "convert", "example", "exceptions",
                                               "importcache", "policytests", "report",
                                               "shadow")} & loaded
    assert "tlspolicy.formats.lint" not in loaded


def test_an_mta_sts_policy_that_is_no_regular_file_is_an_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A FIFO would hang ``resolve`` and /dev/zero fill its memory: a policy is a regular
    file of a policy's size at most."""
    fifo = tmp_path / "policy.txt"
    os.mkfifo(fifo)
    from tlspolicy.cli import main

    for path in (str(fifo), "/dev/zero"):
        assert main(["resolve", "a.example", "--mta-sts", path]) == 2
        err = capsys.readouterr().err
        assert path in err and "not a regular file" in err and "Traceback" not in err, err


def test_a_junit_file_that_cannot_be_written_is_named(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    from tlspolicy.cli import main

    example = Path(__file__).parent.parent / "src/tlspolicy/data/example-expectations.toml"
    assert main(["test", str(example), "--junit-xml", "/dev/full"]) == 2
    assert "--junit-xml /dev/full: cannot write" in capsys.readouterr().err
