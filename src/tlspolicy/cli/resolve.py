"""``tlspolicy resolve``: the decision for one domain and binding, and where it came from."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, Final, TextIO

from .. import (
    OPTION_SPECS,
    ConfigError,
    Decision,
    Destination,
    Options,
    PolicyInputError,
    Resolver,
)
from ._common import add_at, add_config_files, evaluation_time, load_configuration

__all__ = ["register"]


def _parse_override(items: Sequence[str] | None) -> Options | None:
    if not items:
        return None
    raw: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--override needs OPTION=VALUE, got {item!r}")
        raw[name.strip()] = value.strip()
    return Options.from_mapping(raw)


_FETCH_WORDS: Final = {
    "ok": "OK", "failed": "FETCH_ERROR", "invalid": "INVALID", "webpki-invalid": "WEBPKI_INVALID",
}


def _destination(args: argparse.Namespace) -> Destination | None:
    """The destination inputs given on the command line, or ``None`` if none."""
    from ..policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
    from ..policies.mtasts import FetchOutcome, parse_policy

    given = (args.mta_sts_policy, args.mta_sts_fetch, args.tlsa, args.dnssec, args.requiretls,
             args.tls_required_no, args.broken_tls, args.mx_dnssec)
    if not any(given):
        return None
    policy = None
    if args.mta_sts_policy:
        try:
            with open(args.mta_sts_policy, "rb") as handle:
                document = handle.read()
        except OSError as exc:
            raise PolicyInputError(
                f"{args.mta_sts_policy}: cannot read MTA-STS policy: {exc.strerror}") from None
        try:
            policy = parse_policy(document)
        except PolicyInputError as exc:
            raise type(exc)(f"{args.mta_sts_policy}: {exc}") from None
    fetch = FetchOutcome[_FETCH_WORDS[args.mta_sts_fetch or "ok"]]
    records = tuple(TlsaRecord.parse(text) for text in args.tlsa or ())
    tlsa: TlsaLookup | None
    if args.dnssec in (None, "insecure"):
        if records:
            raise PolicyInputError("--tlsa needs --dnssec secure: TLSA records only count "
                                   "from a DNSSEC-validated answer")
        tlsa = None if args.dnssec is None else TlsaLookup(TlsaLookupStatus.INSECURE)
    elif args.dnssec == "secure":
        tlsa = TlsaLookup(TlsaLookupStatus.RECORDS, records) if records else TlsaLookup(
            TlsaLookupStatus.NODATA)
    else:
        if records:
            raise PolicyInputError(f"--tlsa cannot be combined with --dnssec {args.dnssec}")
        tlsa = TlsaLookup(TlsaLookupStatus.BOGUS if args.dnssec == "bogus"
                          else TlsaLookupStatus.FAILED)
    return Destination(
        mta_sts=policy, mta_sts_fetch=fetch, tlsa=tlsa, mx_dnssec=args.mx_dnssec,
        requiretls=args.requiretls, tls_required_no=args.tls_required_no,
        tls_broken=args.broken_tls,
    )


def _print_decision(decision: Decision, out: TextIO) -> None:
    d = decision.to_dict()
    out.write(f"domain        {d['domain']}\n")
    out.write(f"binding       {d['binding']} (group {d['binding_group']})\n")
    if d["mx_host"]:
        out.write(f"mx host       {d['mx_host']}\n")
    plan = d["plan"].upper()
    if d["plan_status"]:
        s = d["plan_status"]
        plan += f"  {s['code']} {s['enhanced']} {s['text']}"
    out.write(f"plan          {plan}\n")
    out.write(f"tls           {d['tls']}    verification {d['verification']}    "
              f"fallback {'on' if d['fallback'] else 'off'}"
              f"{'    REQUIRETLS' if d['requiretls'] else ''}\n")
    if d["outcomes"]:
        out.write("\noutcomes\n")
        width = max(len(k) for k in d["outcomes"])
        for name, o in d["outcomes"].items():
            line = f"  {name:<{width}}  {o['action'].upper()}"
            if o["status"]:
                s = o["status"]
                line += f"  {s['code']} {s['enhanced']} {s['text']}"
                if s["tlsrpt"]:
                    line += f" [tls-rpt {s['tlsrpt']}]"
            if o["report"] and o["action"] == "proceed":
                line += "  (reported)"
            out.write(line + "\n")
    out.write("\nparameters\n")
    for key, value in d["parameters"].items():
        if isinstance(value, list):
            value = ", ".join(value)
        out.write(f"  {key:<19} {value if value is not None else '-'}\n")
    out.write(f"  {'identities':<19} {', '.join(d['reference_identities'])}\n")
    if d["decided_by"] or d["reports"] or d["notes"]:
        out.write("\ndestination policy\n")
        for name, source in d["decided_by"].items():
            out.write(f"  {name:<19} decided by {source}\n")
        for record in d["tlsa_records"]:
            out.write(f"  {'tlsa':<19} {record}\n")
        for report in d["reports"]:
            out.write(f"  {'report':<19} [tls-rpt {report['result_type']}] {report['detail']}\n")
        for note in d["notes"]:
            out.write(f"  {'note':<19} {note}\n")
    sec = d["required_security"]
    out.write("\nconnection reuse\n")
    out.write(f"  plaintext allowed when: {', '.join(sec['plaintext_allowed_when']) or 'never'}\n")
    out.write(f"  TLS must be verified as: {sec['min_tls_verification']}\n")
    out.write("\neffective values\n")
    width = max(len(k) for k in d["effective"])
    for name in OPTION_SPECS:
        value = d["effective"][name]
        shown = "-" if value is None else json.dumps(value)
        out.write(f"  {name:<{width}}  {shown:<28} from {d['explanation'][name]}\n")


def _cmd_resolve(args: argparse.Namespace) -> int:
    config = load_configuration(args)
    resolver = Resolver(config, at=evaluation_time(args))
    decision = resolver.resolve(args.domain, args.binding, mx_host=args.mx,
                                overrides=_parse_override(args.override),
                                destination=_destination(args))
    if args.json:
        json.dump(decision.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_decision(decision, sys.stdout)
    return 0


def register(sub: Any) -> None:
    """Add ``resolve`` to the command line's subparsers."""
    resolve = sub.add_parser("resolve", help="show the decision for one domain and binding")
    resolve.add_argument("domain", help="recipient domain (or IP literal)")
    resolve.add_argument("--binding", "-b", help="binding name (default: the default binding)")
    resolve.add_argument("--mx", metavar="HOST", help="MX host name being connected to")
    add_at(resolve)
    resolve.add_argument("--override", action="append", metavar="OPTION=VALUE",
                         help="per-message override (repeatable), e.g. tls=required")
    resolve.add_argument("--json", action="store_true", help="print the decision as JSON")
    policy = resolve.add_argument_group("destination policy inputs (what your MTA found)")
    policy.add_argument("--mta-sts-policy", metavar="FILE",
                        help="the MTA-STS policy document in force for the domain")
    policy.add_argument("--mta-sts-fetch", choices=sorted(_FETCH_WORDS),
                        help="outcome of the latest policy fetch (default ok)")
    policy.add_argument("--tlsa", action="append", metavar="'U S M HEX'",
                        help="a TLSA record of the MX host (repeatable); needs --dnssec secure")
    policy.add_argument("--dnssec", choices=("secure", "insecure", "bogus", "failed"),
                        help="DNSSEC status of the TLSA lookup for the MX host")
    policy.add_argument("--mx-dnssec", action="store_true",
                        help="the MX record came from a DNSSEC-validated lookup")
    policy.add_argument("--requiretls", action="store_true",
                        help="the message carries the REQUIRETLS MAIL FROM parameter")
    policy.add_argument("--tls-required-no", action="store_true",
                        help="the message has a 'TLS-Required: No' header field")
    policy.add_argument("--broken-tls", action="store_true",
                        help="TLS to this host was remembered broken recently")
    add_config_files(resolve)
    resolve.set_defaults(func=_cmd_resolve)
