"""zoo.ops.relation_kl: the tiled Triton kernel (interpreted on the CPU) against the materialising reference."""

from __future__ import annotations

import pytest
import torch

from zoo.ops import relation_kl, relation_kl_reference


def _inputs(B, H, N, M, ds, dt, spread=1.0):
    sa = (torch.randn(B, H, N, ds) * spread).requires_grad_()
    sb = (torch.randn(B, H, M, ds) * spread).requires_grad_()
    ta, tb = torch.randn(B, H, N, dt) * spread, torch.randn(B, H, M, dt) * spread
    return sa, sb, ta, tb


@pytest.mark.parametrize(
    "B,H,N,M,ds,dt,spread",
    [
        (1, 1, 16, 16, 16, 16, 1.0),  # exactly one tile
        (2, 3, 37, 37, 24, 40, 1.0),  # ragged rows/columns, student and teacher d differ and are not powers of 2
        (1, 2, 5, 70, 8, 8, 1.0),  # N != M, several column tiles
        (1, 1, 65, 65, 64, 32, 3.0),  # two row tiles with a one-row remainder; peaked relations
    ],
)
def test_kernel_matches_reference(B, H, N, M, ds, dt, spread):
    sa, sb, ta, tb = _inputs(B, H, N, M, ds, dt, spread)
    scales = (ds**-0.5, dt**-0.5)
    ref = relation_kl_reference(sa, sb, ta, tb, *scales)
    g_ref = torch.autograd.grad(ref, (sa, sb))
    out = relation_kl(sa, sb, ta, tb, *scales, impl="triton")
    g_out = torch.autograd.grad(out, (sa, sb))
    assert out.dtype == torch.float32 and out.shape == ()
    assert ref.item() > 0
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    for name, a, b in zip(("student_a", "student_b"), g_out, g_ref):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4, msg=lambda m: f"grad {name}: {m}")


def test_zero_when_student_equals_teacher_and_teacher_gets_no_gradient():
    sa, sb, _, _ = _inputs(1, 2, 9, 9, 8, 8)
    ta, tb = sa.detach().clone().requires_grad_(), sb.detach().clone().requires_grad_()
    out = relation_kl(sa, sb, ta, tb, 0.5, 0.5, impl="triton")
    assert abs(out.item()) < 1e-6
    out.backward()
    assert ta.grad is None and tb.grad is None  # the distillation target is a constant
    assert sa.grad.abs().max() < 1e-6


def test_auto_runs_reference_on_cpu_and_triton_needs_cuda_or_interpreter(monkeypatch):
    sa, sb, ta, tb = _inputs(1, 1, 4, 4, 8, 8)
    calls = []
    monkeypatch.setattr("zoo.ops.relation.relation_kl_reference", lambda *a: calls.append(1) or torch.zeros(()))
    relation_kl(sa, sb, ta, tb, 1.0, 1.0)  # impl="auto"
    assert calls == [1]
    monkeypatch.delenv("TRITON_INTERPRET")
    with pytest.raises(RuntimeError, match="impl='triton'.*TRITON_INTERPRET"):
        relation_kl(sa, sb, ta, tb, 1.0, 1.0, impl="triton")
    with pytest.raises(ValueError, match="impl must be one of"):
        relation_kl(sa, sb, ta, tb, 1.0, 1.0, impl="cuda")
    with pytest.raises(ValueError, match="same B, H and token counts"):
        relation_kl(sa, sb, ta[:, :, :3], tb, 1.0, 1.0)


@pytest.mark.parametrize("interpret", [True, False], ids=["kernel", "torch-math"])
def test_opcheck(interpret, monkeypatch):
    if not interpret:  # the op's CPU implementation without the interpreter is plain torch math
        monkeypatch.delenv("TRITON_INTERPRET")
    sa, sb, ta, tb = _inputs(1, 2, 7, 9, 8, 12)
    torch.library.opcheck(torch.ops.zoo.relation_kl.default, (sa, sb, ta, tb, 0.5, 0.25))
    _, lse_s, lse_t = torch.ops.zoo.relation_kl(sa, sb, ta, tb, 0.5, 0.25)
    torch.library.opcheck(
        torch.ops.zoo.relation_kl_backward.default,
        (torch.tensor(1.5), sa.detach(), sb.detach(), ta, tb, lse_s, lse_t, 0.5, 0.25),
    )


def test_compile_matches_eager():
    class Distill(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(8, 16)

        def forward(self, x, teacher):
            q, k = self.proj(x).chunk(2, dim=-1)
            return relation_kl(q, k, teacher, teacher, 8**-0.5, 8**-0.5, impl="triton")

    model = Distill()
    x, teacher = torch.randn(2, 2, 11, 8), torch.randn(2, 2, 11, 8)
    eager = model(x, teacher)
    g_eager = torch.autograd.grad(eager, model.proj.weight)[0]
    compiled = torch.compile(model)(x, teacher)
    g_compiled = torch.autograd.grad(compiled, model.proj.weight)[0]
    torch.testing.assert_close(compiled, eager)
    torch.testing.assert_close(g_compiled, g_eager)
