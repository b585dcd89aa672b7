"""``zoo.callbacks.FusedKernels``: switch a model's modules to the zoo's Triton kernels, per instance and reversibly.

The protocol (how a model opts in)
----------------------------------
A module anywhere in the LightningModule's tree opts in with either of:

1. **An impl switch** (the usual case). Class attribute ``fused_ops``: the names of the ``zoo.ops`` functions it
   calls (``"relation_kl"``, ``"graph_propagate"``, ``"fused_linear_cross_entropy"``), and an attribute
   ``ops_impl`` (class default ``"reference"``) that it passes as ``impl=`` to those calls::

       class RelationHead(nn.Module):
           fused_ops = ("relation_kl",)
           ops_impl = "reference"
           def forward(self, sa, sb, ta, tb):
               return zoo.ops.relation_kl(sa, sb, ta, tb, s, t, impl=self.ops_impl)

   The callback sets ``ops_impl = "triton"`` on the instance when every one of its selected ops can run on the
   training device, and removes the instance attribute again in ``teardown``. ``zoo.ops.RelationKLLoss``,
   ``GraphPropagation`` and ``LinearCrossEntropyLoss`` already follow it.

2. **A module swap**, for a module whose fused form is another module. Besides ``fused_ops`` it defines
   ``fused_equivalent(self, ops: frozenset[str]) -> nn.Module | None``, returning a replacement that shares its
   parameters and buffers (identical ``state_dict`` keys, so checkpoints and ``zoo export`` are unchanged) or None.
   The callback puts the replacement in the parent module and puts the original back in ``teardown``.

The switch happens in the callback's ``setup``, which Lightning calls before the strategy moves and wraps the
model (DDP/FSDP) and builds the optimizers, so optimizers and wrappers see the final modules. (It also runs before
``LightningModule.configure_model``: modules created there are not seen — zoo models build ``self.model`` in
``__init__``.) Nothing global is patched: other instances of
the same class, other models and other tests are unaffected. Where an op cannot run (no CUDA device, no Triton,
unsupported device) the module keeps its reference path and the log says why (``strict=True`` raises instead).
On CPU tensors the kernels run only under ``TRITON_INTERPRET=1`` (Triton's interpreter, for tests).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

log = logging.getLogger(__name__)

_UNSET = object()


@dataclass
class FusedSwitch:
    """What ``apply_fused_kernels`` changed, to undo it; ``report`` is one line per op."""

    impl_changes: list = field(default_factory=list)  # (module, previous instance value or _UNSET)
    swaps: list = field(default_factory=list)  # (parent, child name, original module)
    report: list[str] = field(default_factory=list)
    running: dict[str, list[str]] = field(default_factory=dict)  # op -> module names switched to the kernel

    def restore(self) -> None:
        for module, previous in reversed(self.impl_changes):
            if previous is _UNSET:
                module.__dict__.pop("ops_impl", None)
            else:
                module.ops_impl = previous
        for parent, name, original in reversed(self.swaps):
            setattr(parent, name, original)
        self.impl_changes.clear()
        self.swaps.clear()
        self.running.clear()


def _selected_ops(ops) -> tuple[str, ...]:
    from zoo.ops import OPS

    if ops == "all" or ops is None:
        return OPS
    names = (ops,) if isinstance(ops, str) else tuple(ops)
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise ValueError(f"FusedKernels: unknown op(s) {unknown}; the zoo ops are {list(OPS)} (or ops='all')")
    return names


def apply_fused_kernels(model: nn.Module, ops="all", device: torch.device | str = "cuda",
                        strict: bool = False) -> FusedSwitch:
    """Switch the opted-in modules of ``model`` to the Triton kernels of ``ops`` that can run on ``device``.
    Returns a ``FusedSwitch`` whose ``restore()`` undoes every change."""
    from zoo.ops import _dispatch

    selected = _selected_ops(ops)
    device_type = torch.device(device).type
    reasons = {op: _dispatch.kernel_error(device_type) for op in selected}
    switch = FusedSwitch()
    users: dict[str, list[str]] = {op: [] for op in selected}
    parents = {name: module for name, module in model.named_modules()}
    for name, module in list(model.named_modules()):
        declared = tuple(getattr(module, "fused_ops", ()) or ())
        wanted = [op for op in declared if op in users]
        if not wanted:
            continue
        for op in wanted:
            users[op].append(name or type(module).__name__)
        blocked = [op for op in wanted if reasons[op] is not None]
        if blocked:
            continue  # keeps its reference path; reported below
        if callable(getattr(module, "fused_equivalent", None)) and name:
            replacement = module.fused_equivalent(frozenset(wanted))
            if replacement is not None:
                parent_name, _, child = name.rpartition(".")
                parent = parents[parent_name]
                _check_same_state(module, replacement, name)
                setattr(parent, child, replacement)
                switch.swaps.append((parent, child, module))
                for op in wanted:
                    switch.running.setdefault(op, []).append(name)
                continue
        if hasattr(module, "ops_impl"):
            if module.ops_impl != "triton":  # already "triton": whoever set it (another switch) undoes it
                switch.impl_changes.append((module, module.__dict__.get("ops_impl", _UNSET)))
                module.ops_impl = "triton"
            for op in wanted:
                switch.running.setdefault(op, []).append(name or type(module).__name__)
    for op in selected:
        if switch.running.get(op):
            mods = switch.running[op]
            switch.report.append(f"{op}: Triton kernel in {len(mods)} module(s): {', '.join(mods[:5])}"
                                 + (" ..." if len(mods) > 5 else ""))
        elif not users[op]:
            switch.report.append(f"{op}: not used by this model (no module declares it in `fused_ops`)")
        else:
            why = reasons[op] or "the modules declare it but have neither `ops_impl` nor `fused_equivalent`"
            switch.report.append(f"{op}: reference kept in {len(users[op])} module(s): {why}")
            if strict:
                switch.restore()
                raise RuntimeError(f"FusedKernels(strict=True): {op} cannot run: {why}")
    return switch


def _check_same_state(original: nn.Module, replacement: nn.Module, name: str) -> None:
    a, b = original.state_dict(), replacement.state_dict()
    if a.keys() != b.keys() or any(a[k].data_ptr() != b[k].data_ptr() for k in a):
        raise RuntimeError(f"FusedKernels: {type(original).__name__}.fused_equivalent() for {name!r} must return a "
                           "module sharing its parameters and buffers (same state_dict keys and tensors)")


class FusedKernels(Callback):
    """Run the zoo's Triton kernels in the modules that opt in (see the module docstring for the protocol).

    ``ops``: ``"all"`` or a list of op names (``zoo.ops.OPS``). ``strict``: raise when a selected op that the model
    uses cannot run on the training device, instead of keeping the reference and logging why.
    """

    def __init__(self, ops: str | list[str] = "all", strict: bool = False) -> None:
        self.ops = _selected_ops(ops)  # fail fast on unknown names
        self.strict = strict
        self._switch: FusedSwitch | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._switch is not None:  # already applied (setup runs once per trainer entry point)
            return
        device = trainer.strategy.root_device
        self._switch = apply_fused_kernels(pl_module, self.ops, device, strict=self.strict)
        if trainer.is_global_zero:  # zoo's own logger (propagates to the root logger, unlike lightning_utilities')
            log.info("FusedKernels on %s:\n  %s", device, "\n  ".join(self._switch.report))

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._switch is not None:
            self._switch.restore()
            self._switch = None

    @property
    def report(self) -> list[str]:
        """The per-op lines of the last ``setup`` (empty after ``teardown``)."""
        return list(self._switch.report) if self._switch else []
