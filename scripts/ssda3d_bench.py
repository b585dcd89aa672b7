"""SSDA3D: what ``zoo bench`` does not measure - dynamic voxelisation alone against the number of points, and the
detector's inference on real frames.

    OMP_NUM_THREADS=1 python scripts/ssda3d_bench.py [--points 20000,50000,100000,200000,300000] [--data ../shared/data]

Times :func:`zoo.nn.pillars.voxelize` (the one function a ``zoo.ops`` kernel can replace) on uniform random clouds in
the pillar entry's range at its pillar size (0.2 m) and at the voxel entry's (0.075 x 0.075 x 0.2 m), in process CPU
time (``time.process_time``, one thread: robust on a shared machine); fits time = a + b * points by least squares and
prints one JSON line: per size the median times, the slope b (microseconds per 1,000 points), the intercept and R^2
(1 = linear), and the ratio of the time per point at the largest and the smallest cloud (1 = linear). Then the
detector's inference (``forward`` in eval mode, decode and NMS included) on a batch of two real frames (KITTI 000002,
64-beam, and the nuScenes keyframe, cropped to +-51.2 m) at the demo's CPU size and at the ssda3d-pillar entry's
size: frames/s (wall clock) and the growth of peak RSS (``zoo.profiling.PeakMemory``). (``zoo bench ssda3d-pillar``
without ``--train`` runs the module's example input, two random 2,000-point clouds.) The training step
of the detector is ``zoo bench``:

    zoo bench ssda3d-pillar --train             # paper-size pillar model, the demo's frames (configs/demo/ssda3d.yaml)
    zoo bench ssda3d-pillar --train --model-arg 'net={voxel_size: [0.4,0.4,9.8], pillar_filters: [32,32], \\
        layer_nums: [2,2], layer_strides: [2,2], num_filters: [32,64], upsample_strides: [1,2], \\
        num_upsample_filters: [32,32], head_channels: 32, bn_momentum: 0.1}'
                                                # the demo's CPU size
"""

from __future__ import annotations

import argparse
import json
import statistics
import time


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--points", default="20000,50000,100000,200000,300000")
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--data", default="../shared/data")
    args = p.parse_args()

    import torch

    from zoo.nn.pillars import voxelize
    from zoo.profiling import interleaved

    torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.points.split(",")]
    grids = {
        "pillar 0.2 m": ((0.2, 0.2, 9.8), (-51.2, -51.2, -5.0, 51.2, 51.2, 4.8)),
        "voxel 0.075 m": ((0.075, 0.075, 0.2), (-54.0, -54.0, -5.0, 54.0, 54.0, 4.8)),
    }
    out = {"threads": args.threads, "points": sizes, "voxelize_clock": "process CPU time"}
    g = torch.Generator().manual_seed(0)
    for name, (vox, rng) in grids.items():
        lo, hi = torch.tensor(rng[:3]), torch.tensor(rng[3:])
        times = []
        for n in sizes:
            pts = torch.cat([lo + torch.rand(n, 3, generator=g) * (hi - lo), torch.rand(n, 1, generator=g)], 1)
            cpu = interleaved({"zoo": lambda: voxelize(pts, vox, rng)}, args.repeat, timer=time.process_time)
            times.append(cpu["zoo"])  # the median after one untimed call
        x, y = torch.tensor(sizes, dtype=torch.float64), torch.tensor(times, dtype=torch.float64)
        A = torch.stack([torch.ones_like(x), x], 1)
        a, b = torch.linalg.lstsq(A, y[:, None]).solution.flatten().tolist()
        fit = a + b * x
        r2 = 1 - float(((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum())
        out[name] = {
            "median_ms": [round(t * 1e3, 3) for t in times],
            "slope_us_per_1k_points": round(b * 1e6 * 1e3, 2),
            "intercept_ms": round(a * 1e3, 3),
            "r2": round(r2, 4),
            "time_per_point_ratio_largest_vs_smallest": round((times[-1] / sizes[-1]) / (times[0] / sizes[0]), 3),
        }
    out["inference"] = infer(args)
    print(json.dumps(out))


DEMO = dict(
    net=dict(
        voxel_size=[0.4, 0.4, 9.8],
        pillar_filters=[32, 32],
        layer_nums=[2, 2],
        layer_strides=[2, 2],
        num_filters=[32, 64],
        upsample_strides=[1, 2],
        num_upsample_filters=[32, 32],
        head_channels=32,
    )
)


def infer(args) -> dict:
    from pathlib import Path

    import torch

    import zoo
    from zoo.data_modules.driving import KittiDataModule, NuScenesDataModule, collate_frames
    from zoo.profiling import PeakMemory, time_calls

    data = Path(args.data)
    pcr = [-51.2, -51.2, -5.0, 51.2, 51.2, 4.8]
    info = "n015-2018-07-24-11-22-45+0800.pkl"
    kitti = KittiDataModule(
        root=str(data / "kitti_frames"),
        train_split=["000002"],
        val_split=["000002"],
        z_shift=1.73,
        intensity="max",
        point_cloud_range=pcr,
    )
    nus = NuScenesDataModule(
        root=str(data / "nuscenes_demo"),
        train_split=info,
        val_split=info,
        z_shift=1.8,
        intensity="max",
        point_cloud_range=pcr,
    )
    batch = collate_frames([kitti.frames("val")[0], nus.frames("val")[0]])
    rows = {}
    for name, over in (("demo (CPU) size", DEMO), ("ssda3d-pillar size", {})):
        module = zoo.create("ssda3d-pillar", **over).eval()
        with torch.inference_mode():
            module(batch)
            with PeakMemory() as mem:
                times = time_calls(lambda: module(batch), max(3, args.repeat // 2), warmup=0)
        t = statistics.median(times)
        rows[name] = {
            "frames_per_s": round(2 / t, 3),
            "batch_ms": round(t * 1e3, 1),
            "peak_rss_growth_mb": round(mem.growth_mb, 1),
            "params": sum(p.numel() for p in module.model.parameters()),
            "points": [len(p) for p in batch["points"]],
        }
    return rows


if __name__ == "__main__":
    main()
