"""Instructions per cold resolve, counted by valgrind's callgrind.

Instruction counts barely move with the machine's load, so they compare two codes
where timings on a shared machine cannot.  This script runs itself under
``valgrind --tool=callgrind``, counting only inside ``starmap``'s iteration (the
loop ``deque(starmap(resolver.resolve, keys), maxlen=0)``), and prints the count
divided by the number of keys:

    python benchmarks/cold_instructions.py            # random bindings
    python benchmarks/cold_instructions.py --one-binding
    python benchmarks/cold_instructions.py --keys-per-resolver 100

The configuration is the generated one of ``benchmarks/_configs.py`` with 2,000
domain stanzas; the 500 keys are the domains of its first quarter (each has a
stanza at global level, in one group and in one binding), fresh string objects,
each through a random binding (value sets mostly new) or all through ``b0``
(value sets shared), on one resolver or a fresh one every N keys (as ``run.py``'s
scale-cold does with 100).  The collector is off and ``PYTHONHASHSEED`` is 0.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one-binding", action="store_true",
                        help="every key through binding b0 (value sets shared)")
    parser.add_argument("--keys-per-resolver", type=int, default=KEYS, metavar="N",
                        help=f"a fresh resolver for every N keys (default {KEYS}: one)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.one_binding, args.keys_per_resolver)
        return
    env = dict(os.environ, PYTHONHASHSEED="0")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                   "--toggle-collect=starmap_next", sys.executable, __file__, "--child"]
        if args.one_binding:
            command.append("--one-binding")
        command.append(f"--keys-per-resolver={args.keys_per_resolver}")
        subprocess.run(command, env=env, check=True, capture_output=True)
        text = out.read_text()
    found = re.search(r"^(?:summary|totals): (\d+)", text, re.MULTILINE)
    if found is None:
        sys.exit("no instruction total in callgrind's output")
    total = int(found.group(1))
    shape = "one binding" if args.one_binding else "random bindings"
    if args.keys_per_resolver < KEYS:
        shape += f", a fresh resolver every {args.keys_per_resolver} keys"
    print(f"cold-instructions ({shape}): {total // KEYS:,} a key "
          f"({total:,} for {KEYS} keys, {STANZAS:,} stanzas)")


if __name__ == "__main__":
    main()
