"""Clustering metrics of the deep-graph-clustering literature (CCGC Table 1: ACC, NMI, ARI, F1, all ×100).

- ACC: the best one-to-one mapping of cluster ids to classes (Hungarian matching on the contingency table,
  ``scipy.optimize.linear_sum_assignment``), then accuracy;
- F1: macro-F1 of the predictions after that same mapping (as the official ``cluster_acc`` does);
- NMI (arithmetic normalisation) and ARI: ``torchmetrics.clustering``.
"""

from __future__ import annotations

import numpy as np
import torch

from zoo.errors import UserError


def hungarian_match(target: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """``preds`` relabelled by the cluster→class assignment that maximises the number of agreements."""
    from scipy.optimize import linear_sum_assignment

    target, preds = np.asarray(target, dtype=np.int64), np.asarray(preds, dtype=np.int64)
    if target.shape != preds.shape or target.ndim != 1:
        raise UserError(
            f"clustering metrics: preds {preds.shape} and target {target.shape} must be 1-D and of the "
            "same length; pass one cluster id and one label per node."
        )
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
