"""RSFD caption generation speed: greedy vs beam search (beam 5, the release's rule) with and without the key/value
cache, interleaved in one run on the paper-size network (``zoo.models.rsfd.sizes``) with random weights and
random features. Prints one JSON line: median seconds per call of each decoder, the ratios to cached greedy, the
generated lengths, and whether cached and recomputed beam search gave the same captions. The measurement is
:func:`zoo.bench.peers.rsfd_beam_times` (also ``zoo bench --op rsfd-beam``, there in one thread); this script runs
it in the thread count the environment sets.

    OMP_NUM_THREADS=2 python scripts/bench_rsfd_beam.py --batch-size 64 --size msrvtt --repeats 3
"""

from __future__ import annotations

import argparse
import json

from zoo.models.rsfd.sizes import DEFAULT, SIZES


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--size", default=DEFAULT, choices=sorted(SIZES))
    p.add_argument("--beam-size", type=int, default=5)
    p.add_argument("--steps", type=int, default=8, help="feature steps per modality")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if __import__("torch").cuda.is_available() else "cpu")
    p.add_argument("--no-uncached", action="store_true", help="skip the (slow) recomputing beam search")
    ns = p.parse_args(argv)

    from zoo.bench.peers import rsfd_beam_times

    out = rsfd_beam_times(
        batch=ns.batch_size,
        size=ns.size,
        beam=ns.beam_size,
        steps=ns.steps,
        reps=ns.repeats,
        device=ns.device,
        uncached=not ns.no_uncached,
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
