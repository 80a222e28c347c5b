"""``tlspolicy diff`` at scale: the fast diff against the exhaustive one, same run.

A configuration of 20,000 domain stanzas and 100 bindings (10 groups of 10),
built with the ``_configs`` helpers (half the stanzas at global level, a
quarter in the groups, a quarter in the bindings), against a copy with one
global stanza changed (``tls = "required"`` to ``"no"``: a downgrade through
every binding).  Each diff runs in its own process so that its peak memory is
its own: the figure is the peak resident size of that process minus its size
once both configurations are loaded, and the wall time of
``diff_configs`` alone.  Run ``python benchmarks/diff_scale.py`` (the
exhaustive side takes minutes) or ``--quick`` for 500 stanzas.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Final

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _configs

N_BINDINGS: Final = 100
N_GROUPS: Final = 10


def diff_config(n: int) -> str:
    """``n`` domain stanzas and 100 bindings, in the ``_configs`` layout."""
    at_global, in_groups, in_bindings = _configs.shape(n)
    out = ['[global]\ntls = "ifavailable"\n']
    out.extend(f'[[domain]]\nname = "{_configs.domain(i)}"\ntls = "required"\n'
               f'tls_verify = "ca"\n' for i in range(at_global))
    members = N_BINDINGS // N_GROUPS
    for g in range(N_GROUPS):
        out.append(f'[[binding_group]]\nname = "g{g}"\ntls_verify = "optional"\n')
        out.extend(f'[[binding_group.domain]]\nname = "{_configs.domain(at_global + i)}"\n'
                   'tls_ciphers = "HIGH"\n' for i in range(g, in_groups, N_GROUPS))
        for j in range(g * members, (g + 1) * members):
            out.append(f'[[binding_group.binding]]\nname = "{_configs.binding(j)}"\n'
                       f'tls_ca = "ca-{_configs.binding(j)}.pem"\n')
            out.extend(
                f'[[binding_group.binding.domain]]\n'
                f'name = "{_configs.domain(at_global + in_groups + i)}"\ntls = "no"\n'
                for i in range(j, in_bindings, N_BINDINGS))
    return "".join(out)


def one_stanza_change(text: str) -> str:
    """The same file with the first global stanza weakened."""
    old = f'name = "{_configs.domain(0)}"\ntls = "required"'
    assert old in text
    return text.replace(old, f'name = "{_configs.domain(0)}"\ntls = "no"', 1)


def _child(n: int, exhaustive: bool) -> None:
    from tlspolicy.diff import ChangeClass, diff_configs
    from tlspolicy.formats.toml import loads_toml

    text = diff_config(n)
    old, new = loads_toml(text), loads_toml(one_stanza_change(text))
    loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    result = diff_configs(old, new, exhaustive=exhaustive)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    json.dump({"seconds": seconds, "peak_kib": peak, "loaded_kib": loaded,
               "probes": len(result.probes), "lines": text.count("\n"),
               "changes": len(result.changes),
               "downgrades": result.count(ChangeClass.DOWNGRADE),
               "digest": hashlib.sha256(repr([c.to_dict() for c in result.changes])
                                        .encode()).hexdigest()},
              sys.stdout)


def _run(n: int, exhaustive: bool) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, "--child", str(n)]
                          + (["--exhaustive"] if exhaustive else []),
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="500 stanzas")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--exhaustive", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        _child(args.child, args.exhaustive)
        return 0
    n = 500 if args.quick else 20_000
    fast = _run(n, False)
    slow = _run(n, True)
    same = (fast["changes"], fast["digest"]) == (slow["changes"], slow["digest"])
    print(f"configuration: {n:,} domain stanzas, {N_BINDINGS} bindings, "
          f"{fast['lines']:,} lines; {fast['probes']:,} probes; one global stanza changed")
    for name, r in (("fast", fast), ("exhaustive", slow)):
        grew = (r["peak_kib"] - r["loaded_kib"]) / 1024
        print(f"diff-{name}: {r['seconds']:.2f} s, peak +{grew:.1f} MiB "
              f"(process peak {r['peak_kib'] / 1024:.1f} MiB), {r['changes']:,} changes")
    print(f"diff-ratio: exhaustive / fast time {slow['seconds'] / fast['seconds']:.1f}x; "
          f"same changes: {'yes' if same else 'NO'}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
