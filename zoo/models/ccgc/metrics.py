"""Clustering metrics of the deep-graph-clustering literature (CCGC Table 1: ACC, NMI, ARI, F1, all ×100).

- ACC: the best one-to-one mapping of cluster ids to classes (Hungarian matching on the contingency table,
  ``scipy.optimize.linear_sum_assignment``), then accuracy;
- F1: macro-F1 of the predictions after that same mapping (as the official ``cluster_acc`` does);
- NMI (arithmetic normalisation) and ARI: ``torchmetrics.clustering``.
"""
from __future__ import annotations

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.clustering import AdjustedRandScore, NormalizedMutualInfoScore
from torchmetrics.utilities import dim_zero_cat


def hungarian_match(target: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """``preds`` relabelled by the cluster→class assignment that maximises the number of agreements."""
    from scipy.optimize import linear_sum_assignment

    target, preds = np.asarray(target, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    if target.shape != preds.shape or target.ndim != 1:
        raise ValueError(f"preds {preds.shape} and target {target.shape} must be 1-D and of the same length")
    classes, t = np.unique(target, return_inverse=True)
    clusters, p = np.unique(preds, return_inverse=True)
    k = max(len(classes), len(clusters))
    counts = np.zeros((k, k), dtype=np.int64)
    np.add.at(counts, (p, t), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    # clusters beyond the number of classes map to dummy ids (counted as errors)
    to_class = np.full(k, -1, dtype=np.int64)
    for r, c in zip(rows, cols):
        to_class[r] = classes[c] if c < len(classes) else -1 - c
    return to_class[p]


def cluster_accuracy_f1(target, preds) -> tuple[float, float]:
    """(ACC, macro-F1) after Hungarian matching, as fractions."""
    from sklearn.metrics import f1_score

    target = np.asarray(target, dtype=np.int64)
    mapped = hungarian_match(target, preds)
    acc = float((mapped == target).mean())
    f1 = float(f1_score(target, mapped, labels=np.unique(target), average="macro", zero_division=0))
    return acc, f1


class ClusterAccuracy(Metric):
    """ACC (``which="acc"``) or macro-F1 (``which="f1"``) after Hungarian matching of cluster ids to classes."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, which: str = "acc", **kw):
        super().__init__(**kw)
        if which not in ("acc", "f1"):
            raise ValueError(f"which must be 'acc' or 'f1', got {which!r}")
        self.which = which
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.preds.append(preds.detach().long().flatten())
        self.target.append(target.detach().long().flatten())

    def compute(self) -> torch.Tensor:
        acc, f1 = cluster_accuracy_f1(dim_zero_cat(self.target).cpu().numpy(), dim_zero_cat(self.preds).cpu().numpy())
        return torch.tensor(acc if self.which == "acc" else f1)


def clustering_scores(preds, target) -> dict[str, float]:
    """ACC, NMI, ARI, F1 (fractions) of cluster ids ``preds`` against classes ``target`` (1-D, same length)."""
    from torchmetrics.functional.clustering import adjusted_rand_score, normalized_mutual_info_score

    preds, target = torch.as_tensor(preds).long().flatten(), torch.as_tensor(target).long().flatten()
    acc, f1 = cluster_accuracy_f1(target.numpy(), preds.numpy())
    return {
        "acc": acc,
        "nmi": float(normalized_mutual_info_score(preds, target, average_method="arithmetic")),
        "ari": float(adjusted_rand_score(preds, target)),
        "f1": f1,
    }


def clustering_metrics() -> dict[str, Metric]:
    """Fresh metric objects keyed by the names logged (``acc``, ``nmi``, ``ari``, ``f1``)."""
    return {
        "acc": ClusterAccuracy("acc"),
        "nmi": NormalizedMutualInfoScore(average_method="arithmetic"),
        "ari": AdjustedRandScore(),
        "f1": ClusterAccuracy("f1"),
    }
