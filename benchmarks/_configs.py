"""Configurations the benchmarks compile, generated as TOML text.

Every generated configuration has the same shape, whatever its size: a
``[global]`` scope, 10 binding groups holding 100 bindings each (1,000
bindings), and ``n`` domain stanzas spread over the three containers a
domain may sit in: half at global level, a quarter inside the groups and a
quarter inside the bindings.  Domain ``d0.example`` sits in all three
containers of binding ``b0`` (group ``g0``), and every scope sets an option,
so resolving it walks all six levels of the scope chain.
"""

from __future__ import annotations

from typing import Final

N_BINDINGS: Final = 1000
N_GROUPS: Final = 10


def domain(i: int) -> str:
    """The name of the ``i``-th generated domain."""
    return f"d{i}.example"


def binding(j: int) -> str:
    """The name of the ``j``-th generated binding."""
    return f"b{j}"


def shape(n: int) -> tuple[int, int, int]:
    """How many domain stanzas sit at global level, in groups and in bindings."""
    in_groups = n // 4
    in_bindings = n // 4
    return n - in_groups - in_bindings, in_groups, in_bindings


def scale_config(n: int) -> str:
    """A configuration with ``n`` domain stanzas and 1,000 bindings."""
    at_global, in_groups, in_bindings = shape(n)
    out = ['[global]\ntls = "ifavailable"\n']
    out.extend(f'[[domain]]\nname = "{domain(i)}"\ntls = "required"\ntls_verify = "ca"\n'
               for i in range(at_global))
    per_group: list[list[int]] = [[] for _ in range(N_GROUPS)]
    for i in range(in_groups):
        per_group[i % N_GROUPS].append(i)
    per_binding: list[list[int]] = [[] for _ in range(N_BINDINGS)]
    for i in range(in_bindings):
        per_binding[i % N_BINDINGS].append(i)
    members = N_BINDINGS // N_GROUPS
    for g in range(N_GROUPS):
        out.append(f'[[binding_group]]\nname = "g{g}"\ntls_verify = "optional"\n')
        out.extend(f'[[binding_group.domain]]\nname = "{domain(i)}"\ntls_ciphers = "HIGH"\n'
                   for i in per_group[g])
        for j in range(g * members, (g + 1) * members):
            out.append(f'[[binding_group.binding]]\nname = "{binding(j)}"\n'
                       f'tls_ca = "ca-{binding(j)}.pem"\n')
            out.extend(f'[[binding_group.binding.domain]]\nname = "{domain(i)}"\ntls = "no"\n'
                       for i in per_binding[j])
    return "".join(out)


def regex_config(n: int, *, regex: bool, match_cache_size: int | None = None) -> str:
    """``n`` global domain stanzas: ``/\\.r<i>\\.example$/`` patterns, or exact ``r<i>.example``."""
    out = []
    if match_cache_size is not None:
        out.append(f"match_cache_size = {match_cache_size}\n")
    out.append('[global]\ntls = "ifavailable"\n')
    for i in range(n):
        name = f"/\\\\.r{i}\\\\.example$/" if regex else f"r{i}.example"
        out.append(f'[[domain]]\nname = "{name}"\ntls = "required"\n')
    return "".join(out)
