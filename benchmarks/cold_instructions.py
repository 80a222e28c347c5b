"""Instructions per cold resolve, counted by valgrind's callgrind.

Instruction counts barely move with the machine's load, so they compare two codes
where timings on a shared machine cannot.  This script runs itself under
``valgrind --tool=callgrind``, counting only inside ``starmap``'s iteration (the
loop ``deque(starmap(resolver.resolve, keys), maxlen=0)``), and prints the count
divided by the number of keys:

    python benchmarks/cold_instructions.py            # random bindings
    python benchmarks/cold_instructions.py --one-binding
    python benchmarks/cold_instructions.py --keys-per-resolver 100
    python benchmarks/cold_instructions.py --first-use

The configuration is the generated one of ``benchmarks/_configs.py`` with 2,000
domain stanzas; the 500 keys are the domains of its first quarter (each has a
stanza at global level, in one group and in one binding), fresh string objects,
each through a random binding (value sets mostly new) or all through ``b0``
(value sets shared), on one resolver or a fresh one every N keys (as ``run.py``'s
scale-cold does with 100).  ``--first-use`` counts twice over 100 fresh resolvers:
each one's first resolve, then each one's second (after an uncounted first), so the
difference is what a resolver pays once, on the first key it is asked about.  The
collector is off and ``PYTHONHASHSEED`` is 0.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import re
import subprocess
import sys
import tempfile
from collections import deque
from itertools import starmap
from pathlib import Path

STANZAS = 2000
KEYS = 500
FRESH = 100


def _child(one_binding: bool, per_resolver: int) -> None:
    """The counted run (under valgrind): build, then resolve every key once."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _configs

    from tlspolicy import Resolver, loads_toml
    from tlspolicy.names import normalise_domain

    config = loads_toml(_configs.scale_config(STANZAS), "generated.toml")
    resolvers = [Resolver(config) for _ in range(-(-KEYS // per_resolver))]
    normalise_domain.cache_clear()
    rng = random.Random(7052)
    keys = [(resolvers[n // per_resolver], _configs.domain(i) + "",
             _configs.binding(0 if one_binding else rng.randrange(_configs.N_BINDINGS)))
            for n, i in enumerate(rng.sample(range(STANZAS // 4), KEYS))]
    gc.collect()
    gc.disable()
    # Only starmap's iteration is counted (--toggle-collect=starmap_next).
    deque(starmap(Resolver.resolve, keys), maxlen=0)


def _first_use_child(second: bool) -> None:
    """The counted run of ``--first-use``: one resolve on each of FRESH new resolvers."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import _configs

    from tlspolicy import Resolver, loads_toml
    from tlspolicy.names import normalise_domain

    config = loads_toml(_configs.scale_config(STANZAS), "generated.toml")
    rng = random.Random(7052)
    keys = []
    for _ in range(FRESH):
        resolver = Resolver(config)
        pair = [(resolver, _configs.domain(i) + "",
                 _configs.binding(rng.randrange(_configs.N_BINDINGS)))
                for i in rng.sample(range(STANZAS // 4), 2)]
        if second:
            resolver.resolve(*pair[0][1:])  # not counted
        keys.append(pair[1] if second else pair[0])
    # A warm-up resolve on a spare resolver, outside the count: the first resolve in
    # the process also quickens the resolver's bytecode, which is no per-resolver cost.
    Resolver(config).resolve("warm.example", _configs.binding(0))
    normalise_domain.cache_clear()
    gc.collect()
    gc.disable()
    deque(starmap(Resolver.resolve, keys), maxlen=0)


def _count(args: list[str]) -> int:
    """Instructions callgrind counts inside starmap's iteration of a child run."""
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                   "--toggle-collect=starmap_next", sys.executable, __file__, "--child",
                   *args]
        subprocess.run(command, env=env, check=True, capture_output=True)
        text = out.read_text()
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        sys.exit("no instruction total in callgrind's output")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-binding", action="store_true",
                        help="every key through binding b0 (value sets shared)")
    parser.add_argument("--keys-per-resolver", type=int, default=KEYS, metavar="N",
                        help=f"a fresh resolver for every N keys (default {KEYS}: one)")
    parser.add_argument("--first-use", action="store_true",
                        help=f"a fresh resolver's first resolve against its second "
                             f"({FRESH} resolvers)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--second", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.first_use:
            _first_use_child(args.second)
        else:
            _child(args.one_binding, args.keys_per_resolver)
        return
    if args.first_use:
        first = _count(["--first-use"]) // FRESH
        second = _count(["--first-use", "--second"]) // FRESH
        print(f"cold-instructions (first use): a fresh resolver's first resolve "
              f"{first:,}, its second {second:,}, difference {first - second:,} "
              f"({FRESH} resolvers, {STANZAS:,} stanzas)")
        return
    flags = ["--one-binding"] if args.one_binding else []
    total = _count([*flags, f"--keys-per-resolver={args.keys_per_resolver}"])
    shape = "one binding" if args.one_binding else "random bindings"
    if args.keys_per_resolver < KEYS:
        shape += f", a fresh resolver every {args.keys_per_resolver} keys"
    print(f"cold-instructions ({shape}): {total // KEYS:,} a key "
          f"({total:,} for {KEYS} keys, {STANZAS:,} stanzas)")


if __name__ == "__main__":
    main()
