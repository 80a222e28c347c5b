"""Destination policies applied on top of configuration (SEMANTICS section 5).

Precedence: DANE (when it applies) > MTA-STS > configuration.  Every rule here
only ever makes the requirements stricter than configuration alone; per-message
overrides act on the configuration layer before this runs, so they can never
relax what a destination policy demands.

Everything is pure: the caller has already fetched the MTA-STS policy, looked
up TLSA records and judged DNSSEC, and passes what it found in a
:class:`Destination`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Final

import attrs

from ..decision import PolicyReport, Requirements, Source
from ..errors import PolicyInputError
from ..options import Tls, TlsVerify
from ..outcomes import Observation, Reason, Verification
from .dane import DaneApplicability, DaneMatchResult, TlsaLookup, TlsaRecord
from .mtasts import CachedMtaStsPolicy, FetchOutcome, MtaStsPolicy, StsMode, policy_in_force

__all__ = ["Destination", "PolicyResult", "apply_destination", "dane_observations"]


def dane_observations(result: DaneMatchResult) -> tuple[Observation, ...]:
    """The decision observations for a DANE match result (empty when DANE accepted).

    Feed them to :meth:`~tlspolicy.Decision.after_certificate` of a decision
    whose verification is DANE.
    """
    return tuple(Observation(problem.value) for problem in result.problems)


def _policy_or_none(value: object) -> MtaStsPolicy | None:
    if value is None or isinstance(value, MtaStsPolicy):
        return value
    raise PolicyInputError(
        "mta_sts must be the MtaStsPolicy in force (see Destination.from_cache) or None, "
        f"not {type(value).__name__}")


@attrs.frozen(slots=True)
class Destination:
    """What the caller knows about the destination and the message.

    - ``mta_sts``: the MTA-STS policy in force for the recipient domain, or
      ``None`` when no unexpired policy exists (build it from a cache entry
      with :meth:`from_cache`, which applies the RFC 8461 cache rule).
    - ``mta_sts_fetch``: the outcome of the latest policy fetch (reported).
    - ``tlsa``: the TLSA lookup for the MX host (``None``: not queried, as
      when DNSSEC to the MX host is not secure).
    - ``mx_dnssec``: the MX record came from a DNSSEC-validated lookup.
    - ``requiretls``: the message carries the REQUIRETLS MAIL FROM parameter.
    - ``tls_required_no``: the message has a ``TLS-Required: No`` header field.
    - ``tls_broken``: TLS to this host was remembered broken recently.
    """

    mta_sts: MtaStsPolicy | None = attrs.field(default=None, converter=_policy_or_none)
    mta_sts_fetch: FetchOutcome = attrs.field(
        default=FetchOutcome.OK, validator=attrs.validators.instance_of(FetchOutcome))
    tlsa: TlsaLookup | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(TlsaLookup)))
    mx_dnssec: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    requiretls: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))
    tls_required_no: bool = attrs.field(
        default=False, validator=attrs.validators.instance_of(bool))
    tls_broken: bool = attrs.field(default=False, validator=attrs.validators.instance_of(bool))

    @classmethod
    def from_cache(
        cls,
        cached: CachedMtaStsPolicy | None,
        now: datetime,
        *,
        fetch: FetchOutcome = FetchOutcome.OK,
        **others: object,
    ) -> Destination:
        """Build from an MTA-STS cache entry: an unexpired policy applies even when
        the latest fetch failed; an expired one is as good as none."""
        return cls(mta_sts=policy_in_force(cached, now), mta_sts_fetch=fetch,
                   **others)  # type: ignore[arg-type]


@attrs.frozen(slots=True)
class PolicyResult:
    """Requirements after destination policies, with how they got there."""

    requirements: Requirements
    sources: Mapping[str, Source]
    reports: tuple[PolicyReport, ...]
    tlsa_records: tuple[TlsaRecord, ...]
    mta_sts_mode: StsMode | None
    dane: DaneApplicability | None
    sni: str | None
    notes: tuple[str, ...]
    #: The MTA-STS policy applied (in force and switched on), any mode.
    mta_sts: MtaStsPolicy | None = None


_STRICT_VERIFY: Final = {
    Verification.NO: 0, Verification.OPTIONAL: 1, Verification.CA: 2, Verification.HOST: 3,
    Verification.DANE: 4,
}


def _at_least(current: Verification, floor: TlsVerify) -> Verification:
    wanted = Verification.of(floor)
    return wanted if _STRICT_VERIFY[wanted] > _STRICT_VERIFY[current] else current


def _off(use: str, enable: str, values: Mapping[str, object]) -> str:
    """Why a destination policy is not used: which of its two switches is off."""
    off = [name for name in (use, enable) if not values[name]]
    return f"{' and '.join(off)} {'is' if len(off) == 1 else 'are'} off"


def apply_destination(
    base: Requirements,
    values: Mapping[str, object],
    destination: Destination,
    *,
    mx_host: str | None,
) -> PolicyResult:
    """Make ``base`` (configuration alone) as strict as the destination demands.

    ``values`` are the effective option values (for ``use_mta_sts``,
    ``enable_mta_sts``, ``use_dane``, ``enable_dane``).  Raises
    :class:`~tlspolicy.errors.PolicyInputError` when a policy needs the MX host
    name and none was given: without it the MX filter and the reference
    identity cannot be checked, so the library fails closed.
    """
    tls = base.tls
    verification = base.verification
    fallback = base.fallback
    identities = base.reference_identities
    plan_failure: Reason | None = None
    skip_tls = False
    sources: dict[str, Source] = {}
    reports: list[PolicyReport] = []
    notes: list[str] = []
    sni: str | None = None

    requiretls = destination.requiretls
    # The REQUIRETLS parameter wins over a TLS-Required: No header (RFC 8689 section 5).
    ignore_destination = destination.tls_required_no and not requiretls
    if ignore_destination:
        notes.append("TLS-Required: No: MTA-STS and DANE ignored; configuration applies")

    if destination.tls_required_no and requiretls:
        notes.append("TLS-Required: No ignored: the message carries REQUIRETLS, which wins "
                     "(RFC 8689 section 5)")

    sts_on = bool(values["use_mta_sts"]) and bool(values["enable_mta_sts"])
    dane_on = bool(values["use_dane"]) and bool(values["enable_dane"])
    sts_given = destination.mta_sts is not None or (
        destination.mta_sts_fetch is not FetchOutcome.OK)
    if sts_given and not sts_on:
        notes.append(f"MTA-STS input ignored: {_off('use_mta_sts', 'enable_mta_sts', values)}")
    if destination.tlsa is not None and not dane_on:
        notes.append(f"TLSA lookup ignored: {_off('use_dane', 'enable_dane', values)}")
    if destination.mx_dnssec and not requiretls:
        notes.append("mx_dnssec has no effect here: it only decides whether a REQUIRETLS "
                     "message may use this MX host")
    policy = destination.mta_sts if sts_on and not ignore_destination else None
    mode = policy.mode if policy is not None else None
    if sts_on and destination.mta_sts_fetch is not FetchOutcome.OK:
        result_type = destination.mta_sts_fetch.tlsrpt_result_type
        assert result_type is not None
        reports.append(PolicyReport(result_type, "latest MTA-STS policy fetch failed" + (
            "; the cached policy stays in force" if policy is not None else
            "; no policy in force, configuration applies")))

    tlsa = destination.tlsa if dane_on and not ignore_destination else None
    dane = tlsa.classify() if tlsa is not None else None
    records: tuple[TlsaRecord, ...] = ()

    needs_mx = (mode in (StsMode.ENFORCE, StsMode.TESTING)) or requiretls or (
        dane in (DaneApplicability.USABLE, DaneApplicability.UNUSABLE_ONLY))
    if needs_mx and mx_host is None:
        raise PolicyInputError(
            "mx_host is required when an MTA-STS policy, usable DANE records or REQUIRETLS "
            "apply: the MX host name is the identity to check")

    # MTA-STS (RFC 8461 section 5): enforce makes TLS required and verified against
    # the MX name; testing only raises the floor and reports.
    if policy is not None and mode is StsMode.ENFORCE:
        assert mx_host is not None
        tls = Tls.REQUIRED
        verification = Verification.HOST
        fallback = False
        identities = (mx_host,)
        for key in ("tls", "verification", "fallback", "identities"):
            sources[key] = Source("mta-sts", "enforce")
        if not policy.permits_mx(mx_host):
            plan_failure = Reason.MX_NOT_PERMITTED
            sources["plan"] = Source("mta-sts", f"MX {mx_host} not in the policy")
    elif policy is not None and mode is StsMode.TESTING:
        assert mx_host is not None
        if tls < Tls.IFAVAILABLE:
            tls = Tls.IFAVAILABLE
            sources["tls"] = Source("mta-sts", "testing")
        raised = _at_least(verification, TlsVerify.OPTIONAL)
        if raised is not verification:
            verification = raised
            sources["verification"] = Source("mta-sts", "testing")
        if not policy.permits_mx(mx_host):
            reports.append(PolicyReport(
                "validation-failure",
                f"MX {mx_host} does not match the MTA-STS policy (testing mode: reported only)"))
    elif policy is not None:
        notes.append("MTA-STS policy mode none: configuration applies")

    # DANE (RFC 7672) outranks MTA-STS's certificate rules; MTA-STS still filters MX hosts.
    if dane is DaneApplicability.FAILED:
        plan_failure = plan_failure or Reason.TLSA_LOOKUP_FAILED
        sources.setdefault("plan", Source("dane", "TLSA lookup failed or bogus"))
        tls = Tls.REQUIRED
        fallback = False
        sources["tls"] = Source("dane", "TLSA lookup failed or bogus")
    elif dane is DaneApplicability.USABLE:
        assert tlsa is not None and mx_host is not None
        tls = Tls.REQUIRED
        verification = Verification.DANE
        fallback = False
        records = tlsa.usable_records
        base_domain = tlsa.base_domain or mx_host
        # DANE-TA names: the base domain first, then h' and h (RFC 7672 section 3.2.2).
        identities = tuple(dict.fromkeys((base_domain, *tlsa.reference_names)))
        sni = base_domain
        for key in ("tls", "verification", "fallback", "identities"):
            sources[key] = Source("dane", "usable TLSA records")
        if mode is StsMode.ENFORCE:
            notes.append("MTA-STS enforce: its certificate rules give way to DANE "
                         "(RFC 8461 section 2); its MX patterns still apply")
    elif dane is DaneApplicability.UNUSABLE_ONLY:
        tls = Tls.REQUIRED
        fallback = False
        sources["tls"] = Source("dane", "TLSA records present, none usable")
        sources["fallback"] = Source("dane", "TLSA records present, none usable")
        notes.append("TLSA records present but none usable: TLS required, verification "
                     "from MTA-STS or configuration")

    elif dane is DaneApplicability.INSECURE or dane is DaneApplicability.NONE:
        assert tlsa is not None
        notes.append(f"TLSA lookup {tlsa.status.value}: no DANE for this host; "
                     + ("MTA-STS applies" if mode in (StsMode.ENFORCE, StsMode.TESTING)
                        else "configuration applies"))

    # REQUIRETLS (RFC 8689 section 4.2.1), per message.
    if requiretls:
        assert mx_host is not None
        mx_ok = destination.mx_dnssec or (
            policy is not None and mode in (StsMode.ENFORCE, StsMode.TESTING)
            and policy.permits_mx(mx_host))
        if not mx_ok:
            plan_failure = plan_failure or Reason.REQUIRETLS_NOT_SUPPORTED
            sources.setdefault("plan", Source(
                "requiretls", "MX neither DNSSEC-validated nor matching an MTA-STS policy"))
        tls = Tls.REQUIRED
        fallback = False
        sources.setdefault("tls", Source("requiretls"))
        if verification is not Verification.DANE:
            if verification is not Verification.HOST or identities != (mx_host,):
                sources["verification"] = Source("requiretls", "PKIX against the MX name")
            verification = Verification.HOST
            identities = (mx_host,)

    # Remembered broken TLS (KumoMTA's remember_broken_tls).
    if destination.tls_broken and plan_failure is not None:
        notes.append("remembered broken TLS has no effect: the plan already fails")
    elif destination.tls_broken and tls is Tls.NO:
        notes.append("remembered broken TLS has no effect: TLS is not attempted (tls no)")
    if destination.tls_broken and plan_failure is None and tls is not Tls.NO:
        strict = (mode is StsMode.ENFORCE or requiretls
                  or dane in (DaneApplicability.USABLE, DaneApplicability.UNUSABLE_ONLY))
        if (tls is Tls.IFAVAILABLE and not strict
                and verification in (Verification.NO, Verification.OPTIONAL)):
            skip_tls = True
            sources["plan"] = Source("remembered broken TLS", "opportunistic: plaintext")
        else:
            plan_failure = Reason.TLS_REMEMBERED_BROKEN
            sources["plan"] = Source("remembered broken TLS", "TLS is required here")

    requirements = Requirements(
        tls=tls,
        verification=verification,
        fallback=fallback,
        reference_identities=identities,
        plan_failure=plan_failure,
        skip_tls=skip_tls,
        requiretls=requiretls,
    )
    return PolicyResult(requirements, sources, tuple(reports), records, mode, dane, sni,
                        tuple(notes), policy)
