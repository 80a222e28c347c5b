"""Finding: MTA-STS repeated keys dropped the policy (plaintext under tls = no).

RFC 8461 section 3.2 and SEMANTICS section 5: a repeated non-``mx`` key
keeps its first value, a repeated ``id=`` in the TXT record likewise, and a
``max_age`` above 31557600 is capped; each is a note, never an invalid
policy.
"""

from __future__ import annotations

import pytest

from tlspolicy import StsMode
from tlspolicy.policies.mtasts import (
    MAX_MAX_AGE,
    MtaStsPolicyError,
    parse_policy,
    parse_txt_record,
    select_txt_record,
)

HEAD = "version: STSv1\nmode: enforce\nmx: mx.example.com\n"


@pytest.mark.parametrize(("text", "mode", "max_age"), [
    (HEAD + "max_age: 86400\nmax_age: 600\n", StsMode.ENFORCE, 86400),
    (HEAD + "mode: none\nmax_age: 86400\n", StsMode.ENFORCE, 86400),
    ("version: STSv1\nmode: enforce\nmode: testing\nmx: mx.example.com\nmax_age: 9\n",
     StsMode.ENFORCE, 9),
    ("version: STSv1\nversion: STSv2\nmode: enforce\nmx: mx.example.com\nmax_age: 9\n",
     StsMode.ENFORCE, 9),
])
def test_repeated_key_keeps_the_first_value(text: str, mode: StsMode, max_age: int) -> None:
    policy = parse_policy(text)
    assert (policy.mode, policy.max_age) == (mode, max_age)
    assert len(policy.notes) == 1 and "first value is kept" in policy.notes[0]


def test_invalid_first_value_still_decides() -> None:
    with pytest.raises(MtaStsPolicyError):
        parse_policy("version: STSv1\nmode: strict\nmode: enforce\nmx: a.example\nmax_age: 9\n")


@pytest.mark.parametrize("age", [MAX_MAX_AGE + 1, 9_999_999_999])
def test_max_age_above_the_maximum_is_capped(age: int) -> None:
    policy = parse_policy(HEAD + f"max_age: {age}\n")
    assert policy.max_age == MAX_MAX_AGE
    assert any("capped" in note for note in policy.notes)


def test_max_age_at_the_maximum_has_no_note() -> None:
    assert parse_policy(HEAD + f"max_age: {MAX_MAX_AGE}\n").notes == ()


def test_repeated_txt_id_keeps_the_first() -> None:
    record = select_txt_record(["v=STSv1; id=20240101; id=20250101;", "unrelated"])
    assert record is not None and record.id == "20240101"
    assert record.notes and "first value is kept" in record.notes[0]


def test_notes_do_not_change_equality() -> None:
    noted = parse_policy(HEAD + "max_age: 600\nmax_age: 700\n")
    assert noted == parse_policy(HEAD + "max_age: 600\n")
    assert parse_txt_record("v=STSv1; id=1; id=2") == parse_txt_record("v=STSv1; id=1")
