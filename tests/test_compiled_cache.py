"""The compiled-configuration cache: a hit gives the Config parsing gives, never another.

Every test loads through the cache twice (a miss that writes the entry, then a
hit) and compares with ``load_config`` of the same files.  A changed file, a
corrupt or foreign entry, and a directory others may write are all ignored in
favour of parsing, with a log line.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from strategies import configs
from tlspolicy import Resolver
from tlspolicy.formats.compiled import (
    compiled_from_data,
    compiled_to_data,
    load_config_cached,
)
from tlspolicy.formats.loader import load_config

MAIN = '''compatibility = "4.8"
match_cache_size = 99
[global]
tls = "ifavailable"
tls_protocols = "TLSv1.2:TLSv1.3"
[[domain]]
name = "Partner.Example."
tls = "required"
tls_verify = "host"
[[domain]]
name = "/\\\\.bank\\\\.example$/"
tls = "required"
[[domain]]
name = "192.0.2.1"
tls = "no"
[[domain]]
name = "bücher.de"
tls_ca = "none"
[[domain]]
name = "soon.example"
tls = "required"
expires = 2030-01-01
reason = "migration"
expiry_weakens = true
[[binding_group]]
name = "g1"
tls_verify = "ca"
  [[binding_group.domain]]
  name = "partner.example"
  tls_ciphers = "HIGH"
  [[binding_group.binding]]
  name = "b1"
  tls_ca = "ca.pem"
    [[binding_group.binding.domain]]
    name = "x.example"
    tls = "no"
[[binding]]
name = "b2"
tls = "required"
[[floor]]
name = "partner.example"
tls = "required"
tls_verify = "host"
'''
LAYER = '''[global]
tls_verify = "optional"
[[domain]]
name = "partner.example"
tls_ciphers = "MEDIUM"
'''


def twice(tmp_path: Path, *files: str, format: str | None = None) -> None:
    cache = tmp_path / "cache"
    first, hit1 = load_config_cached(*files, cache_dir=cache, format=format)
    second, hit2 = load_config_cached(*files, cache_dir=cache, format=format)
    parsed = load_config(*files, format=format)
    assert (hit1, hit2) == (False, True)
    assert first == parsed and second == parsed
    assert compiled_to_data(second) == compiled_to_data(parsed)
    # Same decisions and explanations, not only equal models.
    for binding in ("default", "b1", "b2"):
        for domain in ("partner.example", "mx.bank.example", "192.0.2.1", "bücher.de",
                       "x.example", "soon.example", "other.example"):
            a = Resolver(second).resolve(domain, binding)
            b = Resolver(parsed).resolve(domain, binding)
            assert a.to_dict() == b.to_dict()
    assert stat_mode(cache) == 0o700


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_toml_files_layered(tmp_path: Path) -> None:
    (tmp_path / "main.toml").write_text(MAIN)
    (tmp_path / "layer.toml").write_text(LAYER)
    twice(tmp_path, str(tmp_path / "main.toml"), str(tmp_path / "layer.toml"))


def test_ecelerity_with_includes(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "inc.conf").write_text(
        'Domain "partner.example" {\n  TLS = required\n  TLS_Verify = host\n}\n')
    (tmp_path / "main.conf").write_text(
        'TLS = ifavailable\ninclude "conf/inc.conf"\n'
        'Binding_Group "g1" {\n  Binding "b1" {\n    TLS_CA = "ca.pem"\n  }\n}\n'
        'Binding "b2" {\n  Domain "x.example" {\n    TLS = no\n  }\n}\n')
    twice(tmp_path, str(tmp_path / "main.conf"))
    # An included file that changes is seen: the entry is not used.
    (tmp_path / "conf" / "inc.conf").write_text('Domain "partner.example" {\n  TLS = no\n}\n')
    config, hit = load_config_cached(str(tmp_path / "main.conf"), cache_dir=tmp_path / "cache")
    assert not hit
    assert config == load_config(str(tmp_path / "main.conf"))


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_payload_round_trip(config: object) -> None:
    data = json.loads(json.dumps(compiled_to_data(config)))  # type: ignore[arg-type]
    assert compiled_from_data(data) == config


def entry(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "cache").glob("*.json")
    return found


def primed(tmp_path: Path) -> str:
    path = tmp_path / "main.toml"
    path.write_text(MAIN)
    load_config_cached(str(path), cache_dir=tmp_path / "cache")
    return str(path)


def test_changed_file_is_parsed_again(tmp_path: Path) -> None:
    path = primed(tmp_path)
    Path(path).write_text(MAIN.replace('tls = "no"', 'tls = "required"'))
    config, hit = load_config_cached(path, cache_dir=tmp_path / "cache")
    assert not hit and config == load_config(path)
    assert load_config_cached(path, cache_dir=tmp_path / "cache") == (config, True)


def test_corrupt_entry_is_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = primed(tmp_path)
    raw = entry(tmp_path).read_bytes()
    # Same length, one decision flipped: the payload digest no longer matches.
    entry(tmp_path).write_bytes(raw.replace(b'"no"', b'"on"', 1))
    with caplog.at_level(logging.WARNING, "tlspolicy.compiled"):
        config, hit = load_config_cached(path, cache_dir=tmp_path / "cache")
    assert not hit and config == load_config(path)
    assert "corrupt" in caplog.text


@pytest.mark.parametrize("garbage", [b"", b"\n", b"not json\n{}", b'{"format": 1}\n{}',
                                     b"\xff\xfe" * 100])
def test_garbage_entry_is_ignored(tmp_path: Path, garbage: bytes) -> None:
    path = primed(tmp_path)
    entry(tmp_path).write_bytes(garbage)
    config, hit = load_config_cached(path, cache_dir=tmp_path / "cache")
    assert not hit and config == load_config(path)


def test_entry_of_another_version_is_ignored(tmp_path: Path) -> None:
    path = primed(tmp_path)
    header, payload = entry(tmp_path).read_bytes().split(b"\n", 1)
    fields = json.loads(header)
    fields["tlspolicy"] = "0.0.0-other"
    entry(tmp_path).write_bytes(json.dumps(fields).encode() + b"\n" + payload)
    config, hit = load_config_cached(path, cache_dir=tmp_path / "cache")
    assert not hit and config == load_config(path)


def test_directory_others_may_write_is_not_used(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    path = primed(tmp_path)
    os.chmod(tmp_path / "cache", 0o777)
    with caplog.at_level(logging.WARNING, "tlspolicy.compiled"):
        config, hit = load_config_cached(path, cache_dir=tmp_path / "cache")
    assert not hit and config == load_config(path)
    assert "not owned by this user alone" in caplog.text


def test_entry_others_may_write_or_a_symlink_is_not_used(tmp_path: Path) -> None:
    path = primed(tmp_path)
    os.chmod(entry(tmp_path), 0o666)
    config, hit = load_config_cached(path, cache_dir=tmp_path / "cache")
    assert not hit and config == load_config(path)
    # The miss wrote a fresh private entry: move it away and leave a symlink to it.
    where = entry(tmp_path)
    target = tmp_path / "elsewhere.json"
    os.replace(where, target)
    os.symlink(target, where)
    config, hit = load_config_cached(path, cache_dir=tmp_path / "cache")
    assert not hit and config == load_config(path)


def test_a_fifo_in_an_entrys_place_is_not_waited_for(tmp_path: Path) -> None:
    """An entry is opened without waiting: a FIFO in its place (no writer) is no private
    regular file, so the files are parsed, as for any entry not used."""
    path = primed(tmp_path)
    where = entry(tmp_path)
    where.unlink()
    os.mkfifo(where, 0o600)
    result: dict[str, tuple[object, bool]] = {}
    loading = threading.Thread(target=lambda: result.update(
        got=load_config_cached(path, cache_dir=tmp_path / "cache")), daemon=True)
    loading.start()
    loading.join(20)
    if loading.is_alive():
        with open(where, "wb"):
            pass  # a writer at last: the blocked open returns
        loading.join(20)
        pytest.fail("the load waited for a writer of the FIFO in the entry's place")
    config, hit = result["got"]
    assert not hit and config == load_config(path)


def test_failed_load_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[global]\ntls = "sometimes"\n')
    with pytest.raises(Exception, match="sometimes"):
        load_config_cached(str(path), cache_dir=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []


def test_serve_lookup_factory_reads_through_the_cache(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    from tlspolicy.servers.app import lookup_factory

    path = tmp_path / "main.toml"
    path.write_text(MAIN)
    plain = lookup_factory([str(path)], file_checks=False)()
    cached = lookup_factory([str(path)], file_checks=False,
                            compiled_cache=str(tmp_path / "cache"))
    first = cached()
    with caplog.at_level(logging.INFO, "tlspolicy.compiled"):
        second = cached()
    assert "read from the compiled cache" in caplog.text
    for key in ("partner.example", "192.0.2.1", "x.example", "[mx.bank.example]:25"):
        for name in ("default", "b1"):
            assert plain(name, key) == first(name, key) == second(name, key)


def test_stanzas_given_in_full_must_fill_the_blank_names(tmp_path: Path) -> None:
    # A stanza not written as a plain name (a regex, an expiry, a name not in its
    # normalised spelling) is given in full at its index, its name left blank; any other
    # placing is malformed, and refused, never half read.
    path = tmp_path / "main.toml"
    path.write_text('[global]\ntls = "ifavailable"\n[[domain]]\nname = "a.example"\n'
                    'tls = "required"\n[[domain]]\nname = "/x/"\ntls = "no"\n')
    config = load_config(str(path))
    data = json.loads(json.dumps(compiled_to_data(config)))
    assert compiled_from_data(json.loads(json.dumps(data))) == config
    container = data["domains"]
    names = container["names"].split("\n")
    special = container["special"]
    blank = next(iter(special))
    assert names[int(blank)] == ""
    named = str(names.index(next(n for n in names if n)))
    for broken in ({**{k: v for k, v in special.items() if k != blank}, named: special[blank]},
                   {**special, named: special[blank]},
                   {**{k: v for k, v in special.items() if k != blank},
                    "0" + blank: special[blank]}):
        data["domains"]["special"] = broken
        with pytest.raises(ValueError, match="malformed container"):
            compiled_from_data(data)
