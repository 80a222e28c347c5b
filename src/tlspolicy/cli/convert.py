"""``tlspolicy convert``: write a configuration as TOML, ecelerity.conf or Postfix tables."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..resolver import Resolver
from ..scopes import config_at
from ._common import add_config_files, evaluation_time, load_configuration, warn

__all__ = ["register"]


def _cmd_convert(args: argparse.Namespace) -> int:
    config = load_configuration(args)
    out = sys.stdout
    if args.to != "toml":
        # These formats cannot carry expiry: write the policy in force now, so an
        # expired stanza is never revived (each remaining expiry gets a loss note).
        config = config_at(config, evaluation_time(args))
    if args.to == "toml":
        from ..formats.toml import dumps_toml

        out.write(dumps_toml(config))
    elif args.to == "kumomta":
        from ..formats.kumomta import dumps_kumomta, kumomta_shaping

        out.write(dumps_kumomta(config))
        for note in kumomta_shaping(config)[1]:
            warn(note.describe())
    elif args.to == "ecelerity":
        from ..formats.ecelerity import dumps_ecelerity, ecelerity_export_losses

        out.write(dumps_ecelerity(config))
        for loss in ecelerity_export_losses(config):
            warn(str(loss))
    else:
        from ..formats.postfix import (
            EntryKind,
            PostfixWarning,
            postfix_entries,
            render_pcre_table,
            render_policy_table,
            render_warnings,
        )

        names = [args.binding] if args.binding else list(Resolver(config).bindings)
        pcre_parts: list[str] = []
        warnings: list[PostfixWarning] = []
        for name in names:
            entries, found = postfix_entries(config, name)
            if len(names) > 1:
                out.write(f"# ---- binding {name!r}: one table per Postfix transport\n")
            out.write(render_policy_table(entries))
            pcre = render_pcre_table(entries)
            if pcre:
                pcre_parts.append((f"# ---- binding {name!r}\n" if len(names) > 1 else "")
                                  + pcre)
            warnings += found
            if not args.pcre_output and any(e.kind is EntryKind.REGEX for e in entries):
                sys.stderr.write(f"tlspolicy: warning: binding {name!r} has regex domain "
                                 "entries that a hash table cannot hold; pass --pcre-output "
                                 "FILE to write them as a pcre table\n")
        if args.pcre_output:
            with open(args.pcre_output, "w", encoding="utf-8") as handle:
                handle.write("".join(pcre_parts))
        text = render_warnings(warnings)
        if text:
            sys.stderr.write("what Postfix cannot express:\n" + text)
    return 0


def register(sub: Any) -> None:
    """Add ``convert`` to the command line's subparsers."""
    convert = sub.add_parser(
        "convert", help="convert configuration files to TOML, ecelerity.conf, a Postfix "
                        "smtp_tls_policy_maps table or KumoMTA shaping TOML")
    add_config_files(convert)
    convert.add_argument("--to", required=True,
                         choices=("toml", "ecelerity", "postfix", "kumomta"),
                         help="output format: TOML, Momentum ecelerity.conf, a Postfix "
                              "smtp_tls_policy_maps table, or KumoMTA traffic shaping TOML")
    convert.add_argument("--binding", "-b",
                         help="postfix: the binding (Postfix transport) to write; default: "
                              "every binding, one table each")
    convert.add_argument("--pcre-output", metavar="FILE",
                         help="postfix: write regex domain entries to FILE as a pcre table")
    convert.set_defaults(func=_cmd_convert)
