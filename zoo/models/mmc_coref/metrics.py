"""Coreference metrics from their definitions: MUC, B³, CEAF-φ4 (entity CEAF) and the CoNLL F1.

- MUC (Vilain et al., MUC-6 1995): link based. Recall = Σ_K (|K| - |p(K)|) / Σ_K (|K| - 1), where p(K) partitions the
  key entity K by the response entities (a key mention in no response entity is a part of its own); precision swaps
  key and response.
- B³ (Bagga & Baldwin, 1998): mention based. Recall = Σ_K Σ_R |K ∩ R|² / |K| / Σ_K |K|; precision = Σ_R Σ_K
  |K ∩ R|² / |R| / Σ_R |R| (the reference scorer's form, Pradhan et al. 2014, which also covers mentions that are
  only in the key or only in the response).
- CEAF-φ4 (Luo, 2005): the one-to-one entity alignment g* maximising Σ φ4(K, g(K)), φ4(K, R) = 2|K ∩ R| / (|K| + |R|)
  (Kuhn–Munkres via ``scipy.optimize.linear_sum_assignment``); recall = Σφ4 / #key entities, precision = Σφ4 /
  #response entities.
- CoNLL F1 = mean of the three F1 (Pradhan et al., CoNLL-2012).

Singletons, as in the MMC evaluation (the CoNLL-2012 reference scorer v8.01 on gold and predicted clusters that both
keep singletons): they count in B³ and CEAF-φ4 like any entity; MUC gives them no links (their |K| - 1 is 0), so a
singleton never changes the MUC denominators. 0/0 is scored 0 (the scorer's convention), so two identical
all-singleton clusterings get MUC 0 and B³ = CEAF = 100.

Functions take one document: (gold_clusters, predicted_clusters), each a list of clusters, a cluster a list of
``(start, end)`` mentions (any hashable works), and return (recall, precision, f1) in percent. Corpus scores sum the
numerators and denominators over documents (micro average, as the scorer does): :class:`CorefScores` (torchmetrics)
does that across batches and devices.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch
from torchmetrics import Metric

Cluster = Sequence[Hashable]

__all__ = ["muc", "b_cubed", "ceaf_e", "conll_f1", "muc_counts", "b_cubed_counts", "ceaf_e_counts", "CorefScores"]


def _clean(clusters) -> list[frozenset]:
    out = []
    for c in clusters:
        s = frozenset(tuple(m) if isinstance(m, list) else m for m in c)
        if s:
            out.append(s)
    return out


def _prf(rn: float, rd: float, pn: float, pd: float) -> tuple[float, float, float]:
    r = rn / rd if rd else 0.0
    p = pn / pd if pd else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return 100 * r, 100 * p, 100 * f


def _muc_side(key: list[frozenset], response: list[frozenset]) -> tuple[float, float]:
    where = {m: i for i, c in enumerate(response) for m in c}
    num = den = 0
    for k in key:
        parts = {where.get(m, ("alone", m)) for m in k}
        num += len(k) - len(parts)
        den += len(k) - 1
    return num, den


def muc_counts(gold, predicted) -> tuple[float, float, float, float]:
    """(recall numerator, recall denominator, precision numerator, precision denominator)."""
    g, p = _clean(gold), _clean(predicted)
    rn, rd = _muc_side(g, p)
    pn, pd = _muc_side(p, g)
    return rn, rd, pn, pd


def _b3_side(key: list[frozenset], response: list[frozenset]) -> tuple[float, float]:
    where = {m: i for i, c in enumerate(response) for m in c}
    num = 0.0
    for k in key:
        overlap: dict[int, int] = {}
        for m in k:
            if m in where:
                overlap[where[m]] = overlap.get(where[m], 0) + 1
        num += sum(n * n for n in overlap.values()) / len(k)
    return num, sum(len(k) for k in key)


def b_cubed_counts(gold, predicted) -> tuple[float, float, float, float]:
    g, p = _clean(gold), _clean(predicted)
    rn, rd = _b3_side(g, p)
    pn, pd = _b3_side(p, g)
    return rn, rd, pn, pd


def ceaf_e_counts(gold, predicted) -> tuple[float, float, float, float]:
    g, p = _clean(gold), _clean(predicted)
    if not g or not p:
        return 0.0, len(g), 0.0, len(p)
    from scipy.optimize import linear_sum_assignment

    phi = np.zeros((len(g), len(p)))
    for i, k in enumerate(g):
        for j, r in enumerate(p):
            inter = len(k & r)
            if inter:
                phi[i, j] = 2 * inter / (len(k) + len(r))
    rows, cols = linear_sum_assignment(phi, maximize=True)
    sim = float(phi[rows, cols].sum())
    return sim, len(g), sim, len(p)


def muc(gold, predicted):
    """MUC (recall, precision, f1) in percent."""
    return _prf(*muc_counts(gold, predicted))


def b_cubed(gold, predicted):
    """B³ (recall, precision, f1) in percent, singletons included."""
    return _prf(*b_cubed_counts(gold, predicted))


def ceaf_e(gold, predicted):
    """CEAF-φ4 (recall, precision, f1) in percent, singletons included."""
    return _prf(*ceaf_e_counts(gold, predicted))


def conll_f1(gold, predicted) -> float:
    """Mean of the MUC, B³ and CEAF-φ4 F1 (percent)."""
    return (muc(gold, predicted)[2] + b_cubed(gold, predicted)[2] + ceaf_e(gold, predicted)[2]) / 3


class CorefScores(Metric):
    """Corpus-level MUC / B³ / CEAF-φ4 / CoNLL F1: ``update(gold_clusters, predicted_clusters)`` once per document,
    numerators and denominators summed across batches and devices (``dist_reduce_fx="sum"``).

    ``compute()`` returns a dict ``{muc_r, muc_p, muc_f1, b3_*, ceafe_*, conll_f1}`` of percent tensors.
    """

    full_state_update = False
    higher_is_better = True
    NAMES = ("muc", "b3", "ceafe")

    def __init__(self, **kw):
        super().__init__(**kw)
        self.add_state("counts", default=torch.zeros(3, 4, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, gold, predicted) -> None:
        """One document: its gold and predicted clusters (mentions are compared within the document only)."""
        g, p = gold, predicted
        c = torch.tensor([muc_counts(g, p), b_cubed_counts(g, p), ceaf_e_counts(g, p)], dtype=torch.float64)
        self.counts += c.to(self.counts.device)

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        f1s = []
        for name, row in zip(self.NAMES, self.counts.tolist()):
            r, p, f = _prf(*row)
            out.update({f"{name}_r": r, f"{name}_p": p, f"{name}_f1": f})
            f1s.append(f)
        out["conll_f1"] = sum(f1s) / 3
        return {k: torch.tensor(v, dtype=torch.float32) for k, v in out.items()}
