"""MTA-STS parsing, MX patterns and policy lifetime (RFC 8461)."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlspolicy.errors import PolicyInputError
from tlspolicy.policies.mtasts import (
    MAX_MAX_AGE,
    MAX_POLICY_BYTES,
    CachedMtaStsPolicy,
    FetchOutcome,
    MtaStsPolicy,
    MtaStsPolicyError,
    MtaStsTxtRecord,
    MtaStsTxtRecordError,
    StsMode,
    apply_fetch,
    mx_matches,
    parse_policy,
    parse_txt_record,
    policy_in_force,
    select_txt_record,
)

CORPUS = Path(__file__).parent / "data" / "mta-sts"
INVALID_INDEX: dict[str, str] = json.loads((CORPUS / "invalid" / "index.json").read_text())
VALID_INDEX: dict[str, dict[str, object]] = json.loads(
    (CORPUS / "valid" / "index.json").read_text()
)
T0 = datetime(2030, 1, 1, tzinfo=UTC)

POLICY = parse_policy("version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n")


# ----------------------------------------------------------------- corpus


def test_corpus_is_complete() -> None:
    files = {p.name for p in (CORPUS / "invalid").iterdir() if p.name != "index.json"}
    assert files == set(INVALID_INDEX)
    assert len(files) >= 40
    assert {p.name for p in (CORPUS / "valid").iterdir() if p.name != "index.json"} == set(
        VALID_INDEX
    )


@pytest.mark.parametrize("name", sorted(INVALID_INDEX))
def test_invalid_corpus(name: str) -> None:
    data = (CORPUS / "invalid" / name).read_bytes()
    with pytest.raises(MtaStsPolicyError) as info:
        parse_policy(data)
    assert INVALID_INDEX[name] in str(info.value)
    assert info.value.tlsrpt_result_type == "sts-policy-invalid"
    assert isinstance(info.value, PolicyInputError)


@pytest.mark.parametrize("name", sorted(VALID_INDEX))
def test_valid_corpus(name: str) -> None:
    expected = VALID_INDEX[name]
    data = (CORPUS / "valid" / name).read_bytes()
    policy = parse_policy(data)
    assert policy.mode.value == expected["mode"]
    assert list(policy.mx) == expected["mx"]
    assert policy.max_age == expected["max_age"]
    assert parse_policy(data.decode("utf-8")) == policy
    assert parse_policy(policy.render()) == policy


def test_error_carries_line_and_key() -> None:
    with pytest.raises(MtaStsPolicyError) as info:
        parse_policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12x\n")
    assert info.value.line == 4
    assert info.value.key == "max_age"


def test_size_bound() -> None:
    head = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n"
    filler = "x-pad: " + "a" * 70 + "\n"
    at_limit = head + filler * ((MAX_POLICY_BYTES - len(head)) // len(filler))
    at_limit += "x" * (MAX_POLICY_BYTES - len(at_limit) - 4) + ": 1\n"
    assert len(at_limit.encode()) == MAX_POLICY_BYTES
    assert parse_policy(at_limit.encode()) == POLICY
    with pytest.raises(MtaStsPolicyError, match="65537 bytes, more than the 65536 byte limit"):
        parse_policy((at_limit + "\n").encode())


def test_max_age_bounds() -> None:
    base = "version: STSv1\nmode: testing\nmx: mx.example.com\nmax_age: {}\n"
    assert parse_policy(base.format(0)).max_age == 0
    assert parse_policy(base.format(MAX_MAX_AGE)).max_age == MAX_MAX_AGE
    assert parse_policy(base.format("0031557600")).max_age == MAX_MAX_AGE


def test_mode_none_may_list_mx() -> None:
    policy = parse_policy("version: STSv1\nmode: none\nmx: mx.example.com\nmax_age: 5\n")
    assert policy.mode is StsMode.NONE and policy.mx == ("mx.example.com",)


def test_model_validates_direct_construction() -> None:
    with pytest.raises(MtaStsPolicyError, match="needs at least one mx"):
        MtaStsPolicy(mode=StsMode.ENFORCE, mx=(), max_age=5)
    with pytest.raises(MtaStsPolicyError, match="max_age"):
        MtaStsPolicy(mode=StsMode.NONE, mx=(), max_age=MAX_MAX_AGE + 1)
    with pytest.raises(MtaStsPolicyError, match="not normalised"):
        MtaStsPolicy(mode=StsMode.ENFORCE, mx=("MX.example.com",), max_age=5)
    with pytest.raises(MtaStsPolicyError, match="not one string"):
        MtaStsPolicy(mode=StsMode.ENFORCE, mx="mx.example.com", max_age=5)


_CONTROLS = [chr(c) for c in (*range(0x20), 0x7F) if chr(c) not in "\t\n\r"]


@pytest.mark.parametrize("char", _CONTROLS)
@pytest.mark.parametrize("where", ["key", "value", "end"])
def test_every_control_character_is_refused_on_its_line(char: str, where: str) -> None:
    line = {"key": f"x{char}: 1", "value": f"x-ext: a{char}b", "end": f"x-ext: ab{char}"}[where]
    text = f"version: STSv1\nmode: enforce\n{line}\nmx: mx.example.com\nmax_age: 5\n"
    with pytest.raises(MtaStsPolicyError) as info:
        parse_policy(text)
    assert str(info.value).endswith(f"line 3: control character {char!r} in the line")
    assert info.value.line == 3


def test_an_earlier_lines_error_comes_before_a_later_control_character() -> None:
    with pytest.raises(MtaStsPolicyError, match="is not a 'key: value' line") as info:
        parse_policy("version: STSv1\nno colon\nx-ext: a\x01\nmx: m.example\nmax_age: 5\n")
    assert info.value.line == 2
    with pytest.raises(MtaStsPolicyError, match="bare CR") as info:
        parse_policy("version: STSv1\nx-ext: \x01a\rb\nmx: m.example\nmax_age: 5\n")
    assert info.value.line == 2


def test_tabs_and_crlf_are_no_control_characters() -> None:
    policy = parse_policy("version:\tSTSv1\r\nmode: enforce\t\r\nmx: mx.example.com\r\n"
                          "max_age: 86400\r\n")
    assert policy == POLICY


def test_a_pattern_checked_once_never_lets_another_spelling_through() -> None:
    # Patterns found valid are remembered; the memory holds only the normalised form,
    # so an upper-case or dotted spelling of it is still refused by the model.
    assert parse_policy("version: STSv1\nmode: enforce\nmx: MX.Example.COM.\n"
                        "max_age: 5\n").mx == ("mx.example.com",)
    for spelling in ("MX.example.com", "mx.example.com."):
        with pytest.raises(MtaStsPolicyError, match="not normalised"):
            MtaStsPolicy(mode=StsMode.ENFORCE, mx=(spelling,), max_age=5)
    for bad in ("mx..example.com", "a.*.example.com", "-mx.example.com"):
        for _ in range(2):  # refused again: a refusal is not remembered
            with pytest.raises(MtaStsPolicyError):
                MtaStsPolicy(mode=StsMode.ENFORCE, mx=(bad,), max_age=5)


def test_the_remembered_patterns_are_bounded() -> None:
    from tlspolicy.policies import mtasts

    for i in range(mtasts._VALID_MX_SIZE + 10):
        MtaStsPolicy(mode=StsMode.ENFORCE, mx=(f"mx{i}.example.com",), max_age=5)
        assert len(mtasts._VALID_MX) <= mtasts._VALID_MX_SIZE


@given(st.text(alphabet=st.sampled_from([*"ab:x- \t\r\n.", *_CONTROLS]), max_size=40))
def test_control_characters_are_refused_wherever_they_stand(tail: str) -> None:
    text = "version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 5\n" + tail
    try:
        parse_policy(text)
    except MtaStsPolicyError as exc:
        if "control character" in str(exc):
            assert exc.line is not None
            line = text.split("\n")[exc.line - 1]
            assert any(c in line for c in _CONTROLS)
        return
    assert not any(c in text for c in _CONTROLS)


def test_policy_strings() -> None:
    assert POLICY.policy_strings() == (
        "version: STSv1", "mode: enforce", "mx: mx.example.com", "max_age: 86400",
    )


# ------------------------------------------------------------ TXT record


def test_txt_rfc_example() -> None:
    assert parse_txt_record("v=STSv1; id=20160831085700Z;") == MtaStsTxtRecord(
        id="20160831085700Z"
    )
    assert parse_txt_record("v=STSv1;id=abc") == MtaStsTxtRecord(id="abc")


def test_txt_extensions_and_whitespace() -> None:
    record = parse_txt_record("v=STSv1 ;\tid=X1 ; ext-1 = va!ue ; b.c=1;  ")
    assert record == MtaStsTxtRecord(id="X1", extensions=(("ext-1", "va!ue"), ("b.c", "1")))


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "must start with 'v=STSv1'"),
        (" v=STSv1; id=1;", "must start with"),
        ("v=STSv2; id=1;", "must start with 'v=STSv1'"),
        ("v=STSv10; id=1;", "expected ';' after 'v=STSv1'"),
        ("id=1; v=STSv1;", "must start with"),
        ("v=STSv1", "has no 'id' field"),
        ("v=STSv1;", "field 1 is empty"),
        ("v=STSv1; ext=1;", "has no 'id' field"),
        ("v=STSv1; id=;", "must be 1 to 32 letters or digits"),
        ("v=STSv1; id=" + "a" * 33 + ";", "must be 1 to 32"),
        ("v=STSv1; id=2016-08-31;", "must be 1 to 32"),
        ("v=STSv1; id = 1;", "whitespace around '='"),
        ("v=STSv1; id=1;; ext=1", "field 2 is empty"),
        ("v=STSv1; id=1; garbage", "is not name=value"),
        ("v=STSv1; id=1; _x=1", "not a valid extension name"),
        ("v=STSv1; id=1; x=a b", "is not valid"),
        ("v=STSv1; id=1; x=", "is not valid"),
    ],
)
def test_txt_rejects(text: str, fragment: str) -> None:
    with pytest.raises(MtaStsTxtRecordError) as info:
        parse_txt_record(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "record_id", "extensions"),
    [
        # SEMANTICS section 5: a repeated field keeps its first value, with a note.
        ("v=STSv1; id=1; id=2;", "1", ()),
        ("v=STSv1; id=1; v=STSv1;", "1", ()),
        ("v=STSv1; id=1; x=1; x=2", "1", (("x", "1"),)),
    ],
)
def test_txt_repeated_fields_keep_the_first(text: str, record_id: str,
                                            extensions: tuple[tuple[str, str], ...]) -> None:
    record = parse_txt_record(text)
    assert (record.id, record.extensions) == (record_id, extensions)
    assert len(record.notes) == 1 and "first value is kept" in record.notes[0]


def test_select_txt_record() -> None:
    assert select_txt_record(["v=spf1 -all", "v=STSv1; id=1;"]) == MtaStsTxtRecord(id="1")
    assert select_txt_record(["v=spf1 -all"]) is None
    assert select_txt_record(["v=STSv1; id=1;", "v=STSv1; id=2;"]) is None
    with pytest.raises(MtaStsTxtRecordError):
        select_txt_record(["v=STSv1; id=bad-id;"])


# ---------------------------------------------------------------- MX rules


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        # RFC 8461 section 4.1: "*.example.com" matches "mail.example.com" only.
        ("*.example.com", "mail.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "foo.bar.example.com", False),
        ("mail.example.com", "mail.example.com", True),
        ("mail.example.com", "MAIL.Example.COM.", True),
        ("mail.example.com.", "mail.example.com", True),
        ("*.EXAMPLE.com", "Mx1.example.COM", True),
        ("mail.example.com", "mail.example.com.evil", False),
        ("*.example.com", "mail.notexample.com", False),
        ("*.example.com", ".example.com", False),
        ("mail.example.com", "", False),
    ],
)
def test_mx_matches(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


def test_permits_mx() -> None:
    policy = VALID_POLICY = parse_policy(
        (CORPUS / "valid" / "rfc8461-example.txt").read_bytes()
    )
    assert VALID_POLICY.permits_mx("mail.example.com")
    assert policy.permits_mx("mx7.example.net.")
    assert not policy.permits_mx("a.b.example.net")
    assert not policy.permits_mx("example.net")


_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_domain = st.lists(_label, min_size=1, max_size=4).map(".".join)


@given(_label, _label, _domain)
def test_wildcard_never_matches_two_extra_labels(a: str, b: str, base: str) -> None:
    assert not mx_matches(f"*.{base}", f"{a}.{b}.{base}")
    assert mx_matches(f"*.{base}", f"{a}.{base}")
    assert not mx_matches(f"*.{base}", base)


_policies = st.builds(
    MtaStsPolicy,
    mode=st.sampled_from(StsMode),
    mx=st.lists(
        st.tuples(st.booleans(), _domain).map(lambda t: ("*." if t[0] else "") + t[1]),
        min_size=1, max_size=5,
    ).map(tuple),
    max_age=st.integers(0, MAX_MAX_AGE),
)


@given(_policies)
def test_render_roundtrip(policy: MtaStsPolicy) -> None:
    assert parse_policy(policy.render()) == policy
    assert parse_policy(policy.render().replace("\r\n", "\n").encode()) == policy


@given(st.binary(max_size=300))
def test_parser_only_raises_typed_errors(data: bytes) -> None:
    with contextlib.suppress(MtaStsPolicyError):
        parse_policy(data)


# ---------------------------------------------------------------- lifetime


def test_expiry_is_fetch_time_plus_max_age() -> None:
    cached = CachedMtaStsPolicy(POLICY, fetched_at=T0, policy_id="1")
    assert cached.expires_at == T0 + timedelta(seconds=86400)
    assert cached.is_in_force(T0 + timedelta(seconds=86399))
    assert cached.is_expired(T0 + timedelta(seconds=86400))
    assert not cached.is_in_force(T0 + timedelta(days=2))
    # Clock skew backwards never drops a policy early.
    assert cached.is_in_force(T0 - timedelta(hours=1))
    # Other timezones compare by instant.
    plus2 = timezone(timedelta(hours=2))
    assert cached.is_expired(datetime(2030, 1, 2, 2, 0, tzinfo=plus2))


def test_max_age_zero_is_never_in_force() -> None:
    policy = parse_policy("version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 0\n")
    assert policy_in_force(CachedMtaStsPolicy(policy, fetched_at=T0), T0) is None


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(PolicyInputError, match="no timezone"):
        CachedMtaStsPolicy(POLICY, fetched_at=datetime(2030, 1, 1))
    cached = CachedMtaStsPolicy(POLICY, fetched_at=T0)
    with pytest.raises(PolicyInputError, match="no timezone"):
        cached.is_in_force(datetime(2030, 1, 1))
    with pytest.raises(PolicyInputError, match="no timezone"):
        policy_in_force(None, datetime(2030, 1, 1))


def test_due_for_refresh() -> None:
    cached = CachedMtaStsPolicy(POLICY, fetched_at=T0, policy_id="A1")
    assert not cached.due_for_refresh(T0 + timedelta(hours=1))
    assert not cached.due_for_refresh(T0 + timedelta(hours=1), current_id="A1")
    assert cached.due_for_refresh(T0 + timedelta(hours=1), current_id="B2")
    assert cached.due_for_refresh(T0 + timedelta(hours=23), refresh_interval=timedelta(hours=6))
    assert cached.due_for_refresh(T0 + timedelta(days=1))  # default: daily, and expired
    with pytest.raises(PolicyInputError, match="positive"):
        cached.due_for_refresh(T0, refresh_interval=timedelta(0))


def test_fetch_outcome_result_types() -> None:
    assert FetchOutcome.OK.tlsrpt_result_type is None
    assert FetchOutcome.FETCH_ERROR.tlsrpt_result_type == "sts-policy-fetch-error"
    assert FetchOutcome.INVALID.tlsrpt_result_type == "sts-policy-invalid"
    assert FetchOutcome.WEBPKI_INVALID.tlsrpt_result_type == "sts-webpki-invalid"


@pytest.mark.parametrize("failure", [o for o in FetchOutcome if o is not FetchOutcome.OK])
def test_unexpired_policy_survives_failed_fetch(failure: FetchOutcome) -> None:
    cached = CachedMtaStsPolicy(POLICY, fetched_at=T0, policy_id="1")
    later = T0 + timedelta(hours=5)
    after = apply_fetch(cached, failure, fetched_at=later)
    assert after is cached
    assert policy_in_force(after, later) == POLICY
    # Once expired, a failed refresh leaves configuration alone in charge.
    assert policy_in_force(after, T0 + timedelta(days=1, seconds=1)) is None
    # A failure never installs a policy where there was none.
    assert apply_fetch(None, failure, fetched_at=later) is None


def test_successful_fetch_replaces_policy() -> None:
    cached = CachedMtaStsPolicy(POLICY, fetched_at=T0, policy_id="1")
    newer = parse_policy("version: STSv1\nmode: testing\nmx: b.example\nmax_age: 600\n")
    later = T0 + timedelta(hours=5)
    after = apply_fetch(cached, FetchOutcome.OK, newer, fetched_at=later, policy_id="2")
    assert after == CachedMtaStsPolicy(newer, fetched_at=later, policy_id="2")
    assert policy_in_force(after, later + timedelta(seconds=599)) == newer
    assert policy_in_force(after, later + timedelta(seconds=600)) is None
    with pytest.raises(PolicyInputError, match="needs the fetched policy"):
        apply_fetch(cached, FetchOutcome.OK, fetched_at=later)
    with pytest.raises(PolicyInputError, match="cannot come with a policy"):
        apply_fetch(cached, FetchOutcome.INVALID, newer, fetched_at=later)


def test_no_policy_means_configuration() -> None:
    assert policy_in_force(None, T0) is None
