"""xDeepInt: the PIN recursion, subspace crossing, output layer, reference sizes, the Lightning module end to end and
the proof that it learns planted feature crosses that logistic regression cannot."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import zoo
from zoo.models.xdeepint.model import PINLayer, XDeepInt, from_subspaces, to_subspaces
from zoo.models.xdeepint.module import XDeepIntModule
from zoo.models.xdeepint.sizes import SIZES


def test_subspace_crossing_layout():
    x = torch.randn(2, 3, 8)  # B, F, K with h = 4 -> d = 2
    s = to_subspaces(x, 4)
    assert s.shape == (2, 2, 12)
    for i in range(4):  # column i*F + f = sub-vector i of field f (subspace-major, as the TF code)
        for f in range(3):
            torch.testing.assert_close(s[:, :, i * 3 + f], x[:, f, 2 * i : 2 * i + 2])
    torch.testing.assert_close(from_subspaces(s, 4), x)


def test_pin_layers_compute_the_residual_polynomial():
    torch.manual_seed(0)
    x0 = torch.randn(5, 2, 6, dtype=torch.float64)  # (B, d, F*h)
    layers = [PINLayer(6).double() for _ in range(3)]
    x = x0
    for layer in layers:
        x = layer(x, x0)
    # X_L = X0 o prod_l (1 + X0 W_l), with (X0 W)[:, :, j] = sum_i W[i, j] X0[:, :, i]  (W = linear.weight^T)
    expect = x0.clone()
    for layer in layers:
        W = layer.linear.weight.T
        expect = expect * (1 + torch.einsum("bdi,ij->bdj", x0, W))
    torch.testing.assert_close(x, expect)
    # optional activation applies to the aggregation: X o (1 + relu(X0 W))
    relu = PINLayer(6, activation="relu").double()
    torch.testing.assert_close(relu(x0, x0), x0 * (1 + torch.relu(x0 @ relu.linear.weight.T)))


def test_output_layer_and_padding():
    torch.manual_seed(0)
    m = XDeepInt([4, 3, 5], num_fields=3, embed_dim=4, num_layers=2, num_subspaces=2).double()
    ids = torch.tensor([[1, 0, 5], [4, 3, 0]])
    x0 = m.embedding(ids)
    assert torch.equal(x0[0, 1], torch.zeros(4, dtype=torch.float64)), "id 0 (missing/unseen) embeds to zero"
    o = m.interactions(x0)
    w, b = m.output.weight[0], m.output.bias[0]
    logit = (o * w[None, :, None]).sum((1, 2)) + 4 * b  # sum_k (sum_f w_f O[f, k] + b)
    torch.testing.assert_close(m(ids), logit)
    m(ids).sum().backward()
    assert torch.equal(m.embedding.table.weight.grad[0], torch.zeros(4, dtype=torch.float64))
    # one table: row 0 = padding, field 0 -> rows 1..4, field 1 -> rows 5..7, field 2 -> rows 8..12
    assert m.embedding.global_ids(ids).tolist() == [[1, 0, 12], [4, 7, 0]]


def test_h1_is_vector_wise_h_equal_k_is_bit_wise():
    """h = 1: every interaction is vector-wise, so permuting the K coordinates of all embeddings at once leaves the
    logit unchanged; h = K crosses different coordinates (bit-wise), which breaks that symmetry."""
    torch.manual_seed(0)
    perm = torch.randperm(8)
    for h, invariant in ((1, True), (8, False)):
        m = XDeepInt([6] * 4, num_fields=4, embed_dim=8, num_layers=3, num_subspaces=h).double()
        ids = torch.randint(1, 7, (16, 4))
        x0 = m.embedding(ids)
        logit = lambda e: m.output(m.interactions(e).transpose(1, 2)).squeeze(-1).sum(-1)  # noqa: E731
        same = torch.allclose(logit(x0), logit(x0[..., perm]))
        assert same == invariant, h


def test_reference_configuration_sizes():
    with torch.device("meta"):
        m = XDeepInt(vocab_sizes=[64] * 12 + [1000] * 26, **SIZES["criteo"])
    assert m.num_fields == 38 and len(m.pin) == 4
    assert all(layer.linear.weight.shape == (608, 608) for layer in m.pin)
    n_pin = sum(p.numel() for n, p in m.named_parameters() if not n.startswith("embedding"))
    assert n_pin == 4 * 608 * 608 + 38 + 1 == 1_478_695
    assert m.embedding.table.weight.shape == (1 + 12 * 64 + 26 * 1000, 16)
    with torch.device("meta"):
        mod = zoo.create("xdeepint-criteo")
    assert sum(p.numel() for p in mod.model.parameters()) == zoo.registry.get("xdeepint-criteo").params
    with pytest.raises(ValueError, match="divisible"):
        XDeepInt(None, num_fields=3, embed_dim=16, num_subspaces=3)


def test_module_refuses_unknown_size_and_net_override():
    from zoo.errors import UserError

    for kwargs, match in (
        ({"size": "criteo-large"}, "unknown size 'criteo-large'; choose one of avazu, criteo"),
        ({"net": {"hidden": 8}}, "'hidden', which the network does not take"),
        ({"net": {"num_subspaces": 3}}, "net.num_subspaces=3 must divide net.embed_dim=16"),
        ({"net": {"vocab_sizes": [3, 4]}}, "net.vocab_sizes has 2 entries but net.num_fields=38"),
        ({"optimizer": "sgd"}, "unknown optimizer 'sgd'"),
    ):
        with pytest.raises(UserError, match=match) as err:
            XDeepIntModule(**kwargs)
        assert "\n" not in str(err.value)
    m = XDeepIntModule(size="avazu", net={"num_layers": 2})
    assert m.model.num_fields == 23 and len(m.model.pin) == 2 and m.model.embedding is None


def _trainer(**kw):
    import lightning as L

    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        accelerator="cpu",
        **kw,
    )


def test_module_fits_from_data_and_round_trips(tmp_path):
    from zoo.data_modules.ctr import CTRDataModule
    from zoo.hub import export

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    dm = CTRDataModule(
        "criteo",
        root=None,
        cache_dir=str(tmp_path / "data"),
        synthetic_rows=3000,
        min_count=3,
        batch_size=256,
        eval_batch_size=1000,
    )
    m = XDeepIntModule(net={"embed_dim": 4, "num_layers": 2, "num_subspaces": 2}, gftrl_lambda1=1.0, gftrl_lambda2=1.0)
    assert m.model.embedding is None
    trainer = _trainer(max_epochs=1)
    trainer.fit(m, dm)
    assert m.hparams.net["vocab_sizes"] == dm.vocab_sizes, (
        "sized from the data module and saved in the hyper-parameters"
    )
    assert trainer.global_step == 2 * 10, "two optimisers stepped on each of the 10 batches"
    res = trainer.validate(m, dm, verbose=False)[0]
    # the logged metrics agree with scikit-learn on the same predictions
    from sklearn.metrics import log_loss, roc_auc_score

    ids, y = dm.split("test")[0]
    with torch.no_grad():
        p = m.eval()(ids).double().numpy()
    ctr = y.double().mean().item()
    assert res["val/auc"] == pytest.approx(roc_auc_score(y.numpy(), p), abs=1e-5)
    assert res["val/logloss"] == pytest.approx(log_loss(y.numpy(), p), abs=1e-5)
    entropy = -(ctr * np.log(ctr) + (1 - ctr) * np.log(1 - ctr))
    assert res["val/nce"] == pytest.approx(log_loss(y.numpy(), p) / entropy, abs=1e-5)
    sp = m.sparsity()
    assert res["val/feature_sparsity"] == pytest.approx(sp["feature_sparsity"]) and 0 < sp["feature_sparsity"] < 1
    w = torch.cat([layer.linear.weight.flatten() for layer in m.model.pin])
    assert sp["interaction_sparsity"] == pytest.approx((w == 0).float().mean().item())
    folder = export(m, tmp_path / "hub", name="xdeepint-criteo")
    loaded = zoo.load(f"local-dir:{folder}")
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids), m.eval()(ids))
    with pytest.raises(ValueError, match="num_fields"):
        _trainer(max_epochs=1).fit(XDeepIntModule(net={"num_fields": 5, "embed_dim": 4, "num_subspaces": 2}), dm)


def test_adam_option_trains():
    torch.manual_seed(0)
    m = XDeepIntModule(
        net={"vocab_sizes": [3, 4], "num_fields": 2, "embed_dim": 4, "num_subspaces": 2},
        optimizer="adam",
        adam_lr=0.05,
        loss_reduction="mean",
    )
    opt = m.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam)
    ids = torch.tensor([[1, 1], [2, 3], [3, 4], [1, 2]] * 8)
    y = torch.tensor([1.0, 0.0, 1.0, 0.0] * 8)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = m._loss(m.model(ids), y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.5 * first


def _onehot(ids, vocab_sizes):
    import scipy.sparse as sp

    off = np.concatenate([[0], np.cumsum(np.asarray(vocab_sizes) + 1)[:-1]])
    cols = (ids + off).ravel()
    rows = np.repeat(np.arange(len(ids)), ids.shape[1])
    return sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(ids), int(off[-1] + vocab_sizes[-1] + 1)))


def test_learns_planted_crosses_that_logistic_regression_cannot(tmp_path):
    """Synthetic Criteo-format data whose labels come from 2nd- and 3rd-order crosses: xDeepInt (trained with the
    paper's combined FTRL) beats logistic regression on the same one-hot features by a clear margin. LR gets the
    best of three regularisation strengths on the test split itself (generous to the baseline)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    from zoo.data_modules.ctr import CTRDataModule

    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    torch.set_num_threads(1)
    dm = CTRDataModule(
        "criteo",
        root=None,
        cache_dir=str(tmp_path),
        synthetic_rows=30_000,
        min_count=5,
        batch_size=512,
        eval_batch_size=4096,
    )
    m = XDeepIntModule(
        net={"embed_dim": 8, "num_layers": 3, "num_subspaces": 4},
        gftrl_alpha=0.1,
        gftrl_lambda1=1.0,
        gftrl_lambda2=1.0,
        ftrl_lr=0.1,
    )
    trainer = _trainer(max_epochs=3, limit_val_batches=0)
    trainer.fit(m, dm)
    auc_xdi = trainer.test(m, dm, verbose=False)[0]["test/auc"]

    def arrays(split):
        b = dm.split(split)
        ids, y = zip(*(b[k] for k in range(len(b))))
        return torch.cat(ids).numpy(), torch.cat(y).numpy()

    (xtr, ytr), (xte, yte) = arrays("train"), arrays("test")
    xtr, xte = _onehot(xtr, dm.vocab_sizes), _onehot(xte, dm.vocab_sizes)
    auc_lr = max(
        roc_auc_score(yte, LogisticRegression(C=c, max_iter=1000).fit(xtr, ytr).predict_proba(xte)[:, 1])
        for c in (0.01, 0.1, 1.0)
    )
    print(f"planted crosses, 30k rows: xDeepInt AUC {auc_xdi:.4f}, logistic regression AUC {auc_lr:.4f}")
    assert auc_xdi > auc_lr + 0.04, (auc_xdi, auc_lr)
