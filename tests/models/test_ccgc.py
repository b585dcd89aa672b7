"""CCGC: the Laplacian filter, the losses on hand-made examples, the metrics against scikit-learn, the quirk flags,
the multi-seed protocol inside one fit, and a short Cora fit that beats K-means on the raw features."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from zoo.data_modules.graphs import GraphClusteringDataModule, laplacian_smoothing, load_graph
from zoo.models.ccgc.metrics import clustering_scores, hungarian_match
from zoo.models.ccgc.module import (
    CCGCModule,
    cluster_guided_loss,
    high_confidence_mask,
    kmeans,
    warmup_loss,
)


def _trainer(epochs: int):
    import lightning.pytorch as pl

    return pl.Trainer(
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
    )


# ------------------------------------------------------------------------------------------------ filter
@pytest.mark.parametrize("t", [0, 1, 3])
def test_laplacian_smoothing_matches_dense(t):
    rng = np.random.default_rng(0)
    n, d = 12, 5
    a = (rng.random((n, n)) < 0.3).astype(np.float64)
    a = np.triu(a, 1)
    a = a + a.T
    a[2, 2] = a[5, 5] = 1  # self-loops in the input are dropped, then I is added back
    x = rng.standard_normal((n, d))
    a_nl = a - np.diag(np.diag(a))
    a_hat = a_nl + np.eye(n)
    d_is = np.diag(a_hat.sum(1) ** -0.5)
    lap = np.eye(n) - d_is @ a_hat @ d_is
    h = np.eye(n) - 1.0 * lap  # k = 1
    want = np.linalg.matrix_power(h, t) @ x
    got = laplacian_smoothing(sp.csr_matrix(a), x, t)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_laplacian_smoothing_rejects_negative_t():
    with pytest.raises(ValueError, match="t .* must be >= 0"):
        laplacian_smoothing(sp.eye(3, format="csr"), np.ones((3, 2)), -1)


# ------------------------------------------------------------------------------------------------ losses
@pytest.mark.parametrize("n,d", [(7, 4), (4, 7)])
def test_warmup_loss_is_mse_to_identity(n, d):
    torch.manual_seed(0)
    z1, z2 = F.normalize(torch.randn(n, d), dim=1), F.normalize(torch.randn(n, d), dim=1)
    want = F.mse_loss(z1 @ z2.T, torch.eye(n))
    torch.testing.assert_close(warmup_loss(z1, z2), want)


def _two_clusters(n_a=5, n_b=5):
    """Cluster 0: z1 = e1, z2 = e1 (aligned); cluster 1: z1 = e2, z2 = (e2 + e3)/√2 (45° apart)."""
    e = torch.eye(3)
    z1 = torch.cat([e[0].repeat(n_a, 1), e[1].repeat(n_b, 1)])
    z2 = torch.cat([e[0].repeat(n_a, 1), ((e[1] + e[2]) / math.sqrt(2)).repeat(n_b, 1)])
    labels = torch.tensor([0] * n_a + [1] * n_b)
    return z1, z2, labels


def test_cluster_guided_loss_hand_made_two_clusters():
    z1, z2, labels = _two_clusters()
    conf = torch.ones(10, dtype=torch.bool)
    loss, pos, neg = cluster_guided_loss(z1, z2, labels, conf, num_clusters=2, alpha=0.5, pos_ratio=0.8)
    # positives: cluster 0 contributes 0; cluster 1: ⌊0.8·5⌋ = 4 pairs of 2 − 2cos45°; divided by K = 2
    torch.testing.assert_close(pos, torch.tensor(4 * (2 - math.sqrt(2)) / 2))
    # centres: C1 = [e1, e2], C2 = [e1, (e2+e3)/√2]; S = [[1, 0], [0, 1/√2]] -> off-diagonal zero -> L_neg = 0
    torch.testing.assert_close(neg, torch.tensor(0.0))
    torch.testing.assert_close(loss, pos)
    # a view-2 centre of cluster 1 that leans towards cluster 0 is penalised: S_10 = 1/√2 -> mean(S²) = 0.5 / 4
    z2b = z2.clone()
    z2b[5:] = (torch.eye(3)[0] + torch.eye(3)[1]) / math.sqrt(2)
    loss, pos, neg = cluster_guided_loss(z1, z2b, labels, conf, num_clusters=2, alpha=0.5)
    torch.testing.assert_close(neg, torch.tensor(0.125))
    torch.testing.assert_close(loss, pos + 0.5 * 0.125)


def test_cluster_guided_loss_skips_and_quirk():
    z1, z2, labels = _two_clusters()
    conf = torch.ones(10, dtype=torch.bool)
    # both clusters contribute: cluster 0's views 45° apart (2 − √2 per pair), cluster 1's 60° apart (1 per pair)
    e = torch.eye(3)
    z2q = torch.cat([((e[0] + e[2]) / math.sqrt(2)).repeat(5, 1), (0.5 * e[1] + math.sqrt(0.75) * e[2]).repeat(5, 1)])
    _, pos_all, neg_all = cluster_guided_loss(z1, z2q, labels, conf, num_clusters=2, skip_first_cluster=False)
    torch.testing.assert_close(pos_all, torch.tensor((4 * (2 - math.sqrt(2)) + 4 * 1.0) / 2))
    # release behaviour: the first (smallest-id) cluster is never visited, L_pos still divided by K = 2
    loss, pos, neg = cluster_guided_loss(z1, z2q, labels, conf, num_clusters=2, skip_first_cluster=True)
    torch.testing.assert_close(pos, torch.tensor(4 * 1.0 / 2))
    torch.testing.assert_close(loss, pos + 0.5 * neg)
    # L_neg also sees only the visited clusters: with a view-2 centre of cluster 1 leaning towards cluster 0's view-1
    # centre, all clusters give S = [[., 1/√2], [0, .]] -> mean(S²) = 0.5 / 4; the skipped loop keeps one centre per
    # view, S = [[0]] -> 0
    z2n = torch.cat([((e[0] + e[2]) / math.sqrt(2)).repeat(5, 1), ((e[0] + e[1]) / math.sqrt(2)).repeat(5, 1)])
    loss_all, pos_all, neg_all = cluster_guided_loss(z1, z2n, labels, conf, num_clusters=2, skip_first_cluster=False)
    torch.testing.assert_close(neg_all, torch.tensor(0.125))
    torch.testing.assert_close(pos_all, torch.tensor(8 * (2 - math.sqrt(2)) / 2))
    torch.testing.assert_close(loss_all, pos_all + 0.5 * 0.125)
    loss, pos, neg = cluster_guided_loss(z1, z2n, labels, conf, num_clusters=2, skip_first_cluster=True)
    torch.testing.assert_close(neg, torch.tensor(0.0))
    torch.testing.assert_close(pos, torch.tensor(4 * (2 - math.sqrt(2)) / 2))
    torch.testing.assert_close(loss, pos)
    # with cluster 0 aligned across views, skipping it changes nothing: 4 pairs of 2 − 2cos45° in cluster 1
    _, pos, _ = cluster_guided_loss(z1, z2, labels, conf, num_clusters=2, skip_first_cluster=True)
    torch.testing.assert_close(pos, torch.tensor(4 * (2 - math.sqrt(2)) / 2))
    # skipped: only one confident cluster
    only_a = labels == 0
    assert cluster_guided_loss(z1, z2, labels, only_a, num_clusters=2) is None
    # skipped: L_pos = 0 (both clusters aligned across views)
    assert cluster_guided_loss(z1, z1, labels, conf, num_clusters=2) is None


def test_cluster_guided_loss_gradients_pull_positives_together():
    torch.manual_seed(0)
    w = torch.randn(10, 3, requires_grad=True)
    z1, z2, labels = _two_clusters()
    loss, _, _ = cluster_guided_loss(
        F.normalize(z1 + 0.1 * w, dim=1), z2, labels, torch.ones(10, dtype=torch.bool), num_clusters=2
    )
    loss.backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0


def test_high_confidence_mask():
    dist = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7, 0.2])
    # τ = 0.5: the value at position ⌊6·0.5⌋ = 3 of the sorted distances is 0.5 -> keep those below it
    assert high_confidence_mask(dist, 0.5).tolist() == [False, True, False, True, False, True]
    assert high_confidence_mask(dist, 1.0).sum() == 5  # position clipped to N − 1


# ------------------------------------------------------------------------------------------------ metrics
def _best_permutation_acc(y, p, k):
    best = 0.0
    for perm in itertools.permutations(range(k)):
        best = max(best, float((np.array(perm)[p] == y).mean()))
    return best


@pytest.mark.parametrize("seed", range(5))
def test_metrics_against_sklearn(seed):
    from sklearn.metrics import adjusted_rand_score, f1_score, normalized_mutual_info_score

    rng = np.random.default_rng(seed)
    k = 4
    y = rng.integers(0, k, 200)
    p = np.where(rng.random(200) < 0.6, (y + 1) % k, rng.integers(0, k, 200))  # a relabelled, noisy clustering
    got = clustering_scores(torch.from_numpy(p), torch.from_numpy(y))
    assert got["acc"] == pytest.approx(_best_permutation_acc(y, p, k))
    assert got["nmi"] == pytest.approx(normalized_mutual_info_score(y, p, average_method="arithmetic"), abs=1e-5)
    assert got["ari"] == pytest.approx(adjusted_rand_score(y, p), abs=1e-5)
    mapped = hungarian_match(y, p)
    assert got["f1"] == pytest.approx(f1_score(y, mapped, average="macro"))


def test_metrics_perfect_relabelling_and_fewer_clusters():
    y = np.array([0, 0, 1, 1, 2, 2])
    assert clustering_scores(torch.tensor([2, 2, 0, 0, 1, 1]), torch.from_numpy(y))["acc"] == 1.0
    # two clusters for three classes: one class can never be matched
    assert clustering_scores(torch.tensor([0, 0, 1, 1, 1, 1]), torch.from_numpy(y))["acc"] == pytest.approx(4 / 6)


@pytest.mark.parametrize("impl", ["sklearn", "official"])
def test_kmeans_distances_are_to_own_centre(impl):
    torch.manual_seed(0)
    x = torch.cat([torch.randn(20, 2) * 0.1, torch.randn(20, 2) * 0.1 + 5])
    labels, dist = kmeans(x, 2, n_init=3, seed=0, impl=impl)
    assert clustering_scores(labels, torch.tensor([0] * 20 + [1] * 20))["acc"] == 1.0
    centres = torch.stack([x[labels == c].mean(0) for c in range(2)])
    torch.testing.assert_close(dist, ((x - centres[labels]) ** 2).sum(1), rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------ module
def test_module_checks_arguments():
    from zoo.errors import UserError

    bad = [
        ({"threshold": 0.0}, "threshold"),
        ({"num_clusters": 1}, "num_clusters"),
        ({"kmeans_impl": "faiss"}, "kmeans_impl"),
        ({"pos_ratio": 1.5}, "pos_ratio"),
        ({"epochs": 0}, "epochs"),
        ({"eval_every": 0}, "eval_every"),
        ({"lr": -1.0}, "lr"),
        ({"net": {"in_features": 4, "dims": 0}}, "net.dims"),
        ({"net": {"in_features": 0}}, "in_features"),
        ({"net": {"in_features": 4, "width": 8}}, "'width', which the network does not take"),
        ({"size": "pubmed"}, "unknown size 'pubmed'; choose one of bat, citeseer, cora, eat"),
    ]
    for kwargs, name in bad:
        with pytest.raises(UserError, match=name) as err:
            CCGCModule(**{"net": {"in_features": 4}, **kwargs})
        assert "\n" not in str(err.value), err.value
    with pytest.raises(UserError, match="kmeans impl"):
        kmeans(torch.zeros(4, 2), 2, impl="faiss")
    with pytest.raises(TypeError, match="seeds"):  # the multi-seed loop is gone: one fit is one seed
        CCGCModule(net={"in_features": 4}, seeds=[0, 1])


def test_defaults_follow_the_release():
    """The release's loop (no zero_grad, first confident cluster skipped) is the default; the paper's form is the
    switch. The shipped configs state the same."""
    from pathlib import Path

    hp = CCGCModule(net={"in_features": 4}).hparams
    assert hp.accumulate_grad_across_epochs is True and hp.skip_first_cluster is True
    for cfg in sorted(Path(__file__).resolve().parents[2].glob("configs/ccgc-*.yaml")):
        text = cfg.read_text()
        assert "accumulate_grad_across_epochs: true" in text and "skip_first_cluster: true" in text, cfg


def test_accumulate_grad_quirk():
    """lr = 0 keeps the weights fixed, so every warm-up step has the same gradient g: with the official quirk the
    gradient after 3 epochs is 3g, without it g."""
    import lightning.pytorch as pl

    grads = {}
    for quirk in (False, True):
        pl.seed_everything(0, verbose=False)
        dm = GraphClusteringDataModule(root=None, t=2)
        m = CCGCModule(
            net={"in_features": 34, "dims": 8},
            num_clusters=2,
            lr=0.0,
            epochs=3,
            eval_every=10,
            kmeans_n_init=1,
            accumulate_grad_across_epochs=quirk,
        )
        _trainer(3).fit(m, dm)
        grads[quirk] = m.model.encoder_1.weight.grad.clone()
    assert grads[False].abs().sum() > 0
    torch.testing.assert_close(grads[True], 3 * grads[False])


def test_one_fit_is_one_seeded_run():
    import lightning.pytorch as pl

    dm = GraphClusteringDataModule(root=None, t=4)
    hp = dict(
        net={"in_features": 34, "dims": 16},
        num_clusters=2,
        lr=1e-3,
        warmup_epochs=10,
        epochs=30,
        eval_every=10,
        kmeans_n_init=2,
    )
    results = []
    for seed in (1, 0, 1):
        pl.seed_everything(seed, verbose=False)
        m = CCGCModule(**hp)
        trainer = _trainer(5)  # overridden: one run of 30 epochs
        trainer.fit(m, dm)
        assert trainer.current_epoch == 30
        r = m.result
        epochs = [h["epoch"] for h in r["history"]]
        assert epochs == [-1, 0, 10, 20, 29], "initial K-means, every 10 epochs, and the final epoch"
        scheduled = [h for h in r["history"] if h["epoch"] != 29]
        assert r["best"]["acc"] == max(h["acc"] for h in scheduled) and r["last"]["epoch"] == 29
        assert trainer.callback_metrics["run/best_acc"] == pytest.approx(r["best"]["acc"])
        assert "run/last_nmi" in trainer.callback_metrics
        results.append((r["history"], m.model.encoder_2.weight.detach().clone()))
    # the global seed fixes the whole run (K-means seeds and positive sampling come from it)
    assert results[0][0] == results[2][0]
    torch.testing.assert_close(results[0][1], results[2][1])
    assert not torch.equal(results[0][1], results[1][1])


def test_short_cora_fit_beats_kmeans_on_raw_features(shared_data):
    torch.manual_seed(0)
    feat, labels, _ = load_graph("cora", shared_data / "cora")
    raw_labels, _ = kmeans(torch.from_numpy(feat), 7, n_init=3, seed=0)
    raw = clustering_scores(raw_labels, torch.from_numpy(labels))
    dm = GraphClusteringDataModule("cora", str(shared_data / "cora"))
    m = CCGCModule(size="cora", num_clusters=7, warmup_epochs=12, epochs=25, eval_every=10, kmeans_n_init=3)
    _trainer(25).fit(m, dm)
    last = m.result["last"]
    assert "train/loss_pos" in [k for k in m.trainer.callback_metrics]  # the cluster-guided phase ran
    assert last["acc"] > raw["acc"] + 0.15, (last, raw)
    assert last["nmi"] > raw["nmi"] + 0.1, (last, raw)
