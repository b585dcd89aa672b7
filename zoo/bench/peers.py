"""``zoo bench --op voxelize|iou|nms|emo-train|create|peers|rsfd-beam``: zoo's 3D / detection hot paths and whole
models timed against their peers, and RSFD's beam search against its greedy decoding, as ratios. ``peers`` runs the
speed table: voxelize, iou, nms, lwsis-predict, and the whole-model rows ``emo-train`` and ``create``
(:mod:`zoo.bench.model_peers`).

Each row times one piece of zoo and its peer on the same inputs, interleaved (zoo, peer, zoo, peer, ...) in one
thread (``torch.set_num_threads(1)``), and reports the medians and ``ratio = zoo / peer`` (below 1: zoo is faster).
Interleaving puts both under the same machine load; on a shared machine repeat and compare ratios, not times.

- ``voxelize``: :func:`zoo.nn.pillars.voxelize` (dynamic, keeps every point) vs spconv's ``PointToVoxel`` with the
  caps its users set (pillars 0.2 m: 32 points per pillar, 40,000 pillars, OpenPCDet PointPillars' test setting;
  voxels 0.075 m: 10 points per voxel, 160,000 voxels, OpenPCDet CenterPoint-voxel nuScenes' test setting) on the
  real KITTI frame 000000, the three KITTI frames as one cloud, the nuScenes keyframe (``ZOO_SHARED_DATA`` or
  ``../shared/data``; skipped with a note when absent) and a uniform 300k cloud; the note gives the share of the
  in-range points spconv kept. A ``linearity`` row fits zoo's time on uniform clouds of 20k-400k points:
  the time per point at 400k over that at 20k (1 = linear) and the slope.
- ``iou``: :func:`zoo.nn.boxes3d.bev_iou` N x N vs shapely 2 (``STRtree.query(predicate="intersects")`` +
  vectorised ``intersection`` areas) at 100-4,000 boxes.
- ``nms``: :func:`zoo.nn.boxes3d.rotated_nms` vs the faster of two shapely greedy NMS: row-vectorised (each kept
  box against all lower-scored ones) and STRtree pairs + the same greedy pass, at 100-4,000 boxes.

The boxes are a detector's output on a 80 m x 80 m scene: one object per 10 boxes (car-sized, any heading), each
box a jittered copy of its object (centre sd 0.5 m, size sd 5 %, heading sd 0.1 rad), uniform scores.

- ``rsfd-beam`` (not part of ``peers``): RSFD's caption decoding (:mod:`zoo.models.rsfd.model`) on the paper-size
  network (MSR-VTT size, random weights, 8 random feature steps per modality, batch :data:`RSFD_BEAM_BATCH`): beam
  search (beam 5, the release's rule) with the key/value cache, and without it, each against cached greedy decoding;
  the note says whether both beam searches gave the same captions, and the caption width (random weights rarely say
  ``<eos>``, so every decoder runs to ``max_len``). Default 3 rounds (``--steps``); the uncached search is the slow
  one. ``scripts/bench_rsfd_beam.py`` prints the same measurement (:func:`rsfd_beam_times`) as JSON.
- ``lwsis-predict``: LWSIS's full prediction (masks included) and its network alone against
  torchvision's FCOS R-50 full prediction at 384x640 (:mod:`zoo.bench.lwsis_predict`); default 3 rounds.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from zoo.profiling import interleaved, synchronize, threads
from zoo.profiling import peer_row as _row

__all__ = [
    "PEER_OPS",
    "bench_peer_ops",
    "print_peer_rows",
    "rsfd_beam_times",
    "scene_boxes",
    "real_clouds",
    "uniform_cloud",
]

PEER_OPS = ("voxelize", "iou", "nms", "rsfd-beam", "emo-train", "create", "lwsis-predict")

ALL_PEERS = ("voxelize", "iou", "nms", "lwsis-predict", "emo-train", "create")  # what ``peers`` runs: the speed table

RSFD_BEAM_BATCH = 64

RSFD_BEAM_SIZE = "msrvtt"  # a name of zoo.models.rsfd.sizes.SIZES, or a dict of RSFD's arguments

BOX_SIZES = (100, 200, 500, 1000, 4000)

UNIFORM_POINTS = 300_000

LINEARITY_POINTS = (20_000, 50_000, 100_000, 200_000, 400_000)

PILLAR_GRID = ((0.2, 0.2, 9.8), (-51.2, -51.2, -5.0, 51.2, 51.2, 4.8), 32, 40000)  # voxel, range, spconv caps

VOXEL_GRID = ((0.075, 0.075, 0.2), (-54.0, -54.0, -5.0, 54.0, 54.0, 4.8), 10, 160000)


# ================================================================================================ the inputs
def scene_boxes(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` detector-like boxes [n, 7] (float32) and scores [n] (see the module docstring)."""
    g = torch.Generator().manual_seed(seed)
    m = max(1, n // 10)
    obj = torch.cat(
        [
            torch.rand(m, 2, generator=g) * 80 - 40,
            torch.full((m, 1), -1.0),
            torch.tensor([4.2, 1.8, 1.6]) * (1 + 0.1 * torch.randn(m, 3, generator=g)),
            torch.rand(m, 1, generator=g) * 2 * torch.pi - torch.pi,
        ],
        1,
    )
    pick = torch.randint(0, m, (n,), generator=g)
    noise = torch.cat(
        [
            0.5 * torch.randn(n, 3, generator=g),
            0.05 * torch.randn(n, 3, generator=g),
            0.1 * torch.randn(n, 1, generator=g),
        ],
        1,
    )
    boxes = obj[pick]
    boxes = torch.cat(
        [boxes[:, :3] + noise[:, :3], boxes[:, 3:6] * (1 + noise[:, 3:6]), boxes[:, 6:] + noise[:, 6:]], 1
    )
    return boxes, torch.rand(n, generator=g)


def _shared_data() -> Path | None:
    root = Path(os.environ.get("ZOO_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))
    return root if (root / "kitti_frames").is_dir() and (root / "nuscenes_demo").is_dir() else None


def real_clouds() -> dict[str, torch.Tensor]:
    """The shared KITTI frames 000000 (one, and 000000-000002 as one cloud) and the nuScenes keyframe; {} when the
    shared data is not here."""
    root = _shared_data()
    if root is None:
        return {}
    from zoo.data_modules.driving_formats import read_points  # data_modules/ installs as zoo.data_modules

    kitti = [torch.from_numpy(read_points(root / f"kitti_frames/velodyne/00000{i}.bin", 4)) for i in range(3)]
    nus = next((root / "nuscenes_demo").glob("*LIDAR_TOP*.pcd.bin"))
    return {
        "KITTI frame": kitti[0],
        "3 KITTI scans": torch.cat(kitti),
        "nuScenes frame": torch.from_numpy(read_points(nus, 5))[:, :4].contiguous(),
    }


def uniform_cloud(n: int, point_cloud_range, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, hi = torch.tensor(point_cloud_range[:3]), torch.tensor(point_cloud_range[3:])
    return torch.cat([lo + torch.rand(n, 3, generator=g) * (hi - lo), torch.rand(n, 1, generator=g)], 1)


# ================================================================================================== the peers
def _polygons(boxes: torch.Tensor):
    import shapely

    from zoo.nn.boxes3d import bev_corners

    return shapely.polygons(bev_corners(boxes.detach().double()).cpu().numpy())


def shapely_bev_iou(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Rotated BEV IoU [N, M] with shapely 2: STRtree candidate pairs, vectorised intersection areas."""
    import shapely

    pa, pb = _polygons(a), _polygons(b)
    i, j = shapely.STRtree(pb).query(pa, predicate="intersects")
    inter = shapely.area(shapely.intersection(pa[i], pb[j]))
    out = np.zeros((len(pa), len(pb)))
    area_a, area_b = shapely.area(pa), shapely.area(pb)
    out[i, j] = inter / (area_a[i] + area_b[j] - inter)
    return out


def shapely_nms_rows(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> np.ndarray:
    """Greedy rotated NMS, shapely row-vectorised: each kept box against every lower-scored box still alive."""
    import shapely

    order = np.argsort(-scores.numpy(), kind="stable")
    polys = _polygons(boxes)[order]
    area = shapely.area(polys)
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        rest = np.flatnonzero(alive[i + 1 :]) + i + 1
        inter = shapely.area(shapely.intersection(polys[i], polys[rest]))
        alive[rest[inter / (area[i] + area[rest] - inter) > iou_threshold]] = False
    return order[keep]


def shapely_nms_tree(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> np.ndarray:
    """Greedy rotated NMS, shapely STRtree: the intersecting pairs' IoU once, then one greedy pass."""
    import shapely

    order = np.argsort(-scores.numpy(), kind="stable")
    polys = _polygons(boxes)[order]
    area = shapely.area(polys)
    i, j = shapely.STRtree(polys).query(polys, predicate="intersects")
    upper = i < j
    i, j = i[upper], j[upper]
    inter = shapely.area(shapely.intersection(polys[i], polys[j]))
    over = inter / (area[i] + area[j] - inter) > iou_threshold
    i, j = i[over], j[over]
    by_row = np.argsort(i, kind="stable")
    i, j = i[by_row], j[by_row]
    alive = np.ones(len(order), dtype=bool)
    for row in np.unique(i):
        if alive[row]:
            alive[j[np.searchsorted(i, row) : np.searchsorted(i, row, side="right")]] = False
    return order[alive]


# ===================================================================================================== the rows


def _voxelize_rows(reps: int, device: torch.device) -> list[dict]:
    from zoo.nn.pillars import voxelize

    def sync():
        synchronize(device)

    try:
        from spconv.pytorch.utils import PointToVoxel
    except ImportError:  # spconv is the optional 3d extra
        PointToVoxel = None
    rows = []
    for grid_name, (vs, rng, max_pts, max_vox) in (("0.2 m pillars", PILLAR_GRID), ("0.075 m voxels", VOXEL_GRID)):
        clouds = {**real_clouds(), f"uniform {UNIFORM_POINTS // 1000}k": uniform_cloud(UNIFORM_POINTS, rng)}
        for cloud_name, pts in clouds.items():
            pts = pts.to(device)
            fns = {"zoo": lambda: voxelize(pts, vs, rng)}
            note = ""
            if PointToVoxel is not None:
                gen = PointToVoxel(
                    vsize_xyz=list(vs),
                    coors_range_xyz=list(rng),
                    num_point_features=pts.shape[1],
                    max_num_voxels=max_vox,
                    max_num_points_per_voxel=max_pts,
                    device=device,
                )
                fns["spconv"] = lambda: gen(pts)
                kept = int(gen(pts)[2].sum())
                note = f"spconv keeps {kept / max(1, int(voxelize(pts, vs, rng).keep.sum())):.0%} of the points"
            else:
                note = "spconv not installed (pip install zoo[3d])"
            t = interleaved(fns, reps, sync=sync)
            rows.append(
                _row(
                    "voxelize",
                    f"{grid_name}, {cloud_name} ({len(pts) / 1e3:.0f}k)",
                    t["zoo"],
                    f"spconv PointToVoxel ({max_pts} pts, {max_vox:,} cells)",
                    t.get("spconv"),
                    note,
                )
            )
        sizes = LINEARITY_POINTS
        per = []
        for n in sizes:
            pts = uniform_cloud(n, rng, seed=n).to(device)
            per.append(interleaved({"zoo": lambda: voxelize(pts, vs, rng)}, reps, sync=sync)["zoo"])
        slope, icpt = np.polyfit(np.array(sizes, dtype=float), np.array(per), 1)
        lo_k, hi_k = sizes[0] // 1000, sizes[-1] // 1000
        rows.append(
            _row(
                "voxelize",
                f"{grid_name}, linearity {lo_k}k-{hi_k}k",
                per[-1],
                "-",
                None,
                f"time per point at {hi_k}k / at {lo_k}k = {(per[-1] / sizes[-1]) / (per[0] / sizes[0]):.2f} "
                f"(1 = linear); slope {slope * 1e9:.1f} us per 1,000 points, intercept {icpt * 1e3:.2f} ms",
            )
        )
    return rows


def _iou_rows(reps: int, sizes) -> list[dict]:
    from zoo.nn.boxes3d import bev_iou

    rows = []
    for n in sizes:
        boxes, _ = scene_boxes(n)
        t = interleaved({"zoo": lambda: bev_iou(boxes, boxes), "shapely": lambda: shapely_bev_iou(boxes, boxes)}, reps)
        rows.append(_row("iou", f"rotated BEV IoU {n} x {n}", t["zoo"], "shapely STRtree", t["shapely"]))
    return rows


def _nms_rows(reps: int, sizes, iou_threshold: float = 0.2) -> list[dict]:
    from zoo.nn.boxes3d import rotated_nms

    rows = []
    for n in sizes:
        boxes, scores = scene_boxes(n)
        t = interleaved(
            {
                "zoo": lambda: rotated_nms(boxes, scores, iou_threshold),
                "rows": lambda: shapely_nms_rows(boxes, scores, iou_threshold),
                "tree": lambda: shapely_nms_tree(boxes, scores, iou_threshold),
            },
            reps,
        )
        best = min(("rows", "tree"), key=t.get)
        kept = len(rotated_nms(boxes, scores, iou_threshold))
        rows.append(
            _row(
                "nms",
                f"rotated NMS {n} boxes (IoU > {iou_threshold})",
                t["zoo"],
                {"rows": "shapely row-vectorised", "tree": "shapely STRtree"}[best],
                t[best],
                f"{kept} kept; other shapely peer {t['tree' if best == 'rows' else 'rows'] * 1e3:.2f} ms",
            )
        )
    return rows


def rsfd_beam_times(
    batch: int = RSFD_BEAM_BATCH,
    size: str | dict = RSFD_BEAM_SIZE,
    beam: int = 5,
    steps: int = 8,
    reps: int = 3,
    device=None,
    uncached: bool = True,
    seed: int = 0,
) -> dict:
    """RSFD greedy decoding vs beam search (cached, and recomputed unless ``uncached=False``) on one random-weight
    network, interleaved (one call of each per round, after one untimed call whose captions are compared), in the
    current thread count. Returns medians in seconds, ratios to cached greedy, caption widths, and (with the uncached
    search) whether the two beam searches gave equal captions and the cache's speed-up."""
    from zoo.models.rsfd.model import RSFD, beam_search, greedy_decode
    from zoo.models.rsfd.sizes import SIZES

    dev = torch.device(device or "cpu")
    torch.manual_seed(seed)  # the weights, then the inputs (the global generator, as the script always drew them)
    model = RSFD(**(SIZES[size] if isinstance(size, str) else size)).to(dev).eval()
    feats = [torch.randn(batch, steps, b[0].in_features, device=dev) for b in model.encoder.branches]
    cats = model.decoder.category
    cat = None if cats is None else torch.randint(0, cats.num_embeddings, (batch,), device=dev)
    runs = {
        "greedy": lambda: greedy_decode(model, feats, cat),
        "beam_cached": lambda: beam_search(model, feats, cat, beam),
    }
    if uncached:
        runs["beam_uncached"] = lambda: beam_search(model, feats, cat, beam, cache=False)
    with torch.inference_mode():
        outs = {k: fn() for k, fn in runs.items()}  # the warm-up, and the captions compared below
        med = interleaved(runs, reps, warmup=0, sync=lambda: synchronize(dev))
    out = {
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "size": size if isinstance(size, str) else "custom",
        "batch": batch,
        "beam": beam,
        "repeats": reps,
        "median_s": med,
        "ratio_to_greedy": {k: v / med["greedy"] for k, v in med.items()},
        "caption_width": {k: int(o.tokens.shape[1]) for k, o in outs.items()},
    }
    if uncached:
        a, b = outs["beam_cached"], outs["beam_uncached"]
        out["cached_equals_uncached"] = bool(torch.equal(a.tokens, b.tokens))
        out["speedup_cache"] = med["beam_uncached"] / med["beam_cached"]
    return out


def _rsfd_beam_rows(reps: int, device: torch.device) -> list[dict]:
    r = rsfd_beam_times(RSFD_BEAM_BATCH, RSFD_BEAM_SIZE, reps=reps, device=device)
    med, width = r["median_s"], r["caption_width"]
    work = f"RSFD {r['size']} batch {r['batch']}, beam {r['beam']}"
    note = (
        f"same captions cached / uncached: {r['cached_equals_uncached']}; cache speed-up {r['speedup_cache']:.2f}x; "
        f"caption width {width['beam_cached']} (greedy {width['greedy']})"
    )
    return [
        _row("rsfd-beam", f"{work} (cached)", med["beam_cached"], "greedy decoding (cached)", med["greedy"], note),
        _row("rsfd-beam", f"{work} (uncached)", med["beam_uncached"], "greedy decoding (cached)", med["greedy"]),
    ]


def bench_peer_ops(
    names: list[str] | str, reps: int | None = None, box_sizes=BOX_SIZES, device=None, verbose: bool = True
) -> list[dict]:
    """Rows for ``names`` (of :data:`PEER_OPS`; ``"peers"`` = voxelize, iou and nms), one thread, interleaved with the
    peers; prints one table. ``reps``: timed rounds per row (default 7, rsfd-beam 3; take medians). ``device``: where
    voxelize and spconv, and RSFD's decoders, run (default the CPU; ``cuda``: on the GPU, synchronised); iou and nms
    always run on the CPU (their peer, shapely, is CPU-only)."""
    if isinstance(names, str):
        names = list(ALL_PEERS) if names == "peers" else names.split(",")
    unknown = [n for n in names if n not in PEER_OPS]
    if unknown:
        raise ValueError(f"zoo bench --op: {unknown} are not peer-timed ops; those are {list(PEER_OPS)} or 'peers'")
    from zoo.bench import lwsis_predict, model_peers

    rsfd_reps, model_reps, reps = reps or 3, reps or 3, reps or 7
    rows: list[dict] = []
    dev = torch.device(device or "cpu")
    with threads(1):
        for n in names:
            rows += {
                "voxelize": lambda: _voxelize_rows(reps, dev),
                "iou": lambda: _iou_rows(reps, box_sizes),
                "nms": lambda: _nms_rows(reps, box_sizes),
                "rsfd-beam": lambda: _rsfd_beam_rows(rsfd_reps, dev),
                "emo-train": lambda: model_peers.emo_train_rows(model_reps, dev),
                "create": lambda: model_peers.create_rows(model_reps),
                "lwsis-predict": lambda: lwsis_predict.lwsis_predict_rows(rsfd_reps),
            }[n]()
    for r in rows:
        r["device"] = str(device or "cpu") if r["op"] in ("voxelize", "rsfd-beam", "emo-train") else "cpu"
    if verbose:
        print_peer_rows(rows)
    return rows


def print_peer_rows(rows: list[dict]) -> None:
    print(
        f"{'op':13s} {'dev':5s} {'work':48s} {'zoo ms':>9s} {'peer ms':>9s} {'ratio':>7s}  peer; note  (1 thread, "
        "interleaved, medians)"
    )
    for r in rows:
        peer = "-" if r["peer_ms"] is None else f"{r['peer_ms']:9.2f}"
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        print(
            f"{r['op']:13s} {r.get('device', 'cpu')[:5]:5s} {r['size']:48s} {r['zoo_ms']:9.2f} {peer:>9s} "
            f"{ratio:>7s}  {r['peer']}" + (f"; {r['note']}" if r["note"] else "")
        )
