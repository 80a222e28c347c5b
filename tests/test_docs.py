"""The documentation cannot lie: generated tables are complete, examples are run.

- The MkDocs hook (``docs/hooks/tables.py``) renders every row of the option,
  negotiation, certificate and status tables, and every placeholder a page
  uses is one the hook knows.
- ``docs/precedence.md``: each ```` ```expect ```` block is a request and its
  expected effective values and sources; it is resolved against the
  ```` ```toml ```` blocks since the previous ``expect`` block (several blocks
  are layered files; none reuses the previous configuration).
- Every ```` ```toml ```` block of the hand-written pages loads.
"""

from __future__ import annotations

import importlib.util
import itertools
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs
import pytest

import tlspolicy.errors
from tlspolicy import Config, Options, Resolver, Tls, TlsPolicyError, Verification, loads_toml
from tlspolicy.options import OPTION_SPECS, UNSET
from tlspolicy.outcomes import (
    CERTIFICATE_OBSERVATIONS,
    NEGOTIATION_OBSERVATIONS,
    STATUSES,
    certificate_outcome,
    negotiation_outcome,
)
from tlspolicy.scopes import layer_configs

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OWN_PAGES = ("index.md", "tutorial.md", "configuration.md", "precedence.md", "decisions.md",
             "choices.md", "api.md", "floors.md", "exceptions.md", "shadow.md")


def _load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hook_tables", DOCS / "hooks" / "tables.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


hook = _load_hook()

_FENCE = re.compile(r'^```([A-Za-z0-9_-]*)(?: title="([^"]*)")?[^\n]*\n(.*?)^```\s*$',
                    re.M | re.S)


def titled_fences(page: str) -> list[tuple[str, str, str]]:
    """Every fenced block of a page as (language, title, body), in order."""
    text = (DOCS / page).read_text("utf-8")
    return [(m.group(1), m.group(2) or "", m.group(3)) for m in _FENCE.finditer(text)]


def fences(page: str) -> list[tuple[str, str]]:
    """Every fenced block of a page as (language, body), in order."""
    return [(lang, body) for lang, _title, body in titled_fences(page)]


def _rows(table: str) -> list[str]:
    return [line for line in table.splitlines() if line.startswith("| ")][1:]


# ---------------------------------------------------------------------------
# Generated tables


def test_option_table_has_every_option_with_its_facts() -> None:
    rows = _rows(hook.options_table())
    assert len(rows) == len(OPTION_SPECS)
    for row, (name, spec) in zip(rows, OPTION_SPECS.items(), strict=True):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[0] == f"`{name}`"
        assert cells[4] == str(spec.since)
        assert cells[6] == spec.summary
        if spec.default is UNSET:
            assert cells[2] == "unset"
        else:
            dumped = spec.dump(spec.default)
            assert cells[2] == f"`{str(dumped).lower() if isinstance(dumped, bool) else dumped}`"
        for scope in spec.scopes:
            assert cells[3] == "all" or scope.value in cells[3]


def test_negotiation_table_covers_every_cell() -> None:
    rows = _rows(hook.negotiation_table())
    pairs = list(hook.negotiation_rows())
    assert len(rows) == len(pairs) == 1 + 2 * len(NEGOTIATION_OBSERVATIONS)
    for row, (tls, observation) in zip(rows, pairs, strict=True):
        if observation is None:
            assert tls is Tls.NO and "SKIP" in row
            continue
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert observation.value in cells[1]
        for cell, fallback in ((cells[2], True), (cells[3], False)):
            assert cell == hook.outcome_text(negotiation_outcome(tls, observation,
                                                                 fallback=fallback))
        # Under 4.0 the FALLBACK cells are DEFER (SEMANTICS section 4).
        assert "FALLBACK" not in cells[4]
        assert cells[4] == cells[3]


def test_certificate_table_covers_every_cell() -> None:
    rows = _rows(hook.certificate_table())
    assert len(rows) == len(Verification)
    for row, verification in zip(rows, Verification, strict=True):
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        assert cells[0] == f"`{verification.value}`"
        for cell, observation in zip(cells[1:], CERTIFICATE_OBSERVATIONS, strict=True):
            outcome = certificate_outcome(verification, observation)
            assert cell == hook.outcome_text(outcome)
            assert "FALLBACK" not in cell


def test_status_table_has_every_reason() -> None:
    table = hook.status_table()
    for reason, status in STATUSES.items():
        row = next(r for r in _rows(table) if r.startswith(f"| `{reason.value}` |"))
        assert f" {status.code} | {status.enhanced} | {status.text} |" in row
        assert (status.tlsrpt or "-") in row
    assert "5.7.30" in table


def test_api_index_lists_every_public_name_with_a_description() -> None:
    text = hook.api_index()
    for name in hook.public_names():
        line = next((x for x in text.splitlines() if re.match(rf"- `{re.escape(name)}\b", x)),
                    None)
        assert line is not None, f"{name} missing from the API page"
        assert ": " in line.split(")", 1)[-1] or "): " in line, f"{name} has no description"
    assert "## Other" not in text, "a public name has no API group; add its module"


def test_placeholders_in_pages_are_known() -> None:
    used: set[str] = set()
    for page in DOCS.rglob("*.md"):
        names = hook.PLACEHOLDER.findall(page.read_text("utf-8"))
        unknown = set(names) - set(hook.GENERATORS)
        assert not unknown, f"{page.name}: unknown placeholders {unknown}"
        used.update(names)
    for name in ("options", "negotiation", "certificate", "statuses", "api"):
        assert name in used, f"no page shows the generated {name!r} block"


def test_unknown_placeholder_fails_loudly() -> None:
    with pytest.raises(hook.UnknownPlaceholderError, match="nonsense"):
        hook.expand("x <!-- generated: nonsense --> y")
    assert "| `tls` |" in hook.expand("<!-- generated: options -->")


# ---------------------------------------------------------------------------
# Worked examples of precedence.md


@attrs.frozen
class Example:
    number: int
    tomls: tuple[str, ...]
    request: dict[str, Any]
    overrides: dict[str, str]
    expected: dict[str, tuple[str, str | None]]
    error: str | None


_LINE = re.compile(r"^([a-z_0-9]+):\s*(.*?)(?:\s+\(from (.*)\))?\s*$")


def _examples(page: str) -> list[Example]:
    out: list[Example] = []
    pending: list[str] = []
    previous: tuple[str, ...] = ()
    for lang, body in fences(page):
        if lang == "toml":
            pending.append(body)
            continue
        if lang != "expect":
            continue
        tomls = tuple(pending) if pending else previous
        assert tomls, "an expect block before any toml block"
        pending, previous = [], tomls
        request: dict[str, Any] = {}
        overrides: dict[str, str] = {}
        expected: dict[str, tuple[str, str | None]] = {}
        error = None
        for line in body.splitlines():
            if not line.strip():
                continue
            m = _LINE.match(line)
            assert m, f"example {len(out) + 1}: cannot read {line!r}"
            key, value, source = m.groups()
            if key in ("domain", "binding", "mx"):
                request[key] = value
            elif key == "override":
                name, _, raw = value.partition("=")
                overrides[name] = raw
            elif key == "error":
                error = value
            elif key == "group" or key in OPTION_SPECS:
                expected[key] = (value, source)
            else:
                raise AssertionError(f"example {len(out) + 1}: unknown key {key!r}")
        out.append(Example(len(out) + 1, tomls, request, overrides, expected, error))
    assert not pending, f"{page}: toml blocks after the last expect block are never checked"
    return out


def _shown(name: str, value: object) -> str:
    if value is UNSET:
        return "unset"
    dumped = OPTION_SPECS[name].dump(value)
    if isinstance(dumped, bool):
        return str(dumped).lower()
    return str(dumped)


def _run(example: Example) -> Any:
    configs = [loads_toml(text, f"example {example.number} file {i + 1}")
               for i, text in enumerate(example.tomls)]
    config: Config = layer_configs(configs)
    overrides = Options.from_mapping(example.overrides) if example.overrides else None
    return Resolver(config).resolve(example.request["domain"], example.request.get("binding"),
                                    mx_host=example.request.get("mx"), overrides=overrides)


PRECEDENCE_EXAMPLES = _examples("precedence.md")


def test_precedence_page_has_examples() -> None:
    assert len(PRECEDENCE_EXAMPLES) >= 20
    assert any(e.error for e in PRECEDENCE_EXAMPLES)
    assert any(len(e.tomls) > 1 for e in PRECEDENCE_EXAMPLES)


@pytest.mark.parametrize("example", PRECEDENCE_EXAMPLES, ids=lambda e: f"example-{e.number}")
def test_precedence_example(example: Example) -> None:
    if example.error is not None:
        error_type = getattr(tlspolicy.errors, example.error)
        with pytest.raises(error_type):
            _run(example)
        return
    decision = _run(example)
    for key, (value, source) in example.expected.items():
        if key == "group":
            assert decision.binding_group == value
            continue
        assert _shown(key, decision.effective[key]) == value, key
        assert source is not None, f"example {example.number}: {key} has no source"
        assert str(decision.explanation[key]) == source, key


# ---------------------------------------------------------------------------
# Every TOML snippet on the hand-written pages loads.


@pytest.mark.parametrize("page", [p for p in OWN_PAGES if p != "precedence.md"])
def test_toml_snippets_load(page: str) -> None:
    if not (DOCS / page).exists():
        pytest.skip(f"{page} not written")
    for lang, title, body in titled_fences(page):
        if lang != "toml":
            continue
        if title.startswith("bad"):
            # A snippet shown to illustrate error messages must really be refused.
            with pytest.raises(TlsPolicyError):
                loads_toml(body, title)
            continue
        try:
            loads_toml(body, page)
        except TlsPolicyError as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"{page}: snippet does not load: {exc}\n{body}") from None


# ---------------------------------------------------------------------------
# The tutorial's commands and scripts print what the page shows.


def _tutorial_files(directory: Path) -> list[tuple[str, str, str]]:
    blocks = titled_fences("tutorial.md")
    for lang, title, body in blocks:
        if lang == "toml" and title:
            (directory / title).write_text(body, "utf-8")
    return blocks


def _compare(expected: str, actual: str, what: str) -> None:
    want = expected.rstrip("\n").split("\n")
    got = actual.rstrip("\n").split("\n")
    if want and want[-1] == "...":
        # The page shows the head of a long output.
        want = want[:-1]
        got = got[: len(want)]
    assert got == want, f"{what}: the page shows\n{expected}\nbut it prints\n{actual}"


def test_tutorial_console_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    from tlspolicy.cli import main

    blocks = _tutorial_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    sessions = 0
    for lang, _title, body in blocks:
        if lang != "console":
            continue
        command: list[str] | None = None
        output: list[str] = []
        for line in [*body.splitlines(), "$ <end>"]:
            if not line.startswith("$ "):
                output.append(line)
                continue
            if command is not None:
                capsys.readouterr()
                main(command)
                _compare("\n".join(output), capsys.readouterr().out, " ".join(command))
                sessions += 1
            words = shlex.split(line[2:])
            command = words[1:] if words and words[0] == "tlspolicy" else None
            output = []
    assert sessions >= 5


def test_tutorial_python_scripts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    blocks = _tutorial_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    scripts = 0
    for (lang, title, body), after in itertools.pairwise(blocks):
        if lang != "python":
            continue
        assert after[:2] == ("text", "output"), f"{title}: no output block follows"
        capsys.readouterr()
        exec(compile(body, title, "exec"), {"__name__": "__docs__"})
        _compare(after[2], capsys.readouterr().out, title)
        scripts += 1
    assert scripts == 2


def test_bundled_example_loads() -> None:
    from tlspolicy.cli import example_config

    assert example_config().binding_groups


# ---------------------------------------------------------------------------
# Compatibility 4.0 as the docs describe it.


def test_compatibility_4_0_accepts_4_0_options() -> None:
    config = loads_toml('compatibility = "4.0"\n[global]\ntls = "ifavailable"\n')
    decision = Resolver(config).resolve("example.com")
    assert decision.fallback is False


def test_pages_cite_what_readers_have() -> None:
    # The internal specification is not published: pages cite RFCs and these docs.
    for page in sorted(DOCS.rglob("*.md")):
        assert "SEMANTICS" not in page.read_text("utf-8"), page
    assert "SEMANTICS" not in hook.api_index()
    assert "[Decisions](decisions.md)" in hook.api_index()


# ---------------------------------------------------------------------------
# The docs build with the docs extra alone.

_WITHOUT_EXTRAS = """
import importlib.util, sys
# What a docs-only install lacks: the daemon's and discovery's third-party modules.
for name in ("dns", "httpx", "prometheus_client", "redis", "psycopg"):
    sys.modules[name] = None
spec = importlib.util.spec_from_file_location("hook", sys.argv[1])
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)
for name, generator in hook.GENERATORS.items():
    assert generator(), name
print("ok", len(hook.GENERATORS))
"""


def test_every_generated_block_builds_without_the_daemon_extras() -> None:
    # `pip install -e '.[docs]' && mkdocs build --strict` must work by itself: no
    # generator may import a module that needs dnspython, httpx or prometheus_client.
    import subprocess

    result = subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS,
                             str(DOCS / "hooks" / "tables.py")],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_metrics_table_read_from_source_matches_the_module() -> None:
    from tlspolicy.servers.metric_definitions import METRIC_DEFINITIONS

    assert [tuple(row) for row in hook.metric_definitions()] == [
        (d.name, d.kind, d.labels, d.help) for d in METRIC_DEFINITIONS]


def test_precedence_sample_output_is_what_resolve_prints_and_agrees_with_the_example() -> None:
    # The page shows `tlspolicy resolve` run on its first example when the site is built;
    # the condensed example above it must agree with that output, value and source.
    assert "<!-- generated: precedence-resolve -->" in (DOCS / "precedence.md").read_text()
    text = hook.precedence_resolve()
    assert text.startswith("```text\n$ tlspolicy resolve example.com precedence.toml")
    rows = {line.split()[0]: line for line in text.split("effective values\n", 1)[1]
            .splitlines() if line.startswith("  ")}
    first = PRECEDENCE_EXAMPLES[0]
    assert first.request == {"domain": "example.com", "binding": "b1"}
    for key, (value, source) in first.expected.items():
        if key == "group":
            assert f"(group {value})" in text
            continue
        row = rows[key]
        assert value in row and row.endswith(f"from {source}"), (key, row)


def test_architecture_page_names_modules_that_exist() -> None:
    """Every module the contributors' page says a rule lives in exists."""
    page = (Path(__file__).parent.parent / "docs" / "architecture.md").read_text("utf-8")
    table = page[page.index("## Where each rule lives"):page.index("## Conventions")]
    named: list[str] = []
    for row in table.splitlines()[3:]:
        if not row.startswith("|"):
            continue
        base = ""
        for name in re.findall(r"`(\.?[a-z_.]+)`", row.split("|")[2]):
            if name.startswith("tlspolicy"):
                base = name.rsplit(".", 1)[0]
                named.append(name)
            elif name.startswith("."):
                named.append(base + name)
    assert len(named) > 20
    missing = [n for n in named if importlib.util.find_spec(n) is None]
    assert missing == [], missing
