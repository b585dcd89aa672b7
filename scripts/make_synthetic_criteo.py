#!/usr/bin/env python
"""Write an N-row synthetic file in Criteo's Kaggle ``train.txt`` format (tab-separated, no header, label I1..I13
C1..C26) whose labels come from planted 2nd- and 3rd-order feature crosses (see
``zoo.data_modules.ctr.write_synthetic_criteo``).

    python scripts/make_synthetic_criteo.py data/synthetic/train.txt --rows 1000000 --seed 0
"""

from __future__ import annotations

import argparse
import time

from zoo.data_modules.ctr import SYNTHETIC_TERMS, write_synthetic_criteo


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", help="output file (e.g. data/synthetic/train.txt)")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    path = write_synthetic_criteo(args.path, args.rows, args.seed)
    dt = time.perf_counter() - t0
    print(f"wrote {args.rows:,} rows to {path} ({path.stat().st_size / 2**20:.1f} MiB) in {dt:.1f} s")
    print("label model:\n" + SYNTHETIC_TERMS)


if __name__ == "__main__":
    main()
