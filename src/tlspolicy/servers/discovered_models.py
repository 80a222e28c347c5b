"""What the discovery lookup holds: its settings' defaults, the inputs one answer was
computed from, the answers kept for reuse and the configuration's side of a next hop."""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import attrs

from ..decision import Source
from ..errors import TlsPolicyError
from ..policies.dane import TlsaLookup
from ..postfix.levels import PostfixPolicy, PostfixWarning
from ..postfix.replies import SocketmapReply

if TYPE_CHECKING:
    from ..discovery import MxLookup, StsState

#: Longest time an answer is reused while every input it came from is unchanged.
DEFAULT_ANSWER_MEMO_TTL: Final = 30.0
#: Domains remembered as in use for proactive refresh.
DEFAULT_MAX_IN_USE: Final = 100_000
#: MX hosts decided one by one; the hosts beyond count as of unknown DANE state, which
#: keeps the answer at dane/dane-only where Postfix checks TLSA itself.
MAX_MX_HOSTS: Final = 32
_MEMO_SIZE: Final = 65_536
#: Parsed keys kept: parsing one again takes about 2 microseconds, holding one about 190
#: bytes, so only the keys asked most often are worth keeping (a full memo starts again).
_KEY_MEMO_SIZE: Final = 4_096
# The binding every map name is answered through in drop-in mode (its configuration
# declares no other).
_DEFAULT_BINDING: Final = "default"
# MTA-STS switched off for a next hop: its answers depend on no MTA-STS state.
_STS_OFF: Final = object()


def _aware(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


@attrs.frozen(slots=True)
class _Inputs:
    """What discovery found for one next hop: MX (``None`` for a smart host), the MTA-STS
    state (``None``: MTA-STS off, or not known by the deadline), the TLSA lookup per host
    looked up, when the first DNS answer used runs out, and whether all of it came from
    complete, successful lookups (only then is the answer kept for reuse)."""

    mx: MxLookup | None
    sts: StsState | None
    tlsa: dict[str, TlsaLookup | None]
    until: float = math.inf
    complete: bool = False
    #: Whether MTA-STS and TLSA were looked up at all (the next hop's switches and the
    #: resolver's trust): a shadow candidate that needs what was not looked up takes it
    #: from what discovery holds in memory, never from a new query.
    sts_asked: bool = True
    tlsa_asked: bool = True
    #: Whether the MX hosts were looked up: in drop-in mode without DANE, an enforce
    #: policy in force makes the answer without them (see ``_Fetching._mx_unneeded``);
    #: ``mx`` is then the failed lookup's stand-in.
    mx_asked: bool = True


@attrs.frozen(slots=True)
class FetchedInputs:
    """What one answer was computed from: discovery's inputs, the time of the answer and
    the resolver's trust then.  A shadow candidate is judged on them (SEMANTICS 9: the
    same request with the same fetched inputs), never on a fetch of its own."""

    inputs: _Inputs
    at: float
    dnssec: bool
    dnssec_detail: str


class ShadowInputsMissingError(TlsPolicyError):
    """A shadow candidate needs an input the live answer did not fetch and discovery does
    not hold: the request is not compared (counted as a candidate error)."""


@attrs.frozen(slots=True)
class _Held:
    """An answer kept for reuse: the MTA-STS state (a weak reference to it, ``None``, or
    ``_STS_OFF``) and trust epoch it came from, until when, the reply and rule name, the
    answer and its policy's expiry when it carries ``policy_ttl``, and what it was
    computed from (kept only while a shadow candidate is told the inputs: ``None``
    otherwise, the bulk of what is held)."""

    sts: object
    epoch: int
    until: float
    reply: SocketmapReply
    domain: str
    rule: str
    timed: PostfixPolicy | None
    expires: float
    fetched: FetchedInputs | None



@attrs.frozen(slots=True)
class _Values:
    """The configuration's side of one next hop: its effective values (a routed next
    hop's combined), their sources, the ``match=`` list of verified levels, the next-hop
    notes, whether routes combined them, and whether DANE and MTA-STS apply."""

    values: Mapping[str, object]
    sources: Mapping[str, Source]
    match: str | None
    notes: tuple[PostfixWarning, ...]
    routed: bool
    dane_on: bool
    sts_on: bool


@functools.cache  # one value for every answer made without the MX hosts
def _unasked_mx() -> MxLookup:
    return _failed_mx("MX not looked up: drop-in mode without DANE, an enforce policy in "
                      "force")


def _failed_mx(detail: str) -> MxLookup:
    from ..discovery import MxLookup  # the discovery extra

    return MxLookup("failed", (), False, detail)

