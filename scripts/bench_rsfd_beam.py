"""RSFD caption generation speed: greedy vs beam search (beam 5, the release's rule) with and without the key/value
cache, interleaved in one run on the paper-size network (``zoo.models.rsfd.sizes``) with random weights and
random features. Prints one JSON line: median seconds per call of each decoder, the ratios to cached greedy, the
generated lengths, and whether cached and recomputed beam search gave the same captions.

    OMP_NUM_THREADS=2 python scripts/bench_rsfd_beam.py --batch-size 64 --size msrvtt --repeats 3
"""

from __future__ import annotations

import argparse
import json
import statistics

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

    import torch

    from zoo.models.rsfd.model import RSFD, beam_search, greedy_decode
    from zoo.profiling import time_calls

    torch.manual_seed(0)
    dev = torch.device(ns.device)
    model = RSFD(**SIZES[ns.size]).to(dev).eval()
    feats = [torch.randn(ns.batch_size, ns.steps, b[0].in_features, device=dev) for b in model.encoder.branches]
    cats = model.decoder.category
    cat = torch.randint(0, cats.num_embeddings, (ns.batch_size,), device=dev) if cats is not None else None
    runs = {
        "greedy": lambda: greedy_decode(model, feats, cat),
        "beam_cached": lambda: beam_search(model, feats, cat, ns.beam_size),
    }
    if not ns.no_uncached:
        runs["beam_uncached"] = lambda: beam_search(model, feats, cat, ns.beam_size, cache=False)
    times = {k: [] for k in runs}
    with torch.inference_mode():
        outs = {k: fn() for k, fn in runs.items()}  # warm-up, and the captions compared below
        for _ in range(ns.repeats):  # interleaved: one call of each per round
            for k, fn in runs.items():
                times[k] += time_calls(fn, 1, warmup=0, device=dev)
    med = {k: statistics.median(v) for k, v in times.items()}
    out = {
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "size": ns.size,
        "batch": ns.batch_size,
        "beam": ns.beam_size,
        "repeats": ns.repeats,
        "median_s": med,
        "ratio_to_greedy": {k: v / med["greedy"] for k, v in med.items()},
        "caption_width": {k: int(o.tokens.shape[1]) for k, o in outs.items()},
    }
    if "beam_uncached" in outs:
        out["cached_equals_uncached"] = bool(torch.equal(outs["beam_cached"].tokens, outs["beam_uncached"].tokens))
        out["speedup_cache"] = med["beam_uncached"] / med["beam_cached"]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
