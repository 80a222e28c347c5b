"""Finding: a configured regex domain must not hang resolution (SEMANTICS section 2).

Regex domains run on RE2, so matching is linear in the name whatever the
pattern; patterns RE2 cannot run are located load-time errors; names longer
than 253 octets are invalid input and never matched.
"""

from __future__ import annotations

import pytest
from bounded import within

from tlspolicy import InvalidDomainError, Resolver, Tls, loads_toml
from tlspolicy.errors import RegexError
from tlspolicy.formats.ecelerity import loads_ecelerity_config
from tlspolicy.formats.lint import lint_config
from tlspolicy.names import DomainName, DomainPattern, DomainPatternSet

# Backtracking engines take time exponential in the run of 'a's for these.
CATASTROPHIC = [r"(a+)+$", r"(a|a)+$", r"(a|aa)+$", r"(.*a){20}$", r"^(([a-z])+.)+[A-Z]([a-z])+$",
                r"(\w+\d*)+\.example$"]

CONFIG = '''
[global]
tls = "ifavailable"
[[domain]]
name = "/{pattern}/"
tls = "required"
'''


def _toml_string(pattern: str) -> str:
    return pattern.replace("\\", "\\\\")


def _resolve_hostile(pattern: str, domain: str) -> str:
    resolver = Resolver(loads_toml(CONFIG.format(pattern=_toml_string(pattern))))
    return resolver.resolve(domain).plan.value


@pytest.mark.parametrize("pattern", CATASTROPHIC)
@pytest.mark.parametrize("length", [38, 63])
def test_catastrophic_pattern_resolves_at_once(pattern: str, length: int) -> None:
    # The 38-byte domain of the report, and a label of the longest legal size.
    domain = "a" * (length - 1) + "_.example"
    plan = within(_resolve_hostile, pattern, domain)
    assert plan in ("attempt", "skip", "fail", "fallback", "defer", "tls")


def test_catastrophic_pattern_on_the_longest_name() -> None:
    labels = ".".join(["a" * 62 + "_"] * 3) + "." + "a" * 61
    assert len(labels) == 253
    within(_resolve_hostile, r"(a+)+$", labels)


def test_pattern_semantics_are_still_search() -> None:
    resolver = Resolver(loads_toml(CONFIG.format(pattern=_toml_string(r"\.partner\.example$"))))
    assert resolver.effective("mx.partner.example")[0]["tls"] is Tls.REQUIRED
    assert resolver.effective("partner.example.org")[0]["tls"] is Tls.IFAVAILABLE


@pytest.mark.parametrize(("pattern", "why"), [
    (r"(a)\1", "backreference"),
    (r"foo(?=bar)", "lookahead"),
    (r"(?<!x)y", "lookbehind"),
    (r"a{2000}", "repetition over RE2's limit"),
    (r"[a-z]{1000}" * 300, "over the memory budget"),
])
def test_patterns_re2_cannot_run_are_located_load_errors(pattern: str, why: str) -> None:
    text = ('[global]\ntls = "no"\n\n[[binding]]\nname = "b1"\n\n'
            f'  [[binding.domain]]\n  name = "/{_toml_string(pattern)}/"\n  tls = "required"\n')
    with pytest.raises(RegexError) as info:
        loads_toml(text, "policy.toml")
    location = info.value.location
    assert location.file == "policy.toml"
    assert location.line == 7, why
    assert location.scope is not None and 'binding "b1"' in location.scope


def test_ecelerity_regex_error_is_located() -> None:
    text = 'binding "b1" {\n  domain "/(a)\\1/" {\n    tls = required\n  }\n}\n'
    with pytest.raises(RegexError) as info:
        loads_ecelerity_config(text, "ecelerity.conf")
    assert (info.value.location.file, info.value.location.line) == ("ecelerity.conf", 2)
    assert "binding" in (info.value.location.scope or "")


def test_names_over_253_octets_are_invalid_input() -> None:
    long_name = ".".join(["a" * 63] * 4)  # 255 octets
    resolver = Resolver(loads_toml(CONFIG.format(pattern="a")))
    with pytest.raises(InvalidDomainError):
        resolver.resolve(long_name)
    with pytest.raises(InvalidDomainError):
        resolver.resolve("x" * 100_000 + ".example")


def test_long_names_never_match_a_pattern() -> None:
    name = "a" * 254
    assert not DomainPattern("a").search(name)
    assert not DomainName.parse("/a/").matches(name)
    assert DomainPatternSet([DomainPattern("a")]).matching(name) == []
    assert DomainPatternSet([DomainPattern("a")]).matching("a" * 253) == [0]


def test_pattern_set_keeps_declaration_order_across_chunks() -> None:
    # Large programs split the set into several RE2 sets; indices stay global.
    patterns = [DomainPattern("[a-z]{1,1000}x"), DomainPattern("^zz"), DomainPattern("z$"),
                *(DomainPattern(f"[a-z]{{1,1000}}{i}") for i in range(30)),
                DomainPattern("z")]
    assert sum(p.program_size for p in patterns) > 40_000  # several chunks
    found = DomainPatternSet(patterns).matching("zz9.axz")
    assert found == [0, 1, 2, 9 + 3, len(patterns) - 1]
    for name in ("zz9.axz", "q.example", "zz", "a1.b2.c3"):
        assert DomainPatternSet(patterns).matching(name) == [
            i for i, p in enumerate(patterns) if p.search(name)]


@pytest.mark.parametrize(("pattern", "flagged"), [
    (r"\.Partner\.example$", "P"),
    (r"^MX\.", "M"),
    (r"\.partner\.example$", None),
    (r"\D\pL\p{Greek}[[:upper:]]\S", None),
    (r"(?i)\.Partner\.example$", None),
    (r"(?P<Name>x)\.example", None),
])
def test_lint_flags_upper_case_literals(pattern: str, flagged: str | None) -> None:
    warnings = [w for w in lint_config(loads_toml(CONFIG.format(pattern=_toml_string(pattern))))
                if w.code == "regex-upper-case"]
    if flagged is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and repr(flagged) in warnings[0].message
