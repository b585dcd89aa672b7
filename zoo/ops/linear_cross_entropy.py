"""``zoo.ops.fused_linear_cross_entropy``: output projection + cross-entropy without the full logits matrix.

For hidden states h (R×D), a classifier W (V×D), b (V) and targets y, the loss is CE(h Wᵀ + b, y). With a large
vocabulary (BERT's 30522 word pieces for MLM, captioning heads) the R×V logits and their gradient dominate
memory. Following the chunked scheme of Liger-Kernel's fused linear cross-entropy (Hsu et al., "Liger Kernel:
Efficient Triton Kernels for LLM Training", 2024, Sec. 3.2), the rows are processed in chunks of C rows: the C×V
logits are formed by one matmul, a Triton kernel computes each row's log-sum-exp online and the loss, and — when a
gradient is needed — overwrites the logits in place with ∂loss/∂logits = softmax − onehot; the chunk's
contributions to ∂h, ∂W and ∂b are then two matmuls and a sum. For ``reduction="mean"|"sum"`` the gradients are
computed in the forward (as Liger does) and the backward only scales them by the upstream gradient: three matmuls
in all, like the unfused op. For ``reduction="none"`` the backward recomputes each chunk's logits (per-row upstream
gradients are only known then). Peak extra memory is C×V instead of R×V.

Shapes: hidden (..., D), target (...), weight (V, D), bias (V,) or None. ``ignore_index`` rows contribute nothing
(and are not counted by the mean). The loss is float32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.ops import _dispatch

try:  # Triton comes with torch's Linux CUDA wheels; without it only the reference runs (zoo.ops._dispatch says why)
    import triton.language as tl
except Exception:  # ImportError, or a broken install
    tl = None

OP = "fused_linear_cross_entropy"
REDUCTIONS = ("mean", "sum", "none")


def _check(hidden, weight, bias, target, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"zoo.ops.fused_linear_cross_entropy: reduction must be one of {REDUCTIONS}, got {reduction!r}"
        )
    if weight.dim() != 2 or hidden.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"zoo.ops.fused_linear_cross_entropy: weight must be (V, D) with D = hidden.shape[-1], got "
            f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)}"
        )
    if bias is not None and tuple(bias.shape) != (weight.shape[0],):
        raise ValueError(
            f"zoo.ops.fused_linear_cross_entropy: bias must be (V,) = ({weight.shape[0]},), got {tuple(bias.shape)}"
        )
    if tuple(target.shape) != tuple(hidden.shape[:-1]) or target.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"zoo.ops.fused_linear_cross_entropy: target must be an integer tensor of shape "
            f"hidden.shape[:-1] = {tuple(hidden.shape[:-1])}, got {target.dtype} {tuple(target.shape)}"
        )


def fused_linear_cross_entropy_reference(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> Tensor:
    """The specification: ``F.cross_entropy(F.linear(hidden, weight, bias), target)`` with float32 logits."""
    _check(hidden, weight, bias, target, reduction)
    logits = F.linear(hidden, weight, bias).float()
    loss = F.cross_entropy(
        logits.reshape(-1, weight.shape[0]), target.reshape(-1).long(), ignore_index=ignore_index, reduction=reduction
    )
    return loss.view(target.shape) if reduction == "none" else loss


def fused_linear_cross_entropy(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    ignore_index: int = -100,
    reduction: str = "mean",
    impl: str = "auto",
) -> Tensor:
    """Cross-entropy of ``hidden @ weight.T + bias`` against ``target``, in row chunks (no full logits matrix)."""
    _check(hidden, weight, bias, target, reduction)
    if _dispatch.resolve(OP, impl, hidden, weight, bias, target) == "reference":
        return fused_linear_cross_entropy_reference(hidden, weight, bias, target, ignore_index, reduction)
    grad_on = torch.is_grad_enabled()
    loss, _, _, _ = torch.ops.zoo.fused_linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1]),
        weight,
        bias,
        target.reshape(-1),
        int(ignore_index),
        reduction,
        grad_on and hidden.requires_grad,
        grad_on and weight.requires_grad,
        grad_on and bias is not None and bias.requires_grad,
    )
    return loss.view(target.shape) if reduction == "none" else loss


class LinearCrossEntropyLoss(_dispatch.OpModule):
    """:func:`fused_linear_cross_entropy` as a module (``impl``: see ``zoo.ops``). The classifier's weights are
    passed in (they belong to the model's head, which inference uses), so the loss can skip the full logits matrix
    during training."""

    op = OP

    def __init__(self, ignore_index: int = -100, reduction: str = "mean", impl: str = "reference"):
        super().__init__(impl)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor) -> Tensor:
        return fused_linear_cross_entropy(
            hidden, weight, bias, target, self.ignore_index, self.reduction, impl=self.impl
        )

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, impl={self.impl}"


# --------------------------------------------------------------------------------------------------------------
# Triton kernel (a plain function; zoo.ops._dispatch.jit decorates it).


def _ce_kernel(
    LOGITS,
    TARGET,
    LOSS,
    SCALE,
    V,
    stride,
    ignore_index,
    HAS_SCALE: tl.constexpr,
    WRITE_GRAD: tl.constexpr,
    BLOCK_V: tl.constexpr,
):
    # One program per row: online log-sum-exp over V in blocks, the loss, then (optionally) the gradient
    # (softmax − onehot)·scale written over the logits.
    row = tl.program_id(0).to(tl.int64)
    base = LOGITS + row * stride
    y = tl.load(TARGET + row).to(tl.int64)
    valid = y != ignore_index
    y_safe = tl.where(valid, y, 0)
    m = float("-inf")
    acc = 0.0
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, 0))
        acc = acc * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new), 0)
        m = m_new
    lse = m + tl.log(acc)
    x_y = tl.load(base + y_safe).to(tl.float32)
    loss = tl.where(valid, lse - x_y, 0.0)
    tl.store(LOSS + row, loss)
    if WRITE_GRAD:
        scale = tl.where(valid, 1.0, 0.0)
        if HAS_SCALE:
            scale = scale * tl.load(SCALE + row).to(tl.float32)
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            x = tl.load(base + cols, mask=cols < V, other=0.0).to(tl.float32)
            g = (tl.exp(x - lse) - tl.where(cols == y_safe, 1.0, 0.0)) * scale
            tl.store(base + cols, g.to(LOGITS.dtype.element_ty), mask=cols < V)


def _chunk_loss_(logits: Tensor, target: Tensor, ignore_index: int, scale: Tensor | None, write_grad: bool) -> Tensor:
    """Per-row losses of a C×V logits chunk; with ``write_grad`` the chunk becomes ∂loss/∂logits (times ``scale``)."""
    C, V = logits.shape
    loss = torch.empty(C, device=logits.device, dtype=torch.float32)
    if _dispatch.kernel_error(logits.device) is None:
        block_v = min(4096 if logits.device.type == "cuda" else 1024, _dispatch.next_pow2(V))
        _dispatch.jit(_ce_kernel)[(C,)](
            logits,
            target,
            loss,
            scale if scale is not None else loss,
            V,
            logits.stride(0),
            ignore_index,
            HAS_SCALE=scale is not None,
            WRITE_GRAD=write_grad,
            BLOCK_V=block_v,
        )
        return loss
    # Inside the op without a runnable kernel (CPU, no interpreter): the same arithmetic in torch.
    valid = target != ignore_index
    y = torch.where(valid, target, 0).long()
    x = logits.float()
    lse = torch.logsumexp(x, -1)
    loss.copy_(torch.where(valid, lse - x.gather(1, y[:, None])[:, 0], 0.0))
    if write_grad:
        g = torch.exp(x - lse[:, None])
        g[torch.arange(C, device=x.device), y] -= 1.0
        w = valid.float() if scale is None else valid.float() * scale.float()
        logits.copy_(g * w[:, None])
    return loss


def _chunk_rows(R: int, V: int, D: int) -> int:
    # Chunk so that C×V ≈ R×D: the logits chunk is no bigger than the hidden states (Liger's choice).
    return max(1, min(R, _dispatch.next_pow2(_dispatch.cdiv(R, max(1, _dispatch.cdiv(V, D))))))


def _check_targets(target: Tensor, V: int, ignore_index: int):
    bad = (target != ignore_index) & ((target < 0) | (target >= V))
    if bool(bad.any()):
        raise ValueError(
            f"zoo.ops.fused_linear_cross_entropy: target values must be in [0, {V}) or "
            f"ignore_index={ignore_index}; found {target[bad][:5].tolist()}"
        )


def _linear(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return (torch.addmm(bias, h, weight.t()) if bias is not None else h @ weight.t()).contiguous()


def _accumulate(dlogits: Tensor, h: Tensor, weight: Tensor, start: int, gh, gw, gb) -> None:
    """Add one chunk's ∂/∂h (rows start:start+C), ∂/∂W and ∂/∂b; in place, without temporaries where the dtypes
    allow (float32 accumulators)."""
    rows = slice(start, start + dlogits.shape[0])
    if gh is not None:
        if gh.dtype == dlogits.dtype:
            torch.mm(dlogits, weight.to(dlogits.dtype), out=gh[rows])
        else:
            gh[rows] = (dlogits @ weight.to(dlogits.dtype)).to(gh.dtype)
    if gw is not None:
        if gw.dtype == dlogits.dtype:
            gw.addmm_(dlogits.t(), h.to(dlogits.dtype))
        else:
            gw.add_((dlogits.t() @ h.to(dlogits.dtype)).float())
    if gb is not None:
        gb.add_(dlogits.sum(0, dtype=torch.float32))


@torch.library.custom_op("zoo::fused_linear_cross_entropy", mutates_args=())
def _flce_op(
    hidden: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    target: Tensor,
    ignore_index: int,
    reduction: str,
    grad_hidden: bool,
    grad_weight: bool,
    grad_bias: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(loss, ∂loss/∂hidden, ∂loss/∂weight, ∂loss/∂bias); the gradients are empty unless asked for and
    ``reduction`` is "mean" or "sum" (for "none" the backward op recomputes them)."""
    R, D = hidden.shape
    V = weight.shape[0]
    _check_targets(target, V, ignore_index)
    want = reduction != "none" and (grad_hidden or grad_weight or grad_bias)
    gh = torch.empty_like(hidden) if want and grad_hidden else hidden.new_empty(0)
    gw = torch.zeros(V, D, device=weight.device, dtype=torch.float32) if want and grad_weight else hidden.new_empty(0)
    gb = torch.zeros(V, device=weight.device, dtype=torch.float32) if want and grad_bias else hidden.new_empty(0)
    losses = torch.empty(R, device=hidden.device, dtype=torch.float32)
    C = _chunk_rows(R, V, D)
    for s in range(0, R, C):
        h = hidden[s : s + C]
        logits = _linear(h, weight, bias)
        losses[s : s + C] = _chunk_loss_(logits, target[s : s + C], ignore_index, None, want)
        if want:
            _accumulate(
                logits,
                h,
                weight,
                s,
                gh if grad_hidden else None,
                gw if grad_weight else None,
                gb if grad_bias else None,
            )
    if reduction == "none":
        return losses, gh, gw, gb  # all empty
    loss = losses.sum()
    if reduction == "mean":
        count = (target != ignore_index).sum().float()  # all ignored -> nan, as F.cross_entropy
        loss = loss / count
        gh, gw, gb = (g / count if g.numel() else g for g in (gh, gw, gb))
    return (
        loss,
        gh,
        gw.to(weight.dtype) if gw.numel() else gw,
        gb.to(bias.dtype) if gb.numel() and bias is not None else gb,
    )


@_flce_op.register_fake
def _(hidden, weight, bias, target, ignore_index, reduction, grad_hidden, grad_weight, grad_bias):
    R = hidden.shape[0]
    loss = hidden.new_empty((R,) if reduction == "none" else (), dtype=torch.float32)
    want = reduction != "none" and (grad_hidden or grad_weight or grad_bias)
    gh = torch.empty_like(hidden) if want and grad_hidden else hidden.new_empty(0)
    gw = torch.empty_like(weight) if want and grad_weight else hidden.new_empty(0)
    gb = torch.empty_like(bias) if want and grad_bias and bias is not None else hidden.new_empty(0)
    return loss, gh, gw, gb


@torch.library.custom_op("zoo::fused_linear_cross_entropy_backward", mutates_args=())
def _flce_backward_op(
    grad: Tensor, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor, ignore_index: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Gradients for ``reduction="none"``: per-row upstream ``grad`` (R,), logits recomputed chunk by chunk."""
    R, D = hidden.shape
    V = weight.shape[0]
    gh = torch.empty_like(hidden)
    gw = torch.zeros(V, D, device=weight.device, dtype=torch.float32)
    gb = torch.zeros(V, device=weight.device, dtype=torch.float32)
    grad = grad.float().contiguous()
    C = _chunk_rows(R, V, D)
    for s in range(0, R, C):
        h = hidden[s : s + C]
        logits = _linear(h, weight, bias)
        _chunk_loss_(logits, target[s : s + C], ignore_index, grad[s : s + C], True)
        _accumulate(logits, h, weight, s, gh, gw, gb)
    return gh, gw.to(weight.dtype), gb.to(bias.dtype if bias is not None else weight.dtype)


@_flce_backward_op.register_fake
def _(grad, hidden, weight, bias, target, ignore_index):
    return (
        torch.empty_like(hidden),
        torch.empty_like(weight),
        weight.new_empty(weight.shape[0], dtype=bias.dtype if bias is not None else weight.dtype),
    )


def _setup_context(ctx, inputs, output):
    hidden, weight, bias, target, ignore_index, reduction, *flags = inputs
    _, gh, gw, gb = output
    ctx.reduction, ctx.ignore_index, ctx.flags, ctx.has_bias = reduction, ignore_index, flags, bias is not None
    ctx.mark_non_differentiable(gh, gw, gb)
    if reduction == "none":
        ctx.save_for_backward(hidden, weight, bias, target)
    else:
        ctx.save_for_backward(gh, gw, gb)


def _backward(ctx, grad, *_):
    grad_hidden, grad_weight, grad_bias = ctx.flags
    if ctx.reduction == "none":
        hidden, weight, bias, target = ctx.saved_tensors
        gh, gw, gb = torch.ops.zoo.fused_linear_cross_entropy_backward(
            grad, hidden, weight, bias, target, ctx.ignore_index
        )
    else:
        gh, gw, gb = ctx.saved_tensors
        gh, gw, gb = gh * grad, gw * grad, gb * grad
    return (
        gh if grad_hidden else None,
        gw if grad_weight else None,
        gb if grad_bias and ctx.has_bias else None,
        None,
        None,
        None,
        None,
        None,
        None,
    )


_flce_op.register_autograd(_backward, setup_context=_setup_context)
