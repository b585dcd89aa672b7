"""xDeepInt golden tests: zoo's network (embedding with missing ids, subspace crossing, residual PIN layers, field-
weighted output with the K*b bias), the summed BCE gradients and two steps of the combined optimisation (GroupFTRL on
the embedding table, FTRLProximal on the PIN and output weights) against yanyachen/xDeepInt's ``xDeepInt`` model
function and ``GFTRL`` + ``tf.train.FtrlOptimizer`` run unchanged in TensorFlow 1 graph mode (tests/fixtures/xdeepint/
README.md says how the fixtures were made). Weights are the official initialisation, mapped to zoo's names here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "xdeepint"

# config -> zoo network kwargs and the optimiser hyper-parameters the official run used (README)
CONFIGS = {
    "a": dict(
        net=dict(vocab_sizes=[3, 4, 5, 6, 7], num_fields=5, embed_dim=8, num_layers=3, num_subspaces=4),
        gftrl=dict(alpha=0.02, beta=1.0, lambda1=0.02, lambda2=1.0),
        ftrl=dict(lr=0.02, l1=0.01, l2=0.1),
    ),
    "b": dict(
        net=dict(vocab_sizes=[2, 3, 4, 5], num_fields=4, embed_dim=4, num_layers=4, num_subspaces=4, activation="tanh"),
        gftrl=dict(alpha=0.02, beta=1.0, lambda1=10.0, lambda2=10.0),  # the reference values (nn1.py)
        ftrl=dict(lr=0.02, l1=0.1, l2=0.1),
    ),
}
EMB = "Embedding/input_layer/f{}_embedding/embedding_weights"


def load(name):
    from safetensors.torch import load_file

    return load_file(FIXTURES / f"config_{name}.safetensors")


def close(name, got, want, rtol=1e-5, atol=1e-6):
    diff = (got.detach() - want).abs().max().item()
    print(f"{name}: max |Δ| zoo vs official = {diff:.2e} (max |x| {want.abs().max():.2f})")
    torch.testing.assert_close(got.detach(), want, rtol=rtol, atol=atol)


def _layer(key: str) -> int:
    """Keras' layer index in an official variable name (``dense`` = 0, ``dense_3`` = 3)."""
    m = re.search(r"/dense(?:_(\d+))?/(kernel|bias)$", key)
    return int(m.group(1) or 0)


def zoo_state(off, cfg, step=0, kind="param"):
    """Official variables (``kind`` = param or grad at ``step``) -> zoo's state dict: one embedding table (row 0 = the
    zero row for missing ids, then each field's buckets), the PIN kernels in layer order transposed (nn.Linear holds
    W^T), the output kernel transposed and its bias."""
    head = f"step{step}.{kind}."
    table = [torch.zeros(1, cfg["net"]["embed_dim"])]
    table += [off[head + EMB.format(f)] for f in range(cfg["net"]["num_fields"])]
    pin = sorted((k for k in off if k.startswith(head + "PIN/polynomial__block/")), key=_layer)
    (bias,) = (k for k in off if k.startswith(head + "PIN/vector_dense__layer_") and k.endswith("/bias"))
    state = {"embedding.table.weight": torch.cat(table)}
    state.update({f"pin.{i}.linear.weight": off[k].T for i, k in enumerate(pin)})
    state["output.weight"], state["output.bias"] = off[bias.replace("/bias", "/kernel")].T, off[bias]
    return state


def network(cfg, off):
    from zoo.models.xdeepint.model import XDeepInt

    net = XDeepInt(**cfg["net"])
    net.load_state_dict(zoo_state(off, cfg), strict=True)
    return net


def zoo_ids(off):
    """Official identity-column ids (-1 = missing, dropped by TF) -> zoo's local ids (0 = missing, buckets from 1)."""
    return off["ids"] + 1


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_forward_matches_official(name):
    """X0 (embedding lookup, missing ids -> zero vectors), X_L (subspace crossing + residual PIN layers; config a:
    h = 4 subspaces of 2 coordinates, linear; config b: h = K = 4, tanh) and the logits."""
    cfg, off = CONFIGS[name], load(name)
    net = network(cfg, off).eval()
    ids = zoo_ids(off)
    with torch.no_grad():
        x0 = net.embedding(ids)
        close(f"[{name}] X0", x0, off["step0.x0"])
        close(f"[{name}] X_L", net.interactions(x0), off["step0.xl"])
        close(f"[{name}] logits", net(ids), off["step0.logits"])


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_gradients_and_two_ftrl_steps_match_official(name):
    """Summed sigmoid BCE and its gradients, then two steps of GroupFTRL (embedding table) + FTRLProximal (PIN and
    output weights): loss, gradients and every parameter after each step (rows / weights driven exactly to zero
    included)."""
    from zoo.models.xdeepint.optim import FTRLProximal, GroupFTRL

    cfg, off = CONFIGS[name], load(name)
    net = network(cfg, off).train()
    ids, y = zoo_ids(off), off["labels"].float()
    emb = [net.embedding.table.weight]
    opt_e = GroupFTRL(emb, **cfg["gftrl"])
    opt_p = FTRLProximal([p for p in net.parameters() if p is not emb[0]], lr_power=-0.5, **cfg["ftrl"])
    for step in range(2):
        net.zero_grad()
        logits = net(ids)
        close(f"[{name}] step {step} logits", logits, off[f"step{step}.logits"])
        loss = F.binary_cross_entropy_with_logits(logits, y, reduction="sum")
        close(f"[{name}] step {step} loss", loss, off[f"step{step}.loss"].reshape(()))
        loss.backward()
        grads = {k: p.grad for k, p in net.named_parameters()}
        want = zoo_state(off, cfg, step, kind="grad")
        for k in grads:
            g = grads[k][1:] if k == "embedding.table.weight" else grads[k]  # row 0 (missing ids) has no TF twin
            close(f"[{name}] step {step} grad {k}", g, want[k][1:] if k == "embedding.table.weight" else want[k])
        opt_e.step()
        opt_p.step()
        after = zoo_state(off, cfg, step + 1)
        for k, p in net.state_dict().items():
            close(f"[{name}] after step {step + 1} {k}", p, after[k])
            assert torch.equal(p == 0, after[k] == 0), f"{k}: zoo and the release zero different entries"
