"""Fused ops of zoo: a PyTorch reference (the specification) and a Triton kernel per op, one file per op.

Public names (models call these; they never import Triton):

- ``relation_kl(student_a, student_b, teacher_a, teacher_b, student_scale, teacher_scale, impl="auto")`` and its
  nn.Module form ``RelationKLLoss`` — TinyMIM's relation-distillation loss, tiled with an online log-sum-exp
  (``zoo/ops/relation.py``).
- ``graph_propagate(adj, x, impl="auto", adj_t=None)`` and ``GraphPropagation`` — sparse CSR (N×M) @ dense (M×F)
  (``zoo/ops/propagate.py``).
- ``fused_linear_cross_entropy(hidden, weight, bias, target, ignore_index=-100, reduction="mean", impl="auto")`` and
  ``LinearCrossEntropyLoss`` — output projection + cross-entropy in row chunks, never materialising all logits
  (``zoo/ops/linear_cross_entropy.py``).
- ``<op>_reference``: each op's PyTorch reference. ``available()``: per op, ``"available"`` or the reason the
  kernel cannot run here (``zoo env`` prints it). ``OPS``: the op names (this table is the only list of them).

``impl`` (a function argument, and an init argument of each nn.Module form, so YAML can set it): ``"auto"`` runs
the Triton kernel on CUDA tensors when Triton is installed, else the reference; ``"reference"`` always runs the
PyTorch reference; ``"triton"`` runs the kernel (CUDA tensors, or CPU tensors when ``TRITON_INTERPRET=1``) and
raises a clear error where it cannot. ``zoo.callbacks.FusedKernels`` (and the ``zoo_ddp``/``zoo_fsdp``
strategies) set ``impl="triton"`` on a model's op modules for one run. Each kernel is registered as a
``torch.library`` custom op ``zoo::<name>`` with a fake (meta) implementation and an autograd formula.

Importing this package is light: the op files (and Triton, which they import) are imported on first use.
"""

from __future__ import annotations

import importlib

#: op name -> the file (``zoo/ops/<file>.py``) holding its reference, kernel, custom op and nn.Module form.
OPS = {
    "relation_kl": "relation",
    "graph_propagate": "propagate",
    "fused_linear_cross_entropy": "linear_cross_entropy",
}
_MODULE_FORMS = {
    "RelationKLLoss": "relation",
    "GraphPropagation": "propagate",
    "LinearCrossEntropyLoss": "linear_cross_entropy",
}
_LAZY = {
    **{name: file for op, file in OPS.items() for name in (op, f"{op}_reference")},
    **_MODULE_FORMS,
    "available": "_dispatch",
    "OpModule": "_dispatch",
}
__all__ = sorted([*_LAZY, "OPS"])


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
