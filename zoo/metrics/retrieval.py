"""Cross-modal retrieval: recall at K, median and mean rank, in both directions.

The protocol of CLIP-style image-text retrieval (Flickr30k / COCO 5k) and of text-video retrieval (MSR-VTT 1k-A,
Frozen-in-Time's ``sim_matrix`` evaluation): embeddings are L2-normalised, the similarity is their dot product, and a
query is found at K when any of its positives is among the K most similar gallery items. The rank of a query is the
1-based rank of its best-ranked positive; ties are counted in the query's favour (items with a strictly higher
similarity are counted), so a constant similarity does not depend on sort order.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def best_positive_rank(sim: Tensor, match: Tensor) -> Tensor:
    """``sim [Q, G]`` similarities, ``match [Q, G]`` bool (True = a positive) -> ``[Q]`` 1-based rank of each
    query's best-ranked positive. Every query needs at least one positive."""
    if sim.shape != match.shape or sim.dim() != 2:
        raise ValueError(f"sim {tuple(sim.shape)} and match {tuple(match.shape)} must be the same [Q, G] shape")
    if not bool(match.any(dim=1).all()):
        raise ValueError("every query needs at least one positive in the gallery (check the ids passed to update)")
    best = sim.masked_fill(~match, float("-inf")).max(dim=1, keepdim=True).values  # [Q, 1]
    return (sim > best).sum(dim=1) + 1


def retrieval_scores(sim: Tensor, match: Tensor, ks: Sequence[int] = (1, 5, 10)) -> dict[str, Tensor]:
    """``r{k}`` (percent of queries found within the top k), ``medr`` and ``meanr`` (rank of the best positive)."""
    rank = best_positive_rank(sim, match).float()
    out = {f"r{k}": (rank <= k).float().mean() * 100.0 for k in ks}
    out["medr"] = rank.median()  # the lower median for an even count, as torch defines it
    out["meanr"] = rank.mean()
    return out


class CrossModalRetrieval(Metric):
    """Retrieval between two modalities, accumulated over batches (and processes: states are concatenated).

    ``update(a, b, a_ids=None, b_ids=None)``: ``a [N, D]`` embeddings of the ``gallery`` modality (images, videos),
    ``b [M, D]`` of the ``query`` modality (captions). Items with equal ids match (five captions of one image share the
    image's id); without ids the i-th ``a`` matches the i-th ``b`` (one caption per item: ``N == M``), numbered across
    updates. ``compute()`` -> ``{"t2v_r1", ..., "t2v_medr", "t2v_meanr", "v2t_r1", ...}``: the prefix is the first
    letters of ``query`` and ``gallery`` (query -> gallery first, then gallery -> query).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ks: Sequence[int] = (1, 5, 10), query: str = "text", gallery: str = "video", **kwargs):
        super().__init__(**kwargs)
        if not ks or any(int(k) < 1 for k in ks):
            raise ValueError(f"ks={tuple(ks)}: recall cut-offs must be positive integers, e.g. (1, 5, 10)")
        self.ks = tuple(int(k) for k in ks)
        self.q2g = f"{query[0]}2{gallery[0]}"
        self.g2q = f"{gallery[0]}2{query[0]}"
        for name in ("a", "b", "a_ids", "b_ids"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self._count = 0  # automatic ids for one-to-one updates in a single process

    def update(self, a: Tensor, b: Tensor, a_ids: Tensor | None = None, b_ids: Tensor | None = None) -> None:
        if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1]:
            raise ValueError(
                f"embeddings must be [N, D] and [M, D] with the same D, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        if (a_ids is None) != (b_ids is None):
            raise ValueError("pass both a_ids and b_ids, or neither (then the i-th a matches the i-th b)")
        if a_ids is None:
            if (
                torch.distributed.is_available()
                and torch.distributed.is_initialized()
                and torch.distributed.get_world_size() > 1
            ):
                raise ValueError(
                    "under several processes pass a_ids and b_ids (dataset indices): automatic one-to-one "
                    "ids restart in every process and would collide"
                )
            if a.shape[0] != b.shape[0]:
                raise ValueError(
                    f"{a.shape[0]} gallery and {b.shape[0]} query embeddings without ids: pass a_ids and "
                    "b_ids to say which items match (e.g. several captions per video)"
                )
            a_ids = b_ids = torch.arange(self._count, self._count + a.shape[0], device=a.device)
            self._count += a.shape[0]
        if a_ids.shape != a.shape[:1] or b_ids.shape != b.shape[:1]:
            raise ValueError("a_ids / b_ids must hold one id per embedding row")
        self.a.append(F.normalize(a.detach().float(), dim=-1))
        self.b.append(F.normalize(b.detach().float(), dim=-1))
        self.a_ids.append(a_ids.detach().long())
        self.b_ids.append(b_ids.detach().long())

    def compute(self) -> dict[str, Tensor]:
        a, b = dim_zero_cat(self.a), dim_zero_cat(self.b)
        a_ids, b_ids = dim_zero_cat(self.a_ids), dim_zero_cat(self.b_ids)
        # a gallery item seen twice (a video evaluated with each of its captions) counts once
        a_ids, first = _unique_first(a_ids)
        a = a[first]
        sim = b @ a.T  # [queries, gallery]
        match = b_ids[:, None] == a_ids[None, :]
        out = {f"{self.q2g}_{k}": v for k, v in retrieval_scores(sim, match, self.ks).items()}
        out.update({f"{self.g2q}_{k}": v for k, v in retrieval_scores(sim.T, match.T, self.ks).items()})
        return out

    def reset(self) -> None:
        super().reset()
        self._count = 0


def _unique_first(ids: Tensor) -> tuple[Tensor, Tensor]:
    """Unique ids in order of first appearance and the index of each first appearance."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    first = torch.full((uniq.numel(),), ids.numel(), dtype=torch.long, device=ids.device)
    first.scatter_reduce_(0, inverse, torch.arange(ids.numel(), device=ids.device), reduce="amin")
    first = first.sort().values
    return ids[first], first
