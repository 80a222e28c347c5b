"""The ``tlspolicy`` command line.

Core commands (``resolve``, ``check``) live here; other commands are added
by the modules listed in :data:`COMMAND_MODULES`, each exposing
``add_commands(subparsers)``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from importlib import resources
from typing import Any, Final, TextIO

from . import (
    OPTION_SPECS,
    Config,
    ConfigError,
    ConfigErrors,
    Decision,
    Destination,
    Options,
    PolicyInputError,
    Resolver,
    TlsPolicyError,
    load_config,
    loads_toml,
)

__all__ = ["COMMAND_MODULES", "example_config", "load_cli_config", "main"]

COMMAND_MODULES: Final[tuple[str, ...]] = (
    "tlspolicy.integrations_cli",
    "tlspolicy.testing.commands",
)
"""Modules that add subcommands (imported lazily; each has ``add_commands``)."""

EXAMPLE_NAME: Final = "example.toml"


def example_text() -> str:
    """The bundled example configuration as TOML text."""
    return resources.files("tlspolicy").joinpath("data", EXAMPLE_NAME).read_text("utf-8")


def example_config() -> Config:
    """The bundled example configuration (package data)."""
    return loads_toml(example_text(), f"<bundled {EXAMPLE_NAME}>")


def load_cli_config(paths: Sequence[str] | None) -> Config:
    """The configuration named by ``--config`` options, or the bundled example."""
    if not paths:
        return example_config()
    return load_config(*paths)


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """Add the shared ``--config FILE`` option (repeatable, layered in order)."""
    parser.add_argument(
        "--config", "-c", action="append", metavar="FILE",
        help="configuration file (TOML or ecelerity.conf); repeat to layer files, later "
             "ones win; default: the bundled example",
    )


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
    from .policies.dane import TlsaLookup, TlsaLookupStatus, TlsaRecord
    from .policies.mtasts import FetchOutcome, parse_policy

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
    config = load_cli_config(args.config)
    resolver = Resolver(config)
    decision = resolver.resolve(args.domain, args.binding, mx_host=args.mx,
                                overrides=_parse_override(args.override),
                                destination=_destination(args))
    if args.json:
        json.dump(decision.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_decision(decision, sys.stdout)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    failures = 0
    for path in args.files:
        try:
            load_config(path)
        except ConfigErrors as many:
            failures += len(many.errors)
            for error in many.errors:
                sys.stdout.write(f"{error}\n")
        except ConfigError as one:
            failures += 1
            sys.stdout.write(f"{one}\n")
        else:
            sys.stdout.write(f"{path}: ok\n")
    if failures:
        sys.stdout.write(f"{failures} error{'s' if failures != 1 else ''}\n")
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="tlspolicy",
        description="Decide what an SMTP client does about STARTTLS for a delivery attempt.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    resolve = sub.add_parser("resolve", help="show the decision for one domain and binding")
    resolve.add_argument("domain", help="recipient domain (or IP literal)")
    resolve.add_argument("--binding", "-b", help="binding name (default: the default binding)")
    resolve.add_argument("--mx", metavar="HOST", help="MX host name being connected to")
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
    add_config_argument(resolve)
    resolve.set_defaults(func=_cmd_resolve)

    check = sub.add_parser("check", help="validate configuration files, print every error")
    check.add_argument("files", nargs="+", metavar="FILE")
    check.set_defaults(func=_cmd_check)

    for module_name in COMMAND_MODULES:
        module: Any = importlib.import_module(module_name)
        module.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result: int = args.func(args)
        return result
    except TlsPolicyError as exc:
        sys.stderr.write(f"tlspolicy: error: {exc}\n")
        return 2
    except BrokenPipeError:
        # The reader (e.g. ``| head``) went away; that is not an error of ours.
        sys.stderr.close()
        return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
