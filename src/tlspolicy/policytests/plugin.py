"""pytest plugin: collect tlspolicy expectation files as test items.

Opt-in, so installing tlspolicy changes nothing in other projects' test runs:
a file is collected only when it matches a glob of the ini option
``tlspolicy_expectations`` (relative to the rootdir, e.g.
``policy/*.tlspolicy.toml``) or the default name pattern
``*.tlspolicy-test.toml``.  Each ``[[case]]`` becomes one test item whose
failure report is the same as ``tlspolicy test`` prints.

The configuration a file runs against: the ini option ``tlspolicy_config``
(files relative to the rootdir, layered in order) when set, else the
expectation file's own ``config`` key, else the bundled example.

Registered through the ``pytest11`` entry point; without it, enable with
``-p tlspolicy.policytests.plugin``.
"""

from __future__ import annotations

import datetime
import fnmatch
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..errors import ConfigError, ConfigErrors
from ..formats.bundled import example_config
from ..formats.loader import load_config
from ..resolver import Resolver
from .expectations import DEFAULT_PATTERN, Case, ExpectationFile
from .reader import load_expectations
from .runner import CaseResult, config_errors, format_failure, run_case

__all__ = [
    "CaseFailed",
    "ExpectationCase",
    "ExpectationModule",
    "pytest_addoption",
    "pytest_collect_file",
]

_RESOLVERS = pytest.StashKey[dict[tuple[str, ...], Any]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ini options ``tlspolicy_expectations`` and ``tlspolicy_config``."""
    parser.addini("tlspolicy_expectations", type="args", default=[],
                  help="tlspolicy: glob patterns (relative to the rootdir) of expectation "
                       f"files to collect, besides files named {DEFAULT_PATTERN}")
    parser.addini("tlspolicy_config", type="args", default=[],
                  help="tlspolicy: configuration files (relative to the rootdir) the "
                       "expectation files run against, layered in order")


def _matches(file_path: Path, config: pytest.Config) -> bool:
    if fnmatch.fnmatch(file_path.name, DEFAULT_PATTERN):
        return True
    patterns: list[str] = config.getini("tlspolicy_expectations")
    if not patterns:
        return False
    try:
        relative = file_path.relative_to(config.rootpath).as_posix()
    except ValueError:
        relative = None
    for pattern in patterns:
        if relative is not None and fnmatch.fnmatch(relative, pattern):
            return True
        if fnmatch.fnmatch(file_path.as_posix(), pattern):
            return True
    return False


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect ``file_path`` as an expectation file when it matches (see the module docs)."""
    if file_path.suffix != ".toml" or not _matches(file_path, parent.config):
        return None
    module: ExpectationModule = ExpectationModule.from_parent(parent, path=file_path)
    return module


def _resolver(config: pytest.Config, paths: tuple[str, ...]) -> Resolver:
    # One compiled configuration per distinct file list, shared by every item.
    cache = config.stash.setdefault(_RESOLVERS, {})
    if paths not in cache:
        try:
            # Expiring stanzas are judged at the time of the test run, as the CLI does.
            cache[paths] = Resolver(load_config(*paths) if paths else example_config(),
                                    at=datetime.datetime.now(datetime.UTC))
        except ConfigError as exc:
            cache[paths] = exc
    found = cache[paths]
    if isinstance(found, ConfigError):
        raise found
    assert isinstance(found, Resolver)
    return found


class ExpectationModule(pytest.File):
    """One expectation file; its cases are the items."""

    def collect(self) -> Iterator[ExpectationCase]:
        """Read the file (errors become a collection error naming file, line and key)."""
        try:
            expectations = load_expectations(str(self.path))
        except ConfigErrors as many:
            raise self.CollectError("\n".join(str(e) for e in many.errors)) from None
        except ConfigError as one:
            raise self.CollectError(str(one)) from None
        ini: list[str] = self.config.getini("tlspolicy_config")
        if ini:
            root = self.config.rootpath
            paths = tuple(os.path.normpath(os.path.join(root, p)) for p in ini)
        else:
            paths = expectations.config
        for case in expectations.cases:
            yield ExpectationCase.from_parent(self, name=case.name, case=case,
                                              config_paths=paths, expectations=expectations,
                                              explicit=bool(ini))


class CaseFailed(Exception):
    """Raised by an item whose case did not hold; carries the result for the report."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.case.name)
        self.result = result


class ExpectationCase(pytest.Item):
    """One ``[[case]]`` of an expectation file."""

    def __init__(self, *, case: Case, config_paths: tuple[str, ...],
                 expectations: ExpectationFile | None = None, explicit: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.config_paths = config_paths
        self.expectations = expectations
        self.explicit = explicit

    def runtest(self) -> None:
        """Resolve the case against its configuration and compare."""
        try:
            resolver = _resolver(self.config, self.config_paths)
        except ConfigError as exc:
            # Said at the expectation file's 'config' key when that named it.
            message = (str(exc) if self.expectations is None else "\n".join(
                config_errors(self.expectations, exc, ("ini",) if self.explicit else None)))
            raise CaseFailed(CaseResult(self.case, error=f"configuration: {message}")) from None
        result = run_case(resolver, self.case)
        if not result.passed:
            raise CaseFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        """The same report ``tlspolicy test`` prints, without a Python traceback."""
        if isinstance(excinfo.value, CaseFailed):
            described = ", ".join(self.config_paths) or "the bundled example configuration"
            return f"{format_failure(excinfo.value.result)}\n  configuration: {described}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        """File, 0-based line of the ``[[case]]`` header, and the case label."""
        line = self.case.line - 1 if self.case.line is not None else None
        return self.path, line, self.case.label
