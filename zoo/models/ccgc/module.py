"""CCGC LightningModule: cluster-guided contrastive deep graph clustering (Yang, Liu, Zhou, Wang, Tu, Zheng, Liu, Fang,
Zhu, AAAI 2023, arXiv 2301.01098, §3; official code xihongyang1999/CCGC, train.py).

One training step is one full-batch epoch over X̃ = H^t X (computed once by the DataModule):

1. Z1, Z2 = the two unshared encoders, L2-normalised rows (``model.py``).
2. Warm-up (run epochs ``< warmup_epochs``, official 0…50; in the code, not in the paper text):
   L_warm = mean_ij ((Z1 Z2ᵀ)_ij − I_ij)², the cross-view correlation pushed to the identity.
3. Afterwards the cluster-guided loss on the current pseudo-labels (the latest K-means on E = (Z1 + Z2)/2):
   - high-confidence nodes: the nodes whose squared distance to their K-means centre is below the value at position
     ⌊τN⌋ of the sorted distances (τ = ``threshold``);
   - positives: per high-confidence cluster k with members H_k, two independent random subsets of
     ⌊0.8|H_k|⌋ nodes, rows of Z1 for the first and of Z2 for the second paired position-wise;
     L_pos = (1/K) Σ_k Σ_pairs (2 − 2⟨z1_i, z2_j⟩)   (divided by the number of clusters K, not of pairs);
   - negatives: normalised per-cluster centres c_k^1, c_k^2 of each view; S = C1 C2ᵀ with the diagonal zeroed;
     L_neg = mean(S²);
   - L = L_pos + α L_neg. With fewer than two high-confidence clusters, or L_pos = 0, the step is skipped.
4. Evaluation after run epochs 0, 10, 20, … (``eval_every``, the official schedule): E, K-means (scikit-learn),
   ACC/NMI/ARI/F1 against the labels; the K-means labels and distances become the pseudo-labels until the next one.
   A run starts with K-means on X̃ itself (the official "initial" clustering: first pseudo-labels, first candidate of
   the best-ACC protocol). The final epoch of a run is always evaluated as well (the honest protocol reads it).

Two readings of the run are recorded (``result``); the official code reports the first:

- ``best``: the evaluation with the highest ACC (ties -> the later one) among the initial K-means and the scheduled
  evaluations — the paper's protocol, which selects the epoch with the test labels;
- ``last``: the evaluation after the final epoch — no label-based selection.

One ``fit`` is one run under the global seed (``seed_everything``): ``trainer.max_epochs`` is set to ``epochs``. At the
end it logs ``run/best_*`` and ``run/last_*``; the paper's 10-seed protocol is ten fits,
``zoo reproduce ccgc-cora --seeds 0-9``, which appends one row per seed and reading to ``results/ccgc.csv``.

Two behaviours of the official train.py are the defaults, because the release produced the paper's numbers (its Cora
run: 74.48 ACC over 10 seeds, paper 73.88; with both off, zoo's earlier default, 68.94):
``accumulate_grad_across_epochs=True`` (no ``zero_grad`` in its loop: each step uses the sum of all gradients so far)
and ``skip_first_cluster=True`` (its loop over consecutive sorted cluster ids never visits the smallest-id
high-confidence cluster; L_pos is still divided by K). Set both to ``False`` for the paper's form (Eq. of §3: every
cluster, a fresh gradient per step).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info

from zoo.errors import UserError, check_choice, check_fits_data, check_positive
from zoo.models.ccgc.metrics import clustering_scores
from zoo.models.ccgc.model import SiameseEncoders
from zoo.models.ccgc.sizes import DEFAULT, SIZES
from zoo.sizes import net_args

log = logging.getLogger(__name__)

METRICS = ("acc", "nmi", "ari", "f1")


# ------------------------------------------------------------------------------------------------ objective
def warmup_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """mean over the N×N entries of (Z1 Z2ᵀ − I)², without forming the N×N matrix when N > d:
    ‖Z1 Z2ᵀ‖_F² = ⟨Z1ᵀZ1, Z2ᵀZ2⟩ (d×d Gram matrices) and tr(Z1 Z2ᵀ) = Σ_i ⟨z1_i, z2_i⟩."""
    n = z1.shape[0]
    if n > z1.shape[1]:
        sq = ((z1.T @ z1) * (z2.T @ z2)).sum()
    else:
        sq = (z1 @ z2.T).square().sum()
    return (sq - 2 * (z1 * z2).sum() + n) / (n * n)


def high_confidence_mask(distances: torch.Tensor, threshold: float) -> torch.Tensor:
    """Nodes whose distance to their own centre is below the value at position ⌊N·τ⌋ of the sorted distances."""
    n = distances.numel()
    pos = min(int(n * threshold), n - 1)
    cut = torch.sort(distances).values[pos]
    return distances < cut


def cluster_guided_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    pseudo_labels: torch.Tensor,
    confident: torch.Tensor,
    num_clusters: int,
    alpha: float = 0.5,
    pos_ratio: float = 0.8,
    skip_first_cluster: bool = False,
    generator: torch.Generator | None = None,
):
    """(L, L_pos, L_neg), or None when the step has to be skipped (fewer than 2 confident clusters, or L_pos = 0).

    ``pseudo_labels`` (N,) K-means ids; ``confident`` (N,) bool. Sampling uses ``generator`` (the global RNG if None).
    """
    idx = confident.nonzero().squeeze(1)
    labels = pseudo_labels[idx]
    clusters = torch.unique(labels)  # sorted
    if clusters.numel() < 2:
        return None
    if skip_first_cluster:  # official quirk: the loop over consecutive sorted ids never visits the first one
        clusters = clusters[1:]
    pos = z1.new_zeros(())
    c1, c2 = [], []
    for k in clusters.tolist():
        members = idx[labels == k]
        m = int(members.numel() * pos_ratio)
        a = members[torch.randperm(members.numel(), generator=generator)[:m].to(members.device)]
        b = members[torch.randperm(members.numel(), generator=generator)[:m].to(members.device)]
        pos = pos + (2 - 2 * (z1[a] * z2[b]).sum(1)).sum()
        c1.append(z1[members].mean(0))
        c2.append(z2[members].mean(0))
    pos = pos / num_clusters
    if pos.item() == 0:
        return None
    s = F.normalize(torch.stack(c1), dim=1) @ F.normalize(torch.stack(c2), dim=1).T
    s = s - torch.diag_embed(torch.diagonal(s))
    neg = s.square().mean()
    return pos + alpha * neg, pos, neg


def kmeans(x: torch.Tensor, num_clusters: int, n_init: int = 10, seed: int | None = None, impl: str = "sklearn"):
    """K-means on rows of ``x`` -> (labels (N,) int64, squared distance of each row to its own centre (N,)).

    ``impl="sklearn"``: scikit-learn (k-means++, ``n_init`` restarts, best inertia). ``impl="official"``: the
    official kmeans_gpu.py rule in torch — 20 random draws of K rows as initial centres, keep the draw with the smallest
    summed squared distance of all rows to all its centres, then Lloyd iterations until the squared total centre shift
    is below 1e-4 (at most 500); one run, no restarts (a noisier clustering than scikit-learn's best of ``n_init``).
    """
    if impl == "official":
        return _kmeans_official(x.detach().float().cpu(), num_clusters, seed)
    check_choice("kmeans impl", impl, ("sklearn", "official"), where="ccgc.kmeans")
    from sklearn.cluster import KMeans

    data = x.detach().cpu().float().numpy()
    km = KMeans(n_clusters=num_clusters, n_init=n_init, random_state=seed)
    labels = km.fit_predict(data)
    dist = ((data - km.cluster_centers_[labels]) ** 2).sum(1)
    return torch.from_numpy(labels.astype(np.int64)), torch.from_numpy(dist.astype(np.float32))


def _kmeans_official(x: torch.Tensor, k: int, seed: int | None):
    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    best, best_sum = None, float("inf")
    for _ in range(20):
        centres = x[torch.randperm(x.shape[0], generator=gen)[:k]]
        total = float(torch.cdist(x, centres).square().sum())
        if total < best_sum:
            best, best_sum = centres, total
    centres = best.clone()
    for _ in range(501):
        dist = torch.cdist(x, centres).square()
        labels = dist.argmin(1)
        previous = centres.clone()
        for c in range(k):
            members = labels == c
            if members.any():  # an empty cluster keeps its centre (the official code would produce NaN)
                centres[c] = x[members].mean(0)
        if float((centres - previous).norm(dim=1).sum()) ** 2 < 1e-4:
            break
    return labels, dist.gather(1, labels[:, None]).squeeze(1)


# ------------------------------------------------------------------------------------------------ module
class CCGCModule(LightningModule):
    """CCGC on one graph (full batch). ``forward(X̃)`` returns the fused embedding E (N, dims).

    Args:
        size: a graph of ``sizes.SIZES`` (``cora``, ``citeseer``, ``bat``, ``eat``): the encoders' ``in_features``
            (the graph's attribute dimension d) and ``dims`` (500).
        net: overrides of :class:`~zoo.models.ccgc.model.SiameseEncoders`' arguments (``in_features``, ``dims``).
        num_clusters: K, the number of classes (Cora 7, CiteSeer 6, BAT/EAT/UAT 4).
        lr, weight_decay: Adam (official 1e-4, 0).
        threshold: τ, fraction of nodes taken as high-confidence (official default 0.5).
        alpha: weight of L_neg (official 0.5).
        warmup_epochs: epochs of each run trained with the warm-up loss (official: epochs 0…50 -> 51).
        pos_ratio: fraction of each confident cluster sampled as positives (0.8).
        epochs: epochs of the run (official 400); ``trainer.max_epochs`` is set to it.
        eval_every: re-clustering / evaluation period in epochs (official 10).
        kmeans_n_init: scikit-learn K-means restarts at each evaluation.
        kmeans_impl: ``sklearn`` (default) or ``official`` (the official kmeans_gpu.py rule, see :func:`kmeans`).
        accumulate_grad_across_epochs, skip_first_cluster: the official train.py's behaviour, on by default (module
            docstring); ``False`` for the paper's form (zoo's earlier default).
    """

    def __init__(
        self,
        size: str = DEFAULT,
        net: dict[str, Any] | None = None,
        num_clusters: int = 7,
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        threshold: float = 0.5,
        alpha: float = 0.5,
        warmup_epochs: int = 51,
        pos_ratio: float = 0.8,
        epochs: int = 400,
        eval_every: int = 10,
        kmeans_n_init: int = 10,
        kmeans_impl: str = "sklearn",
        accumulate_grad_across_epochs: bool = True,
        skip_first_cluster: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        where = "CCGCModule"
        if not 0 < threshold <= 1:
            raise UserError(
                f"{where}: threshold (τ) must be in (0, 1], got {threshold!r}; set model.init_args."
                "threshold to the fraction of nodes taken as high-confidence (official 0.5)."
            )
        if not 0 < pos_ratio <= 1:
            raise UserError(
                f"{where}: pos_ratio must be in (0, 1], got {pos_ratio!r}; set model.init_args.pos_ratio "
                "to the fraction of a confident cluster sampled as positives (official 0.8)."
            )
        check_positive(
            "num_clusters",
            num_clusters,
            minimum=2,
            where=where,
            fix="set model.init_args.num_clusters to the graph's number of classes (Cora 7)",
        )
        check_positive("epochs", epochs, where=where)
        check_positive("eval_every", eval_every, where=where)
        check_positive("kmeans_n_init", kmeans_n_init, where=where)
        check_positive("warmup_epochs", warmup_epochs, minimum=0, where=where)
        check_choice("kmeans_impl", kmeans_impl, ("sklearn", "official"), where=where)
        self.net_args = net_args(SIZES, size, net, where=where, allowed={"in_features", "dims"})
        check_positive(
            "net.in_features",
            self.net_args["in_features"],
            where=where,
            fix="set model.init_args.net.in_features to the graph's attribute dimension (Cora 1433)",
        )
        check_positive("net.dims", self.net_args["dims"], where=where)
        if lr < 0 or weight_decay < 0:
            raise UserError(
                f"{where}: lr and weight_decay must be >= 0, got {lr!r} and {weight_decay!r}; set "
                "model.init_args.lr / weight_decay to non-negative values (official 1e-4, 0)."
            )
        self.automatic_optimization = False  # the official loop: optional zero_grad, backward, step; skips skip
        self.model = SiameseEncoders(**self.net_args)
        self.example_input_array = torch.randn(8, self.net_args["in_features"])
        self.pseudo_labels: torch.Tensor | None = None
        self.distances: torch.Tensor | None = None
        self.best: dict | None = None  # protocol (a): the best-ACC evaluation so far
        self.history: list[dict] = []  # every evaluation of the run
        self.result: dict | None = None  # {"best", "last", "history"} once the run has finished
        self._batch = None
        self._rng: torch.Generator | None = None

    def setup(self, stage: str) -> None:
        # the encoders' first layer is sized by in_features: a graph with other attributes fails mid-step otherwise
        in_features = self.net_args["in_features"]
        check_fits_data(self, "net.in_features", in_features, "num_features", what="attributes per node")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.embed(x)

    # -------------------------------------------------------------- the run
    def on_fit_start(self):
        if self.trainer.max_epochs != self.hparams.epochs:
            rank_zero_info(
                f"CCGC: one run of {self.hparams.epochs} epochs -> trainer.max_epochs = "
                f"{self.hparams.epochs} (was {self.trainer.max_epochs})"
            )
            self.trainer.fit_loop.max_epochs = self.hparams.epochs
        # the run's own RNG (K-means seeds, positive sampling), drawn from the global seed
        self._rng = torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        self.model.zero_grad(set_to_none=True)
        self.pseudo_labels = self.distances = self.best = self.result = None
        self.history = []

    # -------------------------------------------------------------- clustering + evaluation
    def _kmeans_seed(self) -> int:
        # drawn from the run's RNG so that the run's seed fixes the whole run
        return int(torch.randint(0, 2**31 - 1, (1,), generator=self._rng).item())

    def _evaluate(self, emb: torch.Tensor, y: torch.Tensor, epoch: int, scheduled: bool = True) -> dict:
        labels, dist = kmeans(
            emb, self.hparams.num_clusters, self.hparams.kmeans_n_init, self._kmeans_seed(), self.hparams.kmeans_impl
        )
        out = {"epoch": epoch, **clustering_scores(labels, y.cpu())}
        self.history.append(out)
        if scheduled:  # the official schedule: these become the pseudo-labels and candidates of protocol (a)
            self.pseudo_labels, self.distances = labels.to(emb.device), dist.to(emb.device)
            if self.best is None or out["acc"] >= self.best["acc"]:
                self.best = dict(out)
        return out

    # -------------------------------------------------------------- training
    def training_step(self, batch, batch_idx):
        x, y = batch["x"], batch["y"]
        self._batch = (x, y)
        epoch = self.current_epoch
        if self.pseudo_labels is None:
            # the official run starts with K-means on X̃: first pseudo-labels and first candidate of protocol (a)
            init = self._evaluate(x, y, epoch=-1)
            self.log_dict({f"init/{k}": init[k] for k in METRICS}, on_epoch=True, on_step=False)
        z1, z2 = self.model(x)
        if epoch < self.hparams.warmup_epochs:
            loss = warmup_loss(z1, z2)
            self.log("train/loss_warmup", loss, on_epoch=True, on_step=False)
        else:
            confident = high_confidence_mask(self.distances, self.hparams.threshold)
            out = cluster_guided_loss(
                z1,
                z2,
                self.pseudo_labels,
                confident,
                self.hparams.num_clusters,
                self.hparams.alpha,
                self.hparams.pos_ratio,
                self.hparams.skip_first_cluster,
                generator=self._rng,
            )
            if out is None:  # official `continue`: no backward, no step
                log.info("CCGC epoch %d skipped: fewer than two confident clusters", epoch)
                return None
            loss, pos, neg = out
            self.log_dict({"train/loss_pos": pos, "train/loss_neg": neg}, on_epoch=True, on_step=False)
        opt = self.optimizers()
        if not self.hparams.accumulate_grad_across_epochs:
            opt.zero_grad()
        # else: official quirk — gradients are never cleared, each step uses their running sum
        self.manual_backward(loss)
        opt.step()
        self.log("train/loss", loss, on_epoch=True, on_step=False, prog_bar=True)
        return loss

    @torch.no_grad()
    def on_train_epoch_end(self):
        if self._batch is None:
            return
        x, y = self._batch
        epoch = self.current_epoch
        scheduled = epoch % self.hparams.eval_every == 0
        final = epoch == self.hparams.epochs - 1
        if not (scheduled or final):
            return
        was_training = self.training
        self.eval()
        out = self._evaluate(self(x), y, epoch=epoch, scheduled=scheduled)
        self.train(was_training)
        self.log_dict({f"eval/{k}": out[k] for k in METRICS}, prog_bar=True)
        self.log_dict({f"eval/best_{k}": self.best[k] for k in METRICS})
        if final:
            self.result = {"best": dict(self.best), "last": dict(out), "history": list(self.history)}
            self.log_dict({f"run/best_{k}": self.best[k] for k in METRICS})
            self.log_dict({f"run/last_{k}": out[k] for k in METRICS})
            rank_zero_info(
                f"CCGC: best-ACC epoch {self.best['epoch']}: "
                + ", ".join(f"{k} {100 * self.best[k]:.2f}" for k in METRICS)
                + " | final epoch: "
                + ", ".join(f"{k} {100 * out[k]:.2f}" for k in METRICS)
            )

    # -------------------------------------------------------------- evaluation outside the schedule
    def _score(self, batch, prefix: str):
        labels, _ = kmeans(self(batch["x"]), self.hparams.num_clusters, self.hparams.kmeans_n_init, self._kmeans_seed())
        scores = clustering_scores(labels, batch["y"].cpu())
        self.log_dict({f"{prefix}/{k}": scores[k] for k in METRICS})

    def validation_step(self, batch, batch_idx):
        """K-means on E and the metrics; leaves the pseudo-labels alone (the schedule owns them)."""
        self._score(batch, "val")

    def test_step(self, batch, batch_idx):
        self._score(batch, "test")

    def predict_step(self, batch, batch_idx):
        """Cluster assignments (K-means on E)."""
        labels, _ = kmeans(self(batch["x"]), self.hparams.num_clusters, self.hparams.kmeans_n_init, self._kmeans_seed())
        return labels

    def configure_optimizers(self):
        return torch.optim.Adam(self.model.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
