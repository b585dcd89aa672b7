"""CCGC timing on this machine: the graph filter, one training epoch (warm-up and cluster-guided), one evaluation
(K-means on E), and optionally a full run, on one dataset.

    OMP_NUM_THREADS=1 python scripts/ccgc_bench.py --dataset cora [--full]

The warm-up epoch is timed two ways: ours (‖Z1 Z2ᵀ‖² through the d×d Gram matrices) and the official code's structure
(the dense N×N matrix Z1 Z2ᵀ and its MSE to the identity). Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
import warnings
from pathlib import Path


def _time(fn, repeat: int) -> float:
    fn()  # warm-up call
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cora")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--full", action="store_true", help="also time one full 400-epoch run (Trainer.fit)")
    args = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    import torch
    import torch.nn.functional as F

    from zoo.data_modules.graphs import GraphClusteringDataModule, laplacian_smoothing, normalized_adjacency
    from zoo.models.ccgc.module import CCGCModule, cluster_guided_loss, high_confidence_mask, kmeans, warmup_loss

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dm = GraphClusteringDataModule(args.dataset, str(Path(args.data) / args.dataset))
    dm.setup()
    x, n, k = dm.smoothed, dm.num_nodes, dm.num_classes
    h = normalized_adjacency(dm.adj)
    feats = dm.features.numpy()
    res = {"dataset": args.dataset, "nodes": n, "features": dm.num_features, "threads": args.threads,
           "filter_t4_s": _time(lambda: laplacian_smoothing(h, feats, 4), args.repeat)}
    m = CCGCModule(dm.num_features, k)
    opt = torch.optim.Adam(m.model.parameters(), lr=1e-4)

    def step(loss_fn):
        z1, z2 = m.model(x)
        opt.zero_grad()
        loss_fn(z1, z2).backward()
        opt.step()

    res["epoch_warmup_s"] = _time(lambda: step(warmup_loss), args.repeat)
    eye = torch.eye(n)
    res["epoch_warmup_official_dense_s"] = _time(lambda: step(lambda a, b: F.mse_loss(a @ b.T, eye)), args.repeat)
    with torch.no_grad():
        emb = m(x)
    labels, dist = kmeans(emb, k, 10, 0)
    conf = high_confidence_mask(dist, 0.5)
    res["epoch_cluster_guided_s"] = _time(
        lambda: step(lambda a, b: cluster_guided_loss(a, b, labels, conf, k)[0]), args.repeat)
    res["evaluation_kmeans10_s"] = _time(lambda: kmeans(m(x).detach(), k, 10, 0), max(1, args.repeat // 2))
    if args.full:
        import lightning.pytorch as pl

        module = CCGCModule(dm.num_features, k, seeds=[0])
        trainer = pl.Trainer(max_epochs=400, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                             accelerator="cpu", devices=1)
        t0 = time.perf_counter()
        trainer.fit(module, dm)
        res["full_run_400_epochs_s"] = time.perf_counter() - t0
    print(json.dumps({k2: round(v, 4) if isinstance(v, float) else v for k2, v in res.items()}))


if __name__ == "__main__":
    main()
