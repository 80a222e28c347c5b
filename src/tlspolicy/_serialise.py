"""Plain-dict (JSON) rendering of decisions, through one cattrs converter."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import cattrs

from .decision import Decision, Outcome, RequiredSecurity, Source, Status, TlsParameters
from .options import OPTION_SPECS, UNSET, TlsVersion

converter = cattrs.Converter()
converter.register_unstructure_hook(enum.Enum, lambda e: e.value)
converter.register_unstructure_hook(Source, str)
converter.register_unstructure_hook(
    Status,
    lambda s: {"code": s.code, "enhanced": s.enhanced, "text": s.text, "tlsrpt": s.tlsrpt},
)


def _outcome(outcome: Outcome) -> dict[str, Any]:
    return {
        "action": outcome.action.value,
        "status": converter.unstructure(outcome.status),
        "report": outcome.report,
    }


def _parameters(p: TlsParameters) -> dict[str, Any]:
    return {
        "ca_file": p.ca_file,
        "certificate_file": p.certificate_file,
        "key_file": p.key_file,
        "ciphers": p.ciphers,
        "tls13_ciphersuites": p.tls13_ciphersuites,
        "protocols": [v.value for v in TlsVersion if v in p.protocols],
        "sni": p.sni,
        "engine": p.engine.value,
    }


def _security(r: RequiredSecurity) -> dict[str, Any]:
    return {
        "plaintext_allowed_when": sorted(reason.value for reason in r.plaintext),
        "min_tls_verification": r.min_verified.name.lower(),
    }


def _effective(values: Mapping[str, object]) -> dict[str, object]:
    return {name: (None if value is None or value is UNSET else OPTION_SPECS[name].dump(value))
            for name, value in values.items()}


def decision_to_dict(d: Decision) -> dict[str, Any]:
    """Render a decision as JSON-ready builtins, stable key order."""
    return {
        "domain": d.domain,
        "binding": d.binding,
        "binding_group": d.binding_group,
        "mx_host": d.mx_host,
        "plan": d.plan.value,
        "plan_status": converter.unstructure(d.plan_status),
        "tls": d.tls.value,
        "verification": d.verification.value,
        "fallback": d.fallback,
        "requiretls": d.requiretls,
        "outcomes": {obs.value: _outcome(o) for obs, o in d.outcomes.items()},
        "parameters": _parameters(d.parameters),
        "reference_identities": list(d.reference_identities),
        "required_security": _security(d.required_security),
        "effective": _effective(d.effective),
        "explanation": {name: str(src) for name, src in d.explanation.items()},
        "decided_by": {name: str(src) for name, src in d.decided_by.items()},
        "tlsa_records": [r.to_text() for r in d.tlsa_records],
        "reports": [{"result_type": r.result_type, "detail": r.detail} for r in d.reports],
        "notes": list(d.notes),
    }
