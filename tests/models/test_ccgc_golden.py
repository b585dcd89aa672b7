"""CCGC golden tests: zoo's Laplacian smoothing, Siamese encoders, warm-up loss, high-confidence selection, positive /
negative losses and the release's training step (gradients accumulated across epochs, first confident cluster skipped)
against xihongyang1999/CCGC's train.py run unchanged on the BAT graph with the same weights and the same random draws
(tests/fixtures/ccgc/README.md says how the fixture was made)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from zoo.data_modules.graphs import laplacian_smoothing
from zoo.models.ccgc.model import SiameseEncoders
from zoo.models.ccgc.module import CCGCModule, cluster_guided_loss, high_confidence_mask, warmup_loss

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ccgc" / "ccgc_official.safetensors"
N, D_IN, DIMS, K = 131, 81, 16, 4  # BAT, --dims 16, --cluster_num 4


@pytest.fixture(scope="module")
def official():
    from safetensors.torch import load_file

    return load_file(FIXTURE)


def close(name, got, want, rtol=1e-5, atol=1e-6):
    print(f"{name}: max |Δ| zoo vs release = {(got.detach() - want).abs().max().item():.2e}")
    torch.testing.assert_close(got.detach(), want, rtol=rtol, atol=atol)


def _encoders(official, prefix="init"):
    enc = SiameseEncoders(D_IN, DIMS)
    enc.load_state_dict({k[len(prefix) + 1 :]: v for k, v in official.items() if k.startswith(prefix + ".")})
    return enc


def _flat_params(enc):
    return torch.cat([p.detach().flatten() for p in enc.parameters()])


def _flat_grads(enc):
    return torch.cat([p.grad.flatten() for p in enc.parameters()])


def test_laplacian_smoothing_matches_the_release(official):
    """H^4 X on BAT (71 self-loops in the released adjacency, dropped before Â = A + I); the release computes in float64
    and casts to float32."""
    rows, cols = official["adj_edges"].numpy()
    adj = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=(N, N))
    close("H^t X", laplacian_smoothing(adj, official["features"].numpy(), t=4), official["smooth_fea"])


def test_encoders_and_warmup_loss_match_the_release(official):
    """Z1, Z2 of the two unshared encoders (Encoder_Net, weights mapped layers1 -> encoder_1, layers2 -> encoder_2), the
    warm-up loss mse(Z1 Z2ᵀ, I) over all 131 nodes (zoo's Gram-matrix branch, N > dims) and over the first 8 nodes (the
    direct branch), and the gradients of the first (warm-up) step."""
    enc = _encoders(official)
    z1, z2 = enc(official["smooth_fea"])
    close("Z1", z1, official["warmup.z1"])
    close("Z2", z2, official["warmup.z2"])
    loss = warmup_loss(z1, z2)
    close("L_warm (N=131)", loss, official["warmup.loss"])
    close("L_warm (N=8)", warmup_loss(z1[:8], z2[:8]), official["warmup8.loss"])
    loss.backward()
    close("grad L_warm", _flat_grads(enc), official["warmup.grads"])


def test_high_confidence_selection_matches_the_release(official):
    """For the release's K-means result (labels, N×K distances to the centres) the same 65 of 131 nodes are selected."""
    dist = official["kmeans.dis"].min(dim=1).values
    assert torch.equal(official["kmeans.dis"].argmin(1), official["kmeans.labels"])
    mask = high_confidence_mask(dist, threshold=0.5)
    assert torch.equal(mask.nonzero().squeeze(1), official["cluster.high_confidence_idx"].sort().values)


def _replay_draws(official, confident, labels, skip_first_cluster=True):
    """torch.randperm stand-in returning, per call, the permutation that makes zoo pick the release's np.random.choice
    draws (in the release's order: view 1 then view 2, per cluster in increasing id)."""
    idx = confident.nonzero().squeeze(1)
    clusters = torch.unique(labels[idx]).tolist()
    clusters = clusters[1:] if skip_first_cluster else clusters
    perms = []
    for j, k in enumerate(clusters):
        members = idx[labels[idx] == k]
        for view in range(2):
            drawn = official[f"cluster.draw.{2 * j + view}"]
            first = torch.searchsorted(members, drawn)
            assert torch.equal(members[first], drawn)
            rest = torch.tensor([i for i in range(members.numel()) if i not in set(first.tolist())], dtype=torch.long)
            perms.append(torch.cat([first, rest]))
    calls = iter(perms)

    def randperm(n, generator=None, **kwargs):
        perm = next(calls)
        assert perm.numel() == n
        return perm

    return randperm


def test_cluster_guided_step_matches_the_release(official, monkeypatch):
    """The release's loop for one seed: epoch 0 (warm-up step with Adam lr 1e-4, then K-means), epoch 51 (first
    cluster-guided step). Compared: the parameters after step 1, Z1/Z2 at epoch 51, L_pos, L_neg, L, the gradient the
    second Adam step sees (the release never zeroes gradients: g_warm + g_cluster) and the parameters after it."""
    module = CCGCModule(net={"in_features": D_IN, "dims": DIMS}, num_clusters=K)
    assert module.hparams.accumulate_grad_across_epochs and module.hparams.skip_first_cluster  # the release's loop
    module.model.load_state_dict(_encoders(official).state_dict())
    enc = module.model
    opt = module.configure_optimizers()
    x = official["smooth_fea"]
    warmup_loss(*enc(x)).backward()
    opt.step()
    close("params after step 1", _flat_params(enc), official["step1.params_after"])

    z1, z2 = enc(x)
    close("Z1 (epoch 51)", z1, official["cluster.z1"])
    close("Z2 (epoch 51)", z2, official["cluster.z2"])
    labels = official["kmeans.labels"]
    confident = high_confidence_mask(official["kmeans.dis"].min(dim=1).values, module.hparams.threshold)
    monkeypatch.setattr(torch, "randperm", _replay_draws(official, confident, labels))
    loss, pos, neg = cluster_guided_loss(
        z1, z2, labels, confident, K, module.hparams.alpha, module.hparams.pos_ratio, module.hparams.skip_first_cluster
    )
    close("L_pos", pos, official["cluster.loss_pos"])
    close("L_neg", neg, official["cluster.loss_neg"])
    close("L", loss, official["cluster.loss"])
    loss.backward()  # no zero_grad: accumulate_grad_across_epochs=True
    close("accumulated grad", _flat_grads(enc), official["cluster.grads_accumulated"])
    opt.step()
    close("params after step 2", _flat_params(enc), official["step2.params_after"])


def test_paper_form_does_not_reproduce_the_release(official):
    """The switches' other settings (the paper's form) move away from the golden output: visiting the smallest-id
    confident cluster too changes L_neg (4×4 centre matrix instead of 3×3), and a fresh gradient per step
    (accumulate_grad_across_epochs=False) is not the gradient the release's second step sees."""
    labels = official["kmeans.labels"]
    confident = high_confidence_mask(official["kmeans.dis"].min(dim=1).values, 0.5)
    enc = _encoders(official, "init")
    opt = torch.optim.Adam(enc.parameters(), lr=1e-4)
    warmup_loss(*enc(official["smooth_fea"])).backward()
    opt.step()
    opt.zero_grad()
    z1, z2 = enc(official["smooth_fea"])
    gen = torch.Generator().manual_seed(0)
    loss, _, neg = cluster_guided_loss(z1, z2, labels, confident, K, skip_first_cluster=False, generator=gen)
    assert (neg - official["cluster.loss_neg"]).abs() > 1e-3
    loss.backward()
    assert (_flat_grads(enc) - official["cluster.grads_accumulated"]).abs().max() > 1e-3
