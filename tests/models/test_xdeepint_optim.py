"""G-FTRL and FTRL-Proximal against hand-computed updates (official xdeepint/src/optimizer.py, TF FTRL)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.models.xdeepint.optim import FTRLProximal, GroupFTRL


def _step(opt, param, grad):
    param.grad = grad.clone()
    opt.step()


def test_group_ftrl_first_step_by_hand():
    # E = [[0.1, 0.2], [0.3, 0.4]], alpha 0.5, beta 1, lambda1 0.5, lambda2 1, d = 2; row 1 gets no gradient.
    E = torch.tensor([[0.1, 0.2], [0.3, 0.4]], dtype=torch.float64, requires_grad=True)
    opt = GroupFTRL([E], alpha=0.5, beta=1.0, lambda1=0.5, lambda2=1.0)
    _step(opt, E, torch.tensor([[2.0, -1.0], [0.0, 0.0]], dtype=torch.float64))
    # sigma = (sqrt(0 + g^2) - 0) / 0.5 = [4, 2];  n = [4, 1];  z = g - sigma * E = [2 - 0.4, -1 - 0.4] = [1.6, -1.4]
    # ||z|| = sqrt(4.52);  threshold 0.5 * sqrt(2) < ||z||
    #   ->  E = z (0.5 sqrt 2 / sqrt 4.52 - 1) / ((1 + sqrt n) / 0.5 + 1)
    scale = 0.5 * math.sqrt(2) / math.sqrt(4.52) - 1
    expected_row0 = [1.6 * scale / 7.0, -1.4 * scale / 5.0]  # denominators (1+2)/0.5+1 = 7 and (1+1)/0.5+1 = 5
    assert expected_row0 == pytest.approx([-0.1525497, 0.1868734], abs=1e-7)  # the numbers worked out by hand
    torch.testing.assert_close(E[0], torch.tensor(expected_row0, dtype=torch.float64))
    # An untouched row has z = 0 <= threshold: the dense reference update sets it to zero at the first step.
    assert torch.equal(E[1], torch.zeros(2, dtype=torch.float64))
    st = opt.state[E]
    torch.testing.assert_close(st["n"], torch.tensor([[4.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(st["z"], torch.tensor([[1.6, -1.4], [0.0, 0.0]], dtype=torch.float64))


def _gftrl_reference(E, grads, alpha, beta, l1, l2):
    """The spec's G-FTRL formulas, element by element in float64 numpy."""
    E = E.copy()
    n, z = np.zeros_like(E), np.zeros_like(E)
    d = E.shape[1]
    for g in grads:
        sigma = (np.sqrt(n + g**2) - np.sqrt(n)) / alpha
        n = n + g**2
        z = z + g - sigma * E
        for r in range(E.shape[0]):
            norm = np.sqrt((z[r] ** 2).sum())
            if norm <= l1 * math.sqrt(d):
                E[r] = 0.0
            else:
                E[r] = z[r] * (l1 * math.sqrt(d) / norm - 1) / ((beta + np.sqrt(n[r])) / alpha + l2)
    return E


@pytest.mark.parametrize("sparse", [False, True])
def test_group_ftrl_several_steps_match_formulas(sparse):
    rng = np.random.default_rng(0)
    E0 = rng.normal(size=(6, 4))
    grads = []
    for _ in range(4):
        g = rng.normal(size=(6, 4)) * 3
        g[rng.random(6) < 0.4] = 0.0  # rows absent from the batch
        grads.append(g)
    expected = _gftrl_reference(E0, grads, alpha=0.1, beta=1.0, l1=0.3, l2=0.5)
    E = torch.tensor(E0, requires_grad=True)
    opt = GroupFTRL([E], alpha=0.1, beta=1.0, lambda1=0.3, lambda2=0.5)
    for g in grads:
        gt = torch.tensor(g)
        _step(opt, E, gt.to_sparse(1) if sparse else gt)  # row-sparse, as nn.Embedding(sparse=True)
    torch.testing.assert_close(E.detach(), torch.tensor(expected))


def test_group_ftrl_strong_lambda1_zeroes_whole_rows_exactly():
    # Rows 0..4 are useful (target 2); the other 45 only see zero-mean noise: their accumulated gradient z stays
    # below lambda1 sqrt(d) and G-FTRL sets the whole row exactly to zero (feature selection).
    torch.manual_seed(0)
    emb = torch.nn.Embedding(50, 8)
    torch.nn.init.normal_(emb.weight, std=0.1)
    opt = GroupFTRL(emb.parameters(), alpha=0.1, beta=1.0, lambda1=20.0, lambda2=0.0)
    for _ in range(30):
        ids = torch.randint(0, 50, (256,))
        target = torch.where((ids < 5)[:, None], torch.full((256, 8), 2.0), 0.5 * torch.randn(256, 8))
        opt.zero_grad()
        ((emb(ids) - target) ** 2).sum().backward()
        opt.step()
    w = emb.weight.detach()
    zero_rows = (w == 0).all(dim=1)
    assert zero_rows.sum() >= 35, (
        f"strong lambda1 must drop most useless feature values, dropped {int(zero_rows.sum())}"
    )
    assert not zero_rows[:5].any(), "the useful rows survive"
    assert (w[:5] > 0.3).all()
    # group sparsity: a row is either entirely zero or has no zero entry
    assert ((w == 0).any(dim=1) & ~zero_rows).sum() == 0
    # the same data with lambda1 = 0 zeroes no row
    torch.manual_seed(0)
    emb0 = torch.nn.Embedding(50, 8)
    opt0 = GroupFTRL(emb0.parameters(), alpha=0.1, beta=1.0, lambda1=0.0, lambda2=0.0)
    ids = torch.arange(50)
    opt0.zero_grad()
    (emb0(ids) ** 2).sum().backward()
    opt0.step()
    assert not (emb0.weight == 0).all(dim=1).any()


def test_ftrl_proximal_first_step_by_hand():
    w = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    opt = FTRLProximal([w], lr=0.1, lr_power=-0.5, l1=0.1, l2=0.1, initial_accumulator=0.1)
    _step(opt, w, torch.tensor([1.0], dtype=torch.float64))
    # accum' = 0.1 + 1 = 1.1;  linear = 1 - (sqrt 1.1 - sqrt 0.1) / 0.1 * 0.5 = -2.6629054
    # w = (sign(linear) 0.1 - linear) / (sqrt 1.1 / 0.1 + 2 * 0.1) = 2.5629054 / 10.6880885 = 0.2397908
    linear = 1 - (math.sqrt(1.1) - math.sqrt(0.1)) / 0.1 * 0.5
    assert linear == pytest.approx(-2.6629054, abs=1e-7)
    expected = (-0.1 - linear) / (math.sqrt(1.1) / 0.1 + 0.2)
    assert expected == pytest.approx(0.2397908, abs=1e-7)
    assert w.item() == pytest.approx(expected, abs=1e-12)
    assert opt.state[w]["accum"].item() == pytest.approx(1.1)
    assert opt.state[w]["linear"].item() == pytest.approx(linear)


def _ftrl_reference(w, grads, lr, power, l1, l2, acc0):
    w = w.copy()
    accum, linear = np.full_like(w, acc0), np.zeros_like(w)
    for g in grads:
        new = accum + g**2
        linear = linear + g - (new ** (-power) - accum ** (-power)) / lr * w
        quad = new ** (-power) / lr + 2 * l2
        w = np.where(np.abs(linear) > l1, (np.sign(linear) * l1 - linear) / quad, 0.0)
        accum = new
    return w


@pytest.mark.parametrize("power", [-0.5, -0.3])
def test_ftrl_proximal_several_steps_match_tf_formulas(power):
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=(5, 3))
    grads = [rng.normal(size=(5, 3)) for _ in range(5)]
    expected = _ftrl_reference(w0, grads, lr=0.05, power=power, l1=0.2, l2=0.3, acc0=0.1)
    w = torch.tensor(w0, requires_grad=True)
    opt = FTRLProximal([w], lr=0.05, lr_power=power, l1=0.2, l2=0.3, initial_accumulator=0.1)
    for g in grads:
        _step(opt, w, torch.tensor(g))
    torch.testing.assert_close(w.detach(), torch.tensor(expected))


def test_ftrl_proximal_strong_l1_zeroes_entries():
    torch.manual_seed(0)
    x = torch.randn(256, 20)
    y = 3 * x[:, 0] - 2 * x[:, 1] + 0.1 * torch.randn(256)  # only two inputs matter

    def fit(l1):
        torch.manual_seed(0)
        lin = torch.nn.Linear(20, 1, bias=False)
        opt = FTRLProximal(lin.parameters(), lr=1.0, l1=l1, l2=0.0)
        for _ in range(200):
            opt.zero_grad()
            ((lin(x).squeeze(1) - y) ** 2).mean().backward()
            opt.step()
        return lin.weight.detach()[0]

    w = fit(20.0)
    assert (w[2:] == 0).all(), "irrelevant weights are pruned exactly"
    assert abs(w[0] - 3) < 0.05 and abs(w[1] + 2) < 0.05
    assert (fit(0.0)[2:] != 0).all(), "without l1 nothing is exactly zero"


def test_optimizer_argument_errors():
    p = torch.nn.Parameter(torch.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        GroupFTRL([p])
    with pytest.raises(ValueError, match="lr_power"):
        FTRLProximal([p], lr_power=0.5)
    with pytest.raises(ValueError, match="alpha"):
        GroupFTRL([torch.nn.Parameter(torch.zeros(2, 2))], alpha=0)
