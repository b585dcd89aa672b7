"""CCGC: what ``zoo bench`` does not measure - the warm-up loss two ways, and one evaluation's K-means.

    OMP_NUM_THREADS=1 python scripts/ccgc_bench.py --dataset cora [--data ../shared/data]

Kept as a script because these time parts of a step and of the evaluation, not a training step: the warm-up epoch
with our loss (‖Z1 Z2ᵀ - I‖² through the d×d Gram matrices, ``warmup_loss``) against the official code's form (the
dense N×N matrix Z1 Z2ᵀ and its MSE to the identity), and the K-means (10 restarts) run at every evaluation. Prints one
JSON line. The rest is ``zoo bench``:

    zoo bench ccgc-cora --train --config configs/ccgc-cora.yaml            # warm-up epochs (training_step)
    zoo bench ccgc-cora --train --config configs/ccgc-cora.yaml --model-arg warmup_epochs=0   # cluster-guided
    zoo bench ccgc-cora --data --config configs/ccgc-cora.yaml             # loading + the H^t X filter
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="cora")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()

    import torch
    import torch.nn.functional as F

    from zoo.data_modules.graphs import GraphClusteringDataModule
    from zoo.models.ccgc.module import CCGCModule, kmeans, warmup_loss
    from zoo.profiling import time_calls

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dm = GraphClusteringDataModule(args.dataset, str(Path(args.data) / args.dataset))
    dm.setup()
    x, n, k = dm.smoothed, dm.num_nodes, dm.num_classes
    m = CCGCModule(net={"in_features": dm.num_features}, num_clusters=k)
    opt = torch.optim.Adam(m.model.parameters(), lr=1e-4)
    eye = torch.eye(n)

    def step(loss_fn):
        z1, z2 = m.model(x)
        opt.zero_grad()
        loss_fn(z1, z2).backward()
        opt.step()

    def med(fn, repeat=args.repeat):
        return round(statistics.median(time_calls(fn, repeat, warmup=1)), 4)

    res = {
        "dataset": args.dataset,
        "nodes": n,
        "features": dm.num_features,
        "threads": args.threads,
        "warmup_epoch_gram_s": med(lambda: step(warmup_loss)),
        "warmup_epoch_official_dense_s": med(lambda: step(lambda a, b: F.mse_loss(a @ b.T, eye))),
        "evaluation_kmeans10_s": med(lambda: kmeans(m(x).detach(), k, 10, 0), max(1, args.repeat // 2)),
    }
    print(json.dumps(res))


if __name__ == "__main__":
    main()
