"""zoo.ops.fused_linear_cross_entropy: the chunked Triton path (interpreted on the CPU) against F.cross_entropy."""

from __future__ import annotations

import pytest
import torch

from zoo.ops import fused_linear_cross_entropy, fused_linear_cross_entropy_reference
from zoo.ops.linear_cross_entropy import _chunk_rows


def _inputs(lead, d, v, bias=True, ignore_every=0):
    h = torch.randn(*lead, d, requires_grad=True)
    w = (torch.randn(v, d) / d**0.5).requires_grad_()
    b = torch.randn(v).requires_grad_() if bias else None
    y = torch.randint(0, v, lead)
    if ignore_every:
        y.view(-1)[::ignore_every] = -100
    return h, w, b, y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize(
    "lead,d,v,bias,ignore_every",
    [
        ((37,), 16, 300, True, 5),  # many chunks of 2 rows, ragged V block, ignored rows
        ((2, 5), 8, 50, False, 0),  # (B, T, D) hidden states, no bias
        ((16,), 32, 1000, True, 3),  # a 1000-class head
    ],
)
def test_kernel_matches_reference(lead, d, v, bias, ignore_every, reduction):
    h, w, b, y = _inputs(lead, d, v, bias, ignore_every)
    params = [t for t in (h, w, b) if t is not None]
    ref = fused_linear_cross_entropy_reference(h, w, b, y, reduction=reduction)
    upstream = torch.rand_like(ref)  # per-row upstream gradients for "none"
    g_ref = torch.autograd.grad((ref * upstream).sum(), params)
    out = fused_linear_cross_entropy(h, w, b, y, reduction=reduction, impl="triton")
    g_out = torch.autograd.grad((out * upstream).sum(), params)
    assert out.shape == ref.shape and out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for name, a, r in zip(("hidden", "weight", "bias"), g_out, g_ref):
        torch.testing.assert_close(a, r, atol=1e-5, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")


def test_chunks_are_smaller_than_the_logits():
    assert _chunk_rows(4096, 30522, 768) == 128  # 128 × 30522 logits instead of 4096 × 30522
    assert _chunk_rows(37, 300, 16) == 2


def test_frozen_head_and_no_grad_and_all_ignored():
    h, w, b, y = _inputs((6,), 8, 20)
    w.requires_grad_(False)
    out = fused_linear_cross_entropy(h, w, b, y, impl="triton")
    gh, gb = torch.autograd.grad(out, (h, b))
    rh, rb = torch.autograd.grad(fused_linear_cross_entropy_reference(h, w, b, y), (h, b))
    torch.testing.assert_close(gh, rh, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(gb, rb, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        assert not fused_linear_cross_entropy(h, w, b, y, impl="triton").requires_grad
    assert torch.isnan(fused_linear_cross_entropy(h, w, b, torch.full_like(y, -100), impl="triton"))


def test_bad_inputs_rejected():
    h, w, b, y = _inputs((4,), 8, 10)
    with pytest.raises(ValueError, match=r"target values must be in \[0, 10\)"):
        fused_linear_cross_entropy(h, w, b, torch.tensor([0, 1, 10, 2]), impl="triton")
    with pytest.raises(ValueError, match="reduction"):
        fused_linear_cross_entropy(h, w, b, y, reduction="avg")
    with pytest.raises(ValueError, match="weight must be"):
        fused_linear_cross_entropy(h, w[:, :4], b, y)


@pytest.mark.parametrize("interpret", [True, False], ids=["kernel", "torch-math"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_opcheck(interpret, reduction, monkeypatch):
    if not interpret:
        monkeypatch.delenv("TRITON_INTERPRET")
    h, w, b, y = _inputs((6,), 4, 11, ignore_every=4)
    torch.library.opcheck(
        torch.ops.zoo.fused_linear_cross_entropy.default, (h, w, b, y, -100, reduction, True, True, True)
    )
    torch.library.opcheck(
        torch.ops.zoo.fused_linear_cross_entropy_backward.default,
        (torch.rand(6), h.detach(), w.detach(), b.detach(), y, -100),
    )


def test_compile_matches_eager():
    class Head(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(8, 8)
            self.cls = torch.nn.Linear(8, 40)

        def forward(self, x, y):
            return fused_linear_cross_entropy(self.body(x).tanh(), self.cls.weight, self.cls.bias, y, impl="triton")

    model = Head()
    x, y = torch.randn(12, 8), torch.randint(0, 40, (12,))
    eager = model(x, y)
    g_eager = torch.autograd.grad(eager, (model.body.weight, model.cls.weight))
    compiled = torch.compile(model)(x, y)
    g_compiled = torch.autograd.grad(compiled, (model.body.weight, model.cls.weight))
    torch.testing.assert_close(compiled, eager)
    for a, b in zip(g_compiled, g_eager):
        torch.testing.assert_close(a, b)
