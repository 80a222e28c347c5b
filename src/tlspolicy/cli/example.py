"""``tlspolicy example DIR``: the bundled example as files, ready to check, test and serve."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ..formats.bundled import example_files
from ._common import UsageError

__all__ = ["register"]


def _cmd_example(args: argparse.Namespace) -> int:
    directory = os.path.abspath(args.directory)
    try:
        directory.encode("utf-8")
    except UnicodeEncodeError:
        # The name stands in the TOML files written, and TOML text is Unicode.
        raise UsageError(f"{directory!r}: the directory's name is not UTF-8, so the "
                         "files written could not name their certificates") from None
    files = example_files(directory)
    if not args.force:
        present = [name for name in files if os.path.lexists(os.path.join(directory, name))]
        if present:
            raise UsageError(f"{directory} already holds {', '.join(present)}: nothing "
                             "written (--force replaces them)")
    for name, content in files.items():
        path = os.path.join(directory, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Private keys readable by their owner only, as a real deployment keeps them.
        mode = 0o600 if name.endswith(".key") else 0o644
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.chmod(path, mode)
    config = os.path.join(directory, "example.toml")
    sys.stdout.write(
        f"wrote the bundled example to {directory} ({len(files)} files); try:\n"
        f"  tlspolicy check {config}\n"
        f"  tlspolicy test {os.path.join(directory, 'example-expectations.toml')}\n"
        f"  tlspolicy resolve payroll-partner.example {config} --binding tx-us-1\n"
        f"  tlspolicy serve socketmap {config} --listen 127.0.0.1:10027 "
        "--postfix-version 3.7.11 --no-postfix-checks\n"
        "    (a demo beside no Postfix; then: postmap -q payroll-partner.example "
        "socketmap:inet:127.0.0.1:10027:tx-us-1)\n")
    return 0


def register(sub: Any) -> None:
    """Add ``example`` to the command line."""
    parser = sub.add_parser(
        "example", help="write the bundled example configuration, its policy tests and the "
        "certificate files it names into a directory",
        description="Write the bundled example (example.toml, naming its certificate and "
        "key files under DIR, those files, made for the example and never to be used for "
        "mail, and example-expectations.toml) into DIR, so that check, test, resolve and "
        "serve run on it as on a real configuration.")
    parser.add_argument("directory", metavar="DIR", help="where to write the files "
                        "(created if missing)")
    parser.add_argument("--force", action="store_true", help="replace files already there")
    parser.set_defaults(func=_cmd_example)
