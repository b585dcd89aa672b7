"""Fused ops of zoo: a PyTorch reference (the specification) and a Triton kernel per op.

Public functions (models call these; they never import Triton):

- ``relation_kl(student_a, student_b, teacher_a, teacher_b, student_scale, teacher_scale, impl="auto")`` —
  TinyMIM's relation-distillation loss, tiled with an online log-sum-exp (``zoo/ops/relation.py``).
- ``graph_propagate(adj, x, impl="auto")`` — sparse CSR (N×M) @ dense (M×F) (``zoo/ops/propagate.py``).
- ``fused_linear_cross_entropy(hidden, weight, bias, target, ignore_index=-100, reduction="mean", impl="auto")`` —
  output projection + cross-entropy in row chunks, never materialising all logits (``zoo/ops/linear_cross_entropy.py``).
- ``RelationKLLoss``, ``GraphPropagation``, ``LinearCrossEntropyLoss`` — nn.Module forms that follow the
  ``zoo.callbacks.FusedKernels`` protocol (``fused_ops`` + a per-instance ``ops_impl``) (``zoo/ops/modules.py``).
- ``available()`` — per op, ``"available"`` or the reason the kernel cannot run here (``zoo env`` prints it).

``impl``: ``"auto"`` runs the Triton kernel on CUDA tensors when Triton is installed, else the reference;
``"reference"`` always runs the PyTorch reference; ``"triton"`` runs the kernel (CUDA tensors, or CPU tensors
when ``TRITON_INTERPRET=1``) and raises a clear error where it cannot. Each kernel is registered as a
``torch.library`` custom op ``zoo::<name>`` with a fake (meta) implementation and an autograd formula.

Importing this package is light: the op files and Triton are imported on first use.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "relation_kl": "relation",
    "relation_kl_reference": "relation",
    "graph_propagate": "propagate",
    "graph_propagate_reference": "propagate",
    "fused_linear_cross_entropy": "linear_cross_entropy",
    "fused_linear_cross_entropy_reference": "linear_cross_entropy",
    "RelationKLLoss": "modules",
    "GraphPropagation": "modules",
    "LinearCrossEntropyLoss": "modules",
    "available": "_dispatch",
    "OPS": "_dispatch",
}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
