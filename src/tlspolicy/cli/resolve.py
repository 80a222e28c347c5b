"""``tlspolicy resolve``: the decision for one domain and binding, and where it came from."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO

from ..decision import Decision
from ..errors import Location, PolicyInputError
from ..formats.files import read_regular_bytes
from ..options import OPTION_SPECS, Options
from ..policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
from ..policies.destination import Destination
from ..policies.mtasts import (
    MAX_POLICY_BYTES,
    FetchOutcome,
    MtaStsPolicy,
    MtaStsPolicyError,
    parse_policy,
)
from ..policytests.expectations import INPUT_KEYS
from ..resolver import Resolver
from ._common import (
    UsageError,
    add_at,
    add_binding,
    add_config_files,
    add_json,
    evaluation_time,
    load_configuration,
    note,
)

__all__ = ["DEPRECATED_FLAGS", "INPUT_FLAGS", "register"]


def _parse_override(items: Sequence[str] | None) -> Options | None:
    if not items:
        return None
    raw: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"--override needs OPTION=VALUE, got {item!r}")
        raw[name.strip()] = value.strip()
    # "override" is how the explanation names a per-message value too.
    return Options.from_mapping(raw, Location(scope="override"))


INPUT_FLAGS: Final[Mapping[str, str]] = {
    "mta_sts": "--mta-sts",
    "mta_sts_fetch": "--mta-sts-fetch",
    "tlsa": "--tlsa",
    "tlsa_records": "--tlsa-record",
    "tlsa_base_domain": "--tlsa-base-domain",
    "mx_dnssec": "--mx-dnssec",
    "requiretls": "--requiretls",
    "tls_required_no": "--tls-required-no",
    "tls_broken": "--tls-broken",
}
"""The ``resolve`` flag for every destination-policy input, by its name in expectation
files and :class:`~tlspolicy.Destination` (one vocabulary: the flag is the name with
dashes, ``tlsa_records`` takes one record per ``--tlsa-record``)."""

DEPRECATED_FLAGS: Final[Mapping[str, str]] = {
    "--mx": "--mx-host",
    "--mta-sts-policy": "--mta-sts",
    "--broken-tls": "--tls-broken",
    "--dnssec": "--tlsa",
}
"""Old spellings that still work, hidden from ``--help``, with their new names."""

_ON_OFF_INPUTS: Final = ("mx_dnssec", "requiretls", "tls_required_no", "tls_broken")
"""The inputs that are true or false: on the command line, a flag without a value."""


def _input_help(key: str) -> str:
    """The help of an input's flag: what the input means, as expectation files document
    it, and its name there."""
    # An expectation file writes an on/off input as true or false; a flag takes no value.
    return f"{INPUT_KEYS[key].removesuffix(' (true/false)')} ({key})"


_VALUE_COLUMN: Final = 30
"""The widest value ``resolve`` keeps on its option's line."""

_STOPPING: Final = frozenset({"fail", "defer"})
"""The actions that give the message an SMTP status; the others deliver."""

_FETCH_VALUES: Final = tuple(o.value for o in FetchOutcome)
_TLSA_VALUES: Final = tuple(s.value for s in TlsaLookupStatus)


class _DeprecatedFlag(argparse.Action):
    """An old on/off flag: sets the new one's destination and says so on stderr."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=False, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        assert option_string is not None
        note(f"{option_string} is deprecated; use {DEPRECATED_FLAGS[option_string]}")
        setattr(namespace, self.dest, True)


class _Deprecated(argparse.Action):
    """An old flag: stores into the new one's destination and says so on stderr."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        assert option_string is not None
        note(f"{option_string} is deprecated; use {DEPRECATED_FLAGS[option_string]}")
        setattr(namespace, self.dest, values)


def _fetch_word(text: str) -> str:
    # "failed" was the old word for fetch-error.
    if text == "failed":
        note("--mta-sts-fetch failed is deprecated; use --mta-sts-fetch fetch-error")
        return FetchOutcome.FETCH_ERROR.value
    return text


def _read_policy(path: str) -> MtaStsPolicy:
    # A regular file of a policy's size at most (not a FIFO, not /dev/zero): a located
    # error otherwise.
    document = read_regular_bytes(path, max_bytes=MAX_POLICY_BYTES, what="MTA-STS policy")
    try:
        return parse_policy(document)
    except MtaStsPolicyError as exc:
        raise _in_file(exc, path) from None


def _in_file(exc: MtaStsPolicyError, path: str) -> MtaStsPolicyError:
    """The same error, saying which file: ``MTA-STS policy FILE, line 3: ...``."""
    where = [path]
    if exc.line is not None:
        where.append(f"line {exc.line}")
    if exc.key is not None:
        where.append(f"key {exc.key!r}")
    located = MtaStsPolicyError.__new__(MtaStsPolicyError)
    PolicyInputError.__init__(located, f"MTA-STS policy {', '.join(where)}: {exc.message}")
    located.message, located.line, located.key = exc.message, exc.line, exc.key
    return located


def _tlsa_lookup(args: argparse.Namespace) -> TlsaLookup | None:
    records = tuple(TlsaRecord.parse(text) for text in args.tlsa_records or ())
    status_text: str | None = args.tlsa
    if args.dnssec is not None:
        # The old --dnssec named the security of the TLSA answer; "secure" is records or
        # nodata, depending on whether records were given.
        if status_text is not None:
            raise UsageError("give --tlsa only (--dnssec is its deprecated spelling)")
        status_text = args.dnssec if args.dnssec != "secure" else (
            "records" if records else "nodata")
    if status_text is None:
        if records:
            status_text = TlsaLookupStatus.RECORDS.value
        elif args.tlsa_base_domain:
            raise UsageError("--tlsa-base-domain needs --tlsa or --tlsa-record")
        else:
            return None
    status = TlsaLookupStatus(status_text)
    if records and status is not TlsaLookupStatus.RECORDS:
        raise UsageError(f"--tlsa-record needs --tlsa records (a DNSSEC-validated answer with "
                         f"records), not --tlsa {status.value}")
    return TlsaLookup(status, records, base_domain=args.tlsa_base_domain)


def _destination(args: argparse.Namespace) -> Destination | None:
    """The destination inputs given on the command line, or ``None`` if none."""
    given = (args.mta_sts, args.mta_sts_fetch, args.tlsa, args.tlsa_records,
             args.tlsa_base_domain, args.dnssec, args.requiretls, args.tls_required_no,
             args.tls_broken, args.mx_dnssec)
    if not any(given):
        return None
    return Destination(
        mta_sts=_read_policy(args.mta_sts) if args.mta_sts else None,
        mta_sts_fetch=FetchOutcome(args.mta_sts_fetch or FetchOutcome.OK.value),
        tlsa=_tlsa_lookup(args), mx_dnssec=args.mx_dnssec, requiretls=args.requiretls,
        tls_required_no=args.tls_required_no, tls_broken=args.tls_broken,
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
        action_width = max(len(o["action"]) for o in d["outcomes"].values())
        for name, o in d["outcomes"].items():
            line = f"  {name:<{width}}  {o['action'].upper():<{action_width}}"
            if o["status"]:
                s = o["status"]
                rpt = f" [tls-rpt {s['tlsrpt']}]" if s["tlsrpt"] else ""
                if o["action"] in _STOPPING:
                    line += f"  {s['code']} {s['enhanced']} {s['text']}{rpt}"
                else:
                    # Delivery goes on: no SMTP status is given, only what is recorded.
                    line += f"  {'reported' if o['report'] else 'noted'}: {s['text']}{rpt}"
            elif o["report"]:
                line += "  reported"
            out.write(line.rstrip() + "\n")
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
    shown = {name: "-" if d["effective"][name] is None else json.dumps(d["effective"][name])
             for name in OPTION_SPECS}
    # The value column is as wide as its values, up to a limit; a longer value gets its
    # "from" on the next line, so the sources stay in one column.
    column = max((len(v) for v in shown.values() if len(v) <= _VALUE_COLUMN), default=1)
    for name in OPTION_SPECS:
        value, source = shown[name], d["explanation"][name]
        if len(value) > column:
            out.write(f"  {name:<{width}}  {value}\n  {'':<{width}}  {'':<{column}}  "
                      f"from {source}\n")
        else:
            out.write(f"  {name:<{width}}  {value:<{column}}  from {source}\n")


def _cmd_resolve(args: argparse.Namespace) -> int:
    config = load_configuration(args)
    resolver = Resolver(config, at=evaluation_time(args))
    decision = resolver.resolve(args.domain, args.binding, mx_host=args.mx_host,
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
    resolve.add_argument("domain", metavar="DOMAIN", help="recipient domain (or IP literal)")
    add_binding(resolve)
    resolve.add_argument("--mx-host", metavar="HOST",
                         help="MX host name being connected to (mx_host)")
    resolve.add_argument("--mx", dest="mx_host", metavar="HOST", action=_Deprecated,
                         help=argparse.SUPPRESS)
    add_at(resolve)
    resolve.add_argument("--override", action="append", metavar="OPTION=VALUE",
                         help="per-message override (repeatable), e.g. tls=required")
    add_json(resolve, "the decision")
    policy = resolve.add_argument_group(
        "destination policy inputs (what your MTA found; the same names as in expectation "
        "files' [case.inputs] and the Destination class)")
    policy.add_argument(INPUT_FLAGS["mta_sts"], metavar="FILE",
                        help="the MTA-STS policy document in force for the domain (mta_sts)")
    policy.add_argument("--mta-sts-policy", dest="mta_sts", metavar="FILE", action=_Deprecated,
                        help=argparse.SUPPRESS)
    policy.add_argument(INPUT_FLAGS["mta_sts_fetch"], choices=_FETCH_VALUES, type=_fetch_word,
                        help="outcome of the latest policy fetch (mta_sts_fetch; default ok)")
    policy.add_argument(INPUT_FLAGS["tlsa"], choices=_TLSA_VALUES,
                        help="what the TLSA lookup for the MX host found (tlsa): insecure "
                             "(not signed), records, nodata or nxdomain (validated answers), "
                             "failed (SERVFAIL, timeout), bogus (validation failed)")
    policy.add_argument("--dnssec", choices=("secure", "insecure", "bogus", "failed"),
                        action=_Deprecated, help=argparse.SUPPRESS)
    policy.add_argument(INPUT_FLAGS["tlsa_records"], action="append", dest="tlsa_records",
                        metavar="'U S M HEX'",
                        help="a TLSA record of the MX host (tlsa_records; repeatable; "
                             "implies --tlsa records)")
    policy.add_argument(INPUT_FLAGS["tlsa_base_domain"], metavar="HOST",
                        help=_input_help("tlsa_base_domain"))
    for key in _ON_OFF_INPUTS:
        policy.add_argument(INPUT_FLAGS[key], action="store_true", help=_input_help(key))
    policy.add_argument("--broken-tls", dest="tls_broken", action=_DeprecatedFlag,
                        help=argparse.SUPPRESS)
    add_config_files(resolve)
    resolve.set_defaults(func=_cmd_resolve)
