"""nn.Module forms of the zoo ops that follow the fused-kernel protocol of ``zoo.callbacks.FusedKernels``.

Each declares the ops it calls (``fused_ops``) and passes ``self.ops_impl`` as ``impl``: ``"reference"`` by default
(the specification), switched per instance to ``"triton"`` by the callback or by the ``zoo_ddp``/``zoo_fsdp``
strategies when the kernel can run on the training device. They hold no parameters, so switching changes no
``state_dict``.
"""
from __future__ import annotations

from torch import Tensor, nn

from zoo.ops.linear_cross_entropy import fused_linear_cross_entropy
from zoo.ops.propagate import graph_propagate
from zoo.ops.relation import relation_kl


class RelationKLLoss(nn.Module):
    """TinyMIM's relation loss KL(softmax(t_a t_bᵀ·teacher_scale) ‖ softmax(s_a s_bᵀ·student_scale))."""

    fused_ops = ("relation_kl",)
    ops_impl = "reference"

    def __init__(self, student_scale: float, teacher_scale: float):
        super().__init__()
        self.student_scale, self.teacher_scale = float(student_scale), float(teacher_scale)

    def forward(self, student_a: Tensor, student_b: Tensor, teacher_a: Tensor, teacher_b: Tensor) -> Tensor:
        return relation_kl(student_a, student_b, teacher_a, teacher_b, self.student_scale, self.teacher_scale,
                           impl=self.ops_impl)

    def extra_repr(self) -> str:
        return f"student_scale={self.student_scale:.4g}, teacher_scale={self.teacher_scale:.4g}, impl={self.ops_impl}"


class GraphPropagation(nn.Module):
    """Â^k X: ``hops`` sparse propagation steps (SGC's feature pre-processing, CCGC's smoothing, a GCN's Â)."""

    fused_ops = ("graph_propagate",)
    ops_impl = "reference"

    def __init__(self, hops: int = 1):
        super().__init__()
        if hops < 0:
            raise ValueError(f"GraphPropagation: hops must be >= 0, got {hops}")
        self.hops = hops

    def forward(self, adj: Tensor, x: Tensor) -> Tensor:
        for _ in range(self.hops):
            x = graph_propagate(adj, x, impl=self.ops_impl)
        return x

    def extra_repr(self) -> str:
        return f"hops={self.hops}, impl={self.ops_impl}"


class LinearCrossEntropyLoss(nn.Module):
    """Cross-entropy of ``hidden @ weight.T + bias``; the classifier's weights are passed in (they belong to the
    model's head, which inference uses), so the loss can skip the full logits matrix during training."""

    fused_ops = ("fused_linear_cross_entropy",)
    ops_impl = "reference"

    def __init__(self, ignore_index: int = -100, reduction: str = "mean"):
        super().__init__()
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, hidden: Tensor, weight: Tensor, bias: Tensor | None, target: Tensor) -> Tensor:
        return fused_linear_cross_entropy(hidden, weight, bias, target, self.ignore_index, self.reduction,
                                          impl=self.ops_impl)

    def extra_repr(self) -> str:
        return f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, impl={self.ops_impl}"
