"""Finding: configuration and certificate files are read only when safe.

``/dev/zero``, a FIFO, a directory, a huge file or an include fan-out must
give a typed, located error at once (never a hang, a ``MemoryError`` or the
file's content echoed back).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from bounded import within

from tlspolicy import TlsPolicyError, load_config
from tlspolicy.errors import (
    FileReadError,
    FileTooLargeError,
    NotRegularFileError,
    TooManyFilesError,
)
from tlspolicy.formats.ecelerity import EcelerityIncludeError, read_ecelerity
from tlspolicy.formats.files import MAX_FILE_BYTES, MAX_FILES_PER_LOAD, ReadBudget


def _error(fn: object, *args: object) -> TlsPolicyError:
    def run() -> TlsPolicyError:
        try:
            fn(*args)  # type: ignore[operator]
        except TlsPolicyError as exc:
            return exc
        raise AssertionError("no error raised")
    result: TlsPolicyError = within(run)
    return result


@pytest.fixture()
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "policy-fifo"
    os.mkfifo(path)
    return path


def _link(tmp_path: Path, target: Path | str, name: str) -> Path:
    link = tmp_path / name
    link.symlink_to(target)
    return link


@pytest.mark.parametrize("suffix", [".toml", ".conf"])
def test_config_that_is_dev_zero(tmp_path: Path, suffix: str) -> None:
    error = _error(load_config, _link(tmp_path, "/dev/zero", f"zero{suffix}"))
    assert isinstance(error, NotRegularFileError)
    assert "character device" in str(error) and f"zero{suffix}" in str(error)


@pytest.mark.parametrize("suffix", [".toml", ".conf"])
def test_config_that_is_a_fifo(tmp_path: Path, fifo: Path, suffix: str) -> None:
    error = _error(load_config, _link(tmp_path, fifo, f"pipe{suffix}"))
    assert isinstance(error, NotRegularFileError) and "FIFO" in str(error)


def test_config_that_is_a_directory(tmp_path: Path) -> None:
    directory = tmp_path / "conf.d.toml"
    directory.mkdir()
    error = _error(load_config, directory)
    assert isinstance(error, NotRegularFileError) and "directory" in str(error)


def test_config_over_the_size_cap(tmp_path: Path) -> None:
    big = tmp_path / "big.toml"
    with open(big, "wb") as handle:
        handle.truncate(MAX_FILE_BYTES + 1)  # sparse: costs no disk
    error = _error(load_config, big)
    assert isinstance(error, FileTooLargeError) and error.location.file == str(big)


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir"])
def test_include_of_a_non_regular_file(tmp_path: Path, fifo: Path, target: str) -> None:
    if target == "fifo":
        target = str(fifo)
    elif target == "dir":
        target = str(tmp_path)
    main = tmp_path / "main.conf"
    main.write_text(f'tls = ifavailable\ninclude "{target}"\n')
    error = _error(read_ecelerity, main)
    assert isinstance(error, EcelerityIncludeError)
    assert "not a regular file" in error.message
    assert (error.location.file, error.location.line) == (str(main), 2)


def test_include_fan_out_is_bounded(tmp_path: Path) -> None:
    # Each level includes the next twice: 2^31 reads without a cap.
    depth = 31
    for level in range(depth):
        nxt = f"level{level + 1}.conf"
        (tmp_path / f"level{level}.conf").write_text(f'include "{nxt}"\ninclude "{nxt}"\n')
    (tmp_path / f"level{depth}.conf").write_text("tls = ifavailable\n")
    error = _error(read_ecelerity, tmp_path / "level0.conf")
    assert isinstance(error, TooManyFilesError)
    assert f"at most {MAX_FILES_PER_LOAD} files" in error.message
    assert error.location.line in (1, 2)


def test_fan_out_counts_across_the_files_of_one_load(tmp_path: Path) -> None:
    paths = []
    for i in range(5):
        path = tmp_path / f"layer{i}.toml"
        path.write_text('[global]\ntls = "ifavailable"\n')
        paths.append(path)
    with pytest.raises(TooManyFilesError):
        load_config(*paths, budget=ReadBudget(max_files=3))
    load_config(*paths, budget=ReadBudget(max_files=5))


def test_included_passwd_is_not_echoed(tmp_path: Path) -> None:
    secret = tmp_path / "passwd"
    lines = [f"user{i}:x:{1000 + i}:{1000 + i}:User {i}:/home/user{i}:/bin/sh" for i in range(5)]
    secret.write_text("root:x:0:0:root:/root:/bin/bash\n" + "\n".join(lines) + "\n")
    main = tmp_path / "main.conf"
    main.write_text(f'include "{secret}"\n')
    error = _error(read_ecelerity, main)
    text = str(error)
    assert "root:x:0:0:root:/root" not in text
    assert not any(line in text for line in lines)
    assert len(text) < 400


def test_real_passwd_is_not_echoed(tmp_path: Path) -> None:
    if not os.path.isfile("/etc/passwd"):
        pytest.skip("no /etc/passwd on this system")
    main = tmp_path / "main.conf"
    main.write_text('include "/etc/passwd"\n')
    text = str(_error(read_ecelerity, main))
    first = Path("/etc/passwd").read_text().splitlines()[0]
    assert first not in text and len(text) < 400


def test_binary_file_is_not_quoted(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b'[global]\ntls = "no"\n# secret \xff\xfe token-XYZZY\n')
    error = _error(load_config, path)
    assert isinstance(error, FileReadError)
    assert "XYZZY" not in str(error) and error.location.line == 3


def test_huge_value_is_quoted_as_an_excerpt(tmp_path: Path) -> None:
    path = tmp_path / "value.toml"
    path.write_text(f'[global]\ntls = "{"x" * 100_000}"\n')
    text = str(_error(load_config, path))
    assert len(text) < 400 and "100000 characters" in text


def _context(ca: str | None, cert: str | None = None, key: str | None = None) -> object:
    from tlspolicy.adapters.sslcontext import build_context
    from tlspolicy.decision import TlsParameters
    from tlspolicy.options import TlsEngine, TlsVersion

    return build_context(TlsParameters(
        ca_file=ca, certificate_file=cert, key_file=key, ciphers=None,
        tls13_ciphersuites=None, protocols=frozenset(TlsVersion), sni="mx.example",
        engine=TlsEngine.OPENSSL))


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "dir"])
def test_tls_ca_that_is_not_a_regular_file(tmp_path: Path, fifo: Path, kind: str) -> None:
    from tlspolicy.adapters.sslcontext import TlsSetupError

    target = {"fifo": str(fifo), "/dev/zero": "/dev/zero", "dir": str(tmp_path)}[kind]
    error = _error(_context, target)
    assert isinstance(error, TlsSetupError) and "not a regular file" in str(error)


@pytest.mark.parametrize("which", ["cert", "key"])
def test_client_certificate_fifo(tmp_path: Path, fifo: Path, which: str) -> None:
    pytest.importorskip("cryptography")
    from certs_support import TestCA
    from tlspolicy.adapters.sslcontext import TlsSetupError

    leaf = TestCA(tmp_path / "ca").issue(["client.example"])
    cert, key = (str(fifo), str(leaf.key_path)) if which == "cert" else (
        str(leaf.cert_path), str(fifo))
    error = _error(_context, None, cert, key)
    assert isinstance(error, TlsSetupError) and "not a regular file" in str(error)


def test_expectation_file_fifo(fifo: Path) -> None:
    from tlspolicy.policytests.reader import load_expectations

    error = _error(load_expectations, fifo)
    assert "not a regular file" in str(error)


def test_expectation_key_of_thousands_of_parts() -> None:
    # The standard library's TOML parser took about a minute and gigabytes over this
    # 100 KB line; expectation files are parsed as configurations are now.
    from tlspolicy.policytests import loads_expectations

    text = '[[case]]\ndomain = "a.example"\n' + ".".join(["a"] * 50_000) + " = 1\n"
    error = _error(loads_expectations, text, "exp.toml")
    assert "nested too deeply" in str(error) and error.location.file == "exp.toml"


def test_expectation_keys_under_a_header_of_many_parts() -> None:
    # Each key under a header is located by its path's prefixes: past the first parts
    # they are not, so this file's keys cost no square of the header's parts.
    from tlspolicy.policytests import loads_expectations

    header = "[" + ".".join(["case"] + ["b"] * 900) + "]\n"
    text = '[[case]]\ndomain = "a.example"\ntls = "no"\n' + header + "".join(
        f"c{i} = 1\n" for i in range(5000))
    error = _error(loads_expectations, text, "exp.toml")
    assert error.location.file == "exp.toml"


def test_expectation_file_of_many_cases_is_read_in_linear_time() -> None:
    # Each case's keys were found by scanning every key of the file, once per case:
    # 32,000 one-line cases took over a minute.  The keys are indexed by case once.
    from tlspolicy.policytests.reader import _Lines

    cases = 20_000
    text = "".join(f'[[case]]\nname = "c{i}"\ndomain = "a.example"\ntls = "no"\n'
                   for i in range(cases))

    def every_case_keys() -> list[dict[str, int]]:
        lines = _Lines(text)
        return [lines.case_keys(i) for i in range(cases)]

    found = within(every_case_keys)
    assert len(found) == cases
    assert found[0] == {"name": 2, "domain": 3, "tls": 4}
    assert found[-1] == {"name": 4 * cases - 2, "domain": 4 * cases - 1, "tls": 4 * cases}


def test_expectation_file_of_many_cases_loads() -> None:
    from tlspolicy.policytests import loads_expectations

    text = "".join(f'[[case]]\nname = "c{i}"\ndomain = "a.example"\ntls = "no"\n'
                   for i in range(5_000))
    loaded = within(loads_expectations, text, "exp.toml")
    assert len(loaded.cases) == 5_000 and loaded.cases[-1].line == 4 * 4_999 + 1


@pytest.mark.parametrize("unit", ['"', "'", "\\", '"\\', '\\"', '""', "''", '"""', "'''",
                                  "[", "]", "{", "#", 'a = "', "a = '''", 'a = """\\',
                                  '"""\n', "'''\n", "[\n", '"\\"\n'])
def test_toml_line_scanner_on_hostile_text(unit: str) -> None:
    # The scanner behind the line locators keeps TOML's string and bracket state
    # across the text: whatever the text, valid or not, it ends at once.
    from tlspolicy.formats.toml_lines import code_lines

    text = unit * (1_000_000 // len(unit))

    def count() -> int:
        return sum(1 for _ in code_lines(text))

    assert within(count) >= 1
