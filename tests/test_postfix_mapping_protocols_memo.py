"""The Postfix mapping of ``tls_protocols`` is kept per text, not per version set."""

from __future__ import annotations

from tlspolicy.options import TlsProtocols
from tlspolicy.postfix.mapping import _protocols


def test_equal_version_sets_with_other_texts_keep_their_own_notes() -> None:
    # The two values are equal (same versions), but each note quotes its own text.
    first = TlsProtocols.parse("TLSv1.0:TLSv1.2")
    second = TlsProtocols.parse("+TLSv1.2:+TLSv1.0")
    assert first == second
    for _ in range(2):  # the second round comes from the kept results
        for value in (first, second):
            spec, notes = _protocols(value, (3, 7, 11))
            assert spec == ">=TLSv1.2:<=TLSv1.2"
            assert notes and all(repr(value.spec) in note for _, note in notes)
            spec, notes = _protocols(value, (3, 7, 11), cover_holes=True)
            assert spec == ">=TLSv1:<=TLSv1.2"
            assert any(code == "protocols-hole-covered" for code, _ in notes)
            assert all(repr(value.spec) in note for _, note in notes)
