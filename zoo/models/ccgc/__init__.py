"""CCGC (Yang et al., AAAI 2023, arXiv 2301.01098): cluster-guided contrastive deep graph clustering. Registry entries
(nothing heavy imported).

One entry per graph of the paper's table that the shared data holds in full (Cora, CiteSeer, BAT, EAT; UAT's adjacency
and AMAP are absent). The network is two unshared ``Linear(d -> 500)`` encoders, so each entry is tied to its graph's
attribute dimension d.
"""

from zoo.models.ccgc.sizes import SIZES
from zoo.registry import Entry, Metric, Paper
from zoo.results import Arm, Claim, Protocol, ResultSpec, Variant

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
}""",  # noqa: E501 (BibTeX keeps each field on one line)
)

MODULE = "zoo.models.ccgc.module.CCGCModule"

# name (a size of sizes.py) -> (clusters K, Hub dataset name, parameters 2 (500 d + 500), checked on the meta device)
GRAPHS = {
    "cora": (7, "Cora", 1_434_000),
    "citeseer": (6, "CiteSeer", 3_704_000),
    "bat": (4, "Brazil air-traffic (BAT)", 82_000),
    "eat": (4, "Europe air-traffic (EAT)", 204_000),
}

# CCGC Table 1 (xihongyang1999/CCGC:assets/CCGC_result.png), mean over 10 seeds, %
PAPER_TABLE = {
    "cora": {"acc": 73.88, "nmi": 56.45, "ari": 52.51, "f1": 70.98},
    "citeseer": {"acc": 69.84, "nmi": 44.33, "ari": 45.68, "f1": 62.71},
    "bat": {"acc": 75.04, "nmi": 50.23, "ari": 46.95, "f1": 74.90},
    "eat": {"acc": 57.19, "nmi": 33.85, "ari": 27.71, "f1": 57.09},
}
_PAPER_PROTOCOL = (
    "paper Table 1: mean over 10 seeds; per seed the evaluation (every 10 epochs) with the best ACC against the labels"
)
_NAMES = {"acc": "ACC", "nmi": "NMI", "ari": "ARI", "f1": "F1"}

# Our measured numbers live in results/ccgc.csv (zoo reproduce ccgc-<graph> --seeds 0-9 [--variant official]); this
# says how its rows read. One fit is one seed; the module logs both readings of the run (run/best_*, run/last_*).
RESULTS = ResultSpec(
    task="graph-clustering",
    split="all nodes",
    metrics={k: (k, _NAMES[k]) for k in ("acc", "nmi", "ari", "f1")},
    protocols={
        "best": Protocol(
            "paper protocol: per seed the evaluation (every 10 epochs, initial K-means included) with "
            "the best ACC against the labels",
            {k: f"run/best_{k}" for k in _NAMES},
        ),
        "last": Protocol(
            "honest protocol: final epoch (400), no label-based selection", {k: f"run/last_{k}" for k in _NAMES}
        ),
    },
    variants={
        "default": Variant(
            "code defaults (t 4, lr 1e-4, tau 0.5, alpha 0.5), the release's training loop (gradients "
            "accumulated across epochs, first confident cluster skipped), scikit-learn K-means "
            "(10 restarts)"
        ),
        "official": Variant(
            "official code emulated: gradients accumulated across epochs, first cluster skipped, the "
            "official K-means rule (one Lloyd run from the closest-to-all of 20 random draws)",
            (
                "--model.init_args.accumulate_grad_across_epochs=true",
                "--model.init_args.skip_first_cluster=true",
                "--model.init_args.kmeans_impl=official",
            ),
        ),
        "paper_form": Variant(
            "the paper's form (zoo's earlier default): gradients zeroed every epoch, every confident "
            "cluster visited, scikit-learn K-means (10 restarts)",
            ("--model.init_args.accumulate_grad_across_epochs=false", "--model.init_args.skip_first_cluster=false"),
        ),
    },
    dataset_names={ds: g[1] for ds, g in GRAPHS.items()},
    scale=100.0,
    decimals=2,
)
# Encoders trained and exported as Hub folders -> published repo ids (none published yet).
TRAINED: set = set()


def _metric(ds: str, metric: str, value: float, name: str, protocol: str) -> Metric:
    return Metric(
        task="graph-clustering",
        dataset=ds,
        dataset_name=GRAPHS[ds][1],
        metric=metric,
        value=value,
        split="all nodes",
        name=name,
        protocol=protocol,
    )


def _paper_metrics(ds):
    return tuple(_metric(ds, k, v, _NAMES[k], _PAPER_PROTOCOL) for k, v in PAPER_TABLE[ds].items())


ENTRIES = [
    Entry(
        name=f"ccgc-{ds}",
        module=MODULE,
        init_args={"size": ds, "num_clusters": k},
        paper=PAPER,
        license="MIT",
        description=(
            f"CCGC on {dsname}: two parameter-unshared Siamese Linear({SIZES[ds]['in_features']} -> "
            f"{SIZES[ds]['dims']}) encoders over the "
            f"Laplacian-smoothed attributes H^4 X, L2-normalised; K-means (K={k}) on the fused embedding "
            "(Z1 + Z2)/2 gives the clusters."
        ),
        hub_repo=f"zoo-models/ccgc-{ds}" if ds in TRAINED else None,
        preprocess={
            "graph_filter": "X~ = H^t X, H = D^-1/2 (A + I) D^-1/2 (self-loops of A removed first)",
            "t": 4,
            "input": "the whole graph's smoothed attributes (N, d), one row per node",
            "data_module": "zoo.data_modules.GraphClusteringDataModule",
        },
        pipeline_tag=None,
        datasets=(ds,),
        tags=("graph", "graph-clustering", "contrastive-learning", "self-supervised", "node-clustering"),
        params=params,
        paper_metrics=_paper_metrics(ds),
        results=RESULTS,
        config=f"configs/ccgc-{ds}.yaml",
        recipe=(
            "Laplacian smoothing t=4; Adam lr 1e-4, 400 full-batch epochs; epochs 0-50 warm-up loss "
            "mean((Z1 Z2^T - I)^2); then L = L_pos + 0.5 L_neg on the high-confidence nodes (tau = 0.5) of the "
            "latest K-means, re-run every 10 epochs; 10 seeds (0-9), one fit each."
        ),
        limitations=(
            "Transductive: the encoders are tied to the graph's attribute dimension and are meant to cluster "
            "the graph they were trained on (K-means on the embedding). The paper's protocol picks each "
            "seed's epoch by ACC against the ground-truth labels; the honest final-epoch numbers are listed "
            "beside it. The paper's per-dataset hyper-parameters were not published; the code defaults are "
            "used everywhere. Defaults follow the release's training loop, which produced the paper's numbers: "
            "gradients are never zeroed (accumulate_grad_across_epochs=true: each Adam step sees the running "
            "sum of all gradients so far) and the loop over consecutive sorted cluster ids never visits the "
            "smallest-id confident cluster (skip_first_cluster=true; L_pos is still divided by K). Both "
            "false = the paper's form and zoo's earlier default (variant 'paper_form'; its Cora best-ACC "
            "was 68.94 against 74.48 for the release over 10 seeds, paper 73.88). The 'official' variant "
            "adds the release's single-run K-means rule (kmeans_impl=official); scikit-learn's best of 10 "
            "restarts is the default evaluator. Much of the remaining gap to the table is the noisy K-means "
            "evaluator combined with the label-picked epoch."
        ),
        tiny_overrides={"net": {"in_features": 6, "dims": 8}, "num_clusters": 2},
    )
    for ds, (k, dsname, params) in GRAPHS.items()
]


# The claim in miniature: the cluster-guided loss against the same run that never leaves the warm-up loss.
def _arms(demo: str, epochs: int) -> tuple[Arm, Arm]:
    """The claim's two arms on one demo: the cluster-guided loss after the warm-up, and the warm-up loss for all
    ``epochs`` (the demo's epoch count: the cluster-guided loss never starts)."""
    return (
        Arm("cluster-guided loss after the warm-up", demo),
        Arm("warm-up loss only", demo, "warmup_only", (f"--model.init_args.warmup_epochs={epochs}",)),
    )


_CLAIM_METRIC = (
    "Metric: scikit-learn K-means (10 restarts) on the final fused embedding, ACC against the labels (the test row; no "
    "label-based epoch selection, whereas the paper's table keeps each seed's best-ACC evaluation)."
)
CLAIM = Claim(
    claim="Contrastive learning guided by high-confidence clusters (positives: same-cluster nodes across the two "
    "unshared encoders; negatives: the centres of different clusters), started after a warm-up, clusters a graph "
    "better than the embedding learned without it.",
    paper="The paper's ablation numbers are not in zoo's specs. Table 1 (mean of 10 seeds, best-ACC evaluation per "
    "seed): CCGC ACC 73.88 Cora, 69.84 CiteSeer, 75.04 BAT, 57.19 EAT (%), above the table's twelve baselines on each "
    "(best baseline ACC 73.50 / 69.73 / 67.86 / 52.13).",
    metric="test/acc",
    arms=_arms("ccgc", 100),
    design="configs/demo/ccgc.yaml: Zachary's karate club (34 members, identity features, the two clubs as labels), "
    "H^4 smoothing, two Linear(34 -> 32) encoders, Adam 1e-3, 100 epochs: 30 of the warm-up loss (cross-view "
    "correlation pushed to the identity), then L_pos + 0.5 L_neg on the tau = 0.5 most confident nodes of the K-means "
    "re-run every 10 epochs. The baseline never leaves the warm-up (warmup_epochs = epochs = 100): same encoders, "
    "same steps, only the warm-up loss. " + _CLAIM_METRIC + " The paper's graphs have 131 to 7,650 nodes. What the "
    "rows show: on 34 nodes the K-means on H^4 X before any training already finds the two clubs at most seeds (the "
    "fit rows' init/acc), both arms mostly end where they start, and the gap between them comes from single seeds "
    "whose final K-means lands on a worse split, so it is within the seed spread.",
    extra=("test/nmi",),
    scale=100.0,
    unit="%",
    decimals=2,
    seeds="0-9",
    label="karate club",
    also=(
        Claim(
            claim="the same, on BAT",
            paper="",
            metric="test/acc",
            arms=_arms("ccgc-bat", 400),
            design="configs/demo/ccgc-bat.yaml: the paper's graph BAT (131 airports, 81 one-hot degree features, 4 "
            "classes) with the release's code defaults as in configs/ccgc-bat.yaml (Linear(81 -> 500) x 2, Adam 1e-4, "
            "400 epochs, warm-up 51, tau 0.5, alpha 0.5, re-clustering every 10 epochs, the release's gradient "
            "accumulation across epochs and first-cluster skip). The baseline never leaves the warm-up "
            "(warmup_epochs = epochs = 400). " + _CLAIM_METRIC + " What the rows and the runs' logs show: with the "
            "release's learning rate the cluster-guided arm keeps the partition of the initial K-means on H^4 X (its "
            "pseudo-labels come from that partition and the loss pulls each confident cluster together), so its final "
            "K-means stays near the fit rows' init/acc at every seed, while the warm-up-only run drifts and at most "
            "seeds reaches a better split late in the run. The paper's table reads each seed's best-ACC evaluation "
            "and its per-dataset hyper-parameters are unpublished (the code defaults are used here).",
            extra=("test/nmi",),
            scale=100.0,
            unit="%",
            decimals=2,
            seeds="0-9",
            label="BAT",
        ),
    ),
)
