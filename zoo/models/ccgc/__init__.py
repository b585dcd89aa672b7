"""CCGC (Yang et al., AAAI 2023, arXiv 2301.01098): cluster-guided contrastive deep graph clustering. Registry entries
(nothing heavy imported).

One entry per graph of the paper's table that the shared data holds in full (Cora, CiteSeer, BAT, EAT; UAT's adjacency
and AMAP are absent). The network is two unshared ``Linear(d -> 500)`` encoders, so each entry is tied to its graph's
attribute dimension d: params = 2 (500 d + 500).
"""
from zoo.registry import Entry, Metric, Paper

PAPER = Paper(
    title="Cluster-guided Contrastive Graph Clustering Network",
    arxiv="2301.01098",
    code="https://github.com/xihongyang1999/CCGC",
    venue="AAAI 2023",
    citation="""@inproceedings{yang2023ccgc,
  title={Cluster-guided Contrastive Graph Clustering Network},
  author={Yang, Xihong and Liu, Yue and Zhou, Sihang and Wang, Siwei and Tu, Wenxuan and Zheng, Qun and Liu, Xinwang and Fang, Liming and Zhu, En},
  booktitle={Proceedings of the AAAI Conference on Artificial Intelligence},
  volume={37},
  number={9},
  pages={10834--10842},
  year={2023}
}""",
)

MODULE = "zoo.models.ccgc.module.CCGCModule"
DIMS = 500

# name -> (attribute dimension d, clusters K, Hub dataset name)
GRAPHS = {
    "cora": (1433, 7, "Cora"),
    "citeseer": (3703, 6, "CiteSeer"),
    "bat": (81, 4, "Brazil air-traffic (BAT)"),
    "eat": (203, 4, "Europe air-traffic (EAT)"),
}

# CCGC Table 1 (xihongyang1999/CCGC:assets/CCGC_result.png), mean over 10 seeds, %
PAPER_TABLE = {
    "cora": {"acc": 73.88, "nmi": 56.45, "ari": 52.51, "f1": 70.98},
    "citeseer": {"acc": 69.84, "nmi": 44.33, "ari": 45.68, "f1": 62.71},
    "bat": {"acc": 75.04, "nmi": 50.23, "ari": 46.95, "f1": 74.90},
    "eat": {"acc": 57.19, "nmi": 33.85, "ari": 27.71, "f1": 57.09},
}
_PAPER_PROTOCOL = ("paper Table 1: mean over 10 seeds; per seed the evaluation (every 10 epochs) with the best ACC "
                   "against the labels")
_NAMES = {"acc": "ACC", "nmi": "NMI", "ari": "ARI", "f1": "F1"}

# Our measured numbers (scripts/ccgc_results.py; runs/ccgc_results/*.json), %: dataset -> rows of
# (variant, protocol, seeds, {metric: (mean, std)}). Variants: "default" = the paper's intent (this entry's init args:
# sklearn K-means, both official quirks off); "official" = the official code emulated (accumulate_grad_across_epochs,
# skip_first_cluster, kmeans_impl="official"). Protocols: "best" = per seed the best-ACC evaluation (labels pick the
# epoch, as the paper), "last" = the final epoch (400). Seeds 0.. in order; std is numpy's population std.
OURS: dict = {
    'cora': (
        ('default', 'best', 10, {'acc': (68.94, 1.27), 'nmi': (53.12, 1.0), 'ari': (45.66, 1.68), 'f1': (66.4, 2.84)}),
        ('default', 'last', 10, {'acc': (55.83, 3.04), 'nmi': (47.32, 2.07), 'ari': (34.8, 3.02), 'f1': (43.35, 4.44)}),
        ('official', 'best', 10, {'acc': (73.44, 0.98), 'nmi': (56.37, 1.47), 'ari': (50.88, 1.33), 'f1': (69.23, 3.31)}),
        ('official', 'last', 10, {'acc': (66.07, 4.33), 'nmi': (53.01, 1.9), 'ari': (44.22, 4.31), 'f1': (59.79, 5.76)}),
    ),
    'citeseer': (
        ('default', 'best', 10, {'acc': (67.84, 1.7), 'nmi': (42.32, 1.76), 'ari': (41.27, 2.44), 'f1': (60.54, 1.57)}),
        ('default', 'last', 10, {'acc': (44.08, 4.39), 'nmi': (27.8, 3.33), 'ari': (22.0, 3.69), 'f1': (31.25, 6.21)}),
        ('official', 'best', 10, {'acc': (69.22, 0.88), 'nmi': (43.09, 0.87), 'ari': (43.59, 0.8), 'f1': (61.66, 1.38)}),
        ('official', 'last', 10, {'acc': (61.24, 2.58), 'nmi': (37.01, 2.22), 'ari': (34.39, 2.21), 'f1': (57.27, 2.73)}),
    ),
    'bat': (
        ('default', 'best', 10, {'acc': (57.94, 0.41), 'nmi': (40.42, 0.39), 'ari': (29.98, 0.62), 'f1': (55.44, 0.45)}),
        ('default', 'last', 10, {'acc': (57.18, 0.63), 'nmi': (39.75, 0.56), 'ari': (29.11, 0.77), 'f1': (54.65, 0.68)}),
        ('official', 'best', 10, {'acc': (71.07, 1.58), 'nmi': (47.78, 2.11), 'ari': (41.73, 2.38), 'f1': (71.02, 1.58)}),
        ('official', 'last', 10, {'acc': (63.44, 4.52), 'nmi': (43.9, 2.23), 'ari': (36.37, 4.17), 'f1': (61.56, 5.24)}),
    ),
    'eat': (
        ('default', 'best', 10, {'acc': (53.66, 0.28), 'nmi': (32.69, 0.32), 'ari': (25.63, 0.33), 'f1': (48.79, 0.29)}),
        ('default', 'last', 10, {'acc': (53.43, 0.31), 'nmi': (32.5, 0.3), 'ari': (25.57, 0.25), 'f1': (48.58, 0.18)}),
        ('official', 'best', 10, {'acc': (56.49, 0.87), 'nmi': (33.2, 1.33), 'ari': (26.26, 0.69), 'f1': (56.84, 0.99)}),
        ('official', 'last', 10, {'acc': (52.96, 2.7), 'nmi': (31.28, 2.45), 'ari': (24.86, 0.79), 'f1': (51.85, 4.79)}),
    ),
}
_VARIANTS = {
    "default": "code defaults (t 4, lr 1e-4, tau 0.5, alpha 0.5), scikit-learn K-means (10 restarts), quirks off",
    "official": "official code emulated: gradients accumulated across epochs, first cluster skipped, the official "
                "K-means rule (one Lloyd run from the closest-to-all of 20 random draws)",
}
_PROTOCOLS = {
    "best": "paper protocol: per seed the evaluation (every 10 epochs, initial K-means included) with the best ACC "
            "against the labels",
    "last": "honest protocol: final epoch (400), no label-based selection",
}
# Encoders trained and exported as Hub folders -> published repo ids (none published yet).
TRAINED: set = set()


def _metric(ds: str, metric: str, value: float, name: str, protocol: str) -> Metric:
    return Metric(task="graph-clustering", dataset=ds, dataset_name=GRAPHS[ds][2], metric=metric, value=value,
                  split="all nodes", name=name, protocol=protocol)


def _paper_metrics(ds):
    return tuple(_metric(ds, k, v, _NAMES[k], _PAPER_PROTOCOL) for k, v in PAPER_TABLE[ds].items())


def _our_metrics(ds):
    out = []
    for variant, protocol, seeds, table in OURS.get(ds, ()):
        text = (f"ours, scripts/ccgc_results.py, mean over {seeds} seeds (0-{seeds - 1}); {_PROTOCOLS[protocol]}; "
                f"{_VARIANTS[variant]}")
        for k, (mean, std) in table.items():
            out.append(_metric(ds, k, mean, f"{_NAMES[k]} ({variant}, {protocol} epoch, ±{std:.2f})", text))
    return tuple(out)


ENTRIES = [
    Entry(
        name=f"ccgc-{ds}",
        module=MODULE,
        init_args={"in_features": d, "num_clusters": k, "dims": DIMS},
        paper=PAPER,
        license="MIT",
        description=(f"CCGC on {dsname}: two parameter-unshared Siamese Linear({d} -> {DIMS}) encoders over the "
                     f"Laplacian-smoothed attributes H^4 X, L2-normalised; K-means (K={k}) on the fused embedding "
                     "(Z1 + Z2)/2 gives the clusters."),
        hub_repo=f"zoo-models/ccgc-{ds}" if ds in TRAINED else None,
        preprocess={"graph_filter": "X~ = H^t X, H = D^-1/2 (A + I) D^-1/2 (self-loops of A removed first)", "t": 4,
                    "input": "the whole graph's smoothed attributes (N, d), one row per node",
                    "data_module": "zoo.data_modules.GraphClusteringDataModule"},
        pipeline_tag=None,
        datasets=(ds,),
        tags=("graph", "graph-clustering", "contrastive-learning", "self-supervised", "node-clustering"),
        params=2 * (DIMS * d + DIMS),
        paper_metrics=_paper_metrics(ds),
        our_metrics=_our_metrics(ds),
        config=f"configs/ccgc-{ds}.yaml",
        recipe=("Laplacian smoothing t=4; Adam lr 1e-4, 400 full-batch epochs; epochs 0-50 warm-up loss "
                "mean((Z1 Z2^T - I)^2); then L = L_pos + 0.5 L_neg on the high-confidence nodes (tau = 0.5) of the "
                "latest K-means, re-run every 10 epochs; 10 seeds (0-9)."),
        limitations=("Transductive: the encoders are tied to the graph's attribute dimension and are meant to cluster "
                     "the graph they were trained on (K-means on the embedding). The paper's protocol picks each "
                     "seed's epoch by ACC against the ground-truth labels; the honest final-epoch numbers are listed "
                     "beside it. The paper's per-dataset hyper-parameters were not published; the code defaults are "
                     "used everywhere. With the paper's intent (these init args) our best-ACC numbers are 2-17 points "
                     "below the table; the 'official' rows (gradient accumulation, skipped first cluster, the "
                     "official single-run K-means, all flags of CCGCModule) come within 0.3-4 points: much of the gap "
                     "is the noisy K-means evaluator combined with the label-picked epoch."),
        tiny_overrides={"in_features": 6, "dims": 8, "num_clusters": 2},
    )
    for ds, (d, k, dsname) in GRAPHS.items()
]
