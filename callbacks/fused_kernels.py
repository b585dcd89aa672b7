"""``zoo.callbacks.FusedKernels``: run the zoo's Triton kernels in a model, per instance and reversibly.

This file is the whole kernel switch. A model calls a zoo op through the op's nn.Module form (``zoo.ops``:
``RelationKLLoss``, ``GraphPropagation``, ``LinearCrossEntropyLoss``; base class ``zoo.ops.OpModule``), which passes
its ``impl`` attribute to the op. ``impl`` is an init argument that the LightningModule exposes and YAML can set
(``"auto" | "triton" | "reference"``, as transformers' ``attn_implementation``). For a run, :func:`apply_fused_kernels`
sets ``impl = "triton"`` on every op module whose kernel can run on the training device, and the returned
``FusedSwitch.restore()`` puts each previous value back. Users turn it on with this callback or with the
``zoo_ddp`` / ``zoo_fsdp`` strategies (``zoo/strategies.py``), which use this callback.

The switch happens in the callback's ``setup``, which Lightning calls before the strategy moves and wraps the model
(DDP/FSDP) and builds the optimizers (and before ``LightningModule.configure_model``: op modules created there are
not seen; zoo models build theirs in ``__init__``). Nothing global is patched: other instances of the same class,
other models and other tests are unaffected, and op modules hold no state, so checkpoints are unchanged. Where an op
cannot run (no CUDA device, no Triton, unsupported device) its modules keep their ``impl`` and the log says why
(``strict=True`` raises instead). On CPU tensors the kernels run only under ``TRITON_INTERPRET=1`` (Triton's
interpreter, for tests).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn

log = logging.getLogger(__name__)


@dataclass
class FusedSwitch:
    """What :func:`apply_fused_kernels` changed, to undo it; ``report`` is one line per op."""

    changes: list = field(default_factory=list)  # (op module, its previous impl)
    report: list[str] = field(default_factory=list)
    running: dict[str, list[str]] = field(default_factory=dict)  # op -> names of the modules running the kernel

    def restore(self) -> None:
        for module, previous in reversed(self.changes):
            module.impl = previous
        self.changes.clear()
        self.running.clear()


def _selected_ops(ops) -> tuple[str, ...]:
    from zoo.ops import OPS

    if ops == "all" or ops is None:
        return tuple(OPS)
    names = (ops,) if isinstance(ops, str) else tuple(ops)
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise ValueError(f"FusedKernels: unknown op(s) {unknown}; the zoo ops are {list(OPS)} (or ops='all')")
    return names


def apply_fused_kernels(
    model: nn.Module, ops="all", device: torch.device | str = "cuda", strict: bool = False
) -> FusedSwitch:
    """Set ``impl = "triton"`` on the op modules of ``model`` whose op is among ``ops`` and can run on ``device``.
    Returns a ``FusedSwitch`` whose ``restore()`` undoes every change."""
    from zoo.ops import _dispatch

    selected = _selected_ops(ops)
    why_not = _dispatch.kernel_error(torch.device(device).type)
    users: dict[str, list[tuple[str, nn.Module]]] = {op: [] for op in selected}
    for name, module in model.named_modules():
        if isinstance(module, _dispatch.OpModule) and module.op in users:
            users[module.op].append((name or type(module).__name__, module))
    switch = FusedSwitch()
    for op in selected:
        names = [name for name, _ in users[op]]
        if not names:
            switch.report.append(f"{op}: not used by this model (no zoo.ops module calls it)")
        elif why_not is not None:
            switch.report.append(f"{op}: reference kept in {len(names)} module(s): {why_not}")
            if strict:
                switch.restore()
                raise RuntimeError(f"FusedKernels(strict=True): {op} cannot run: {why_not}")
        else:
            for _, module in users[op]:
                if module.impl != "triton":  # already "triton": whoever set it (another switch) puts it back
                    switch.changes.append((module, module.impl))
                    module.impl = "triton"
            switch.running[op] = names
            switch.report.append(
                f"{op}: Triton kernel in {len(names)} module(s): {', '.join(names[:5])}"
                + (" ..." if len(names) > 5 else "")
            )
    return switch


class FusedKernels(Callback):
    """Run the zoo's Triton kernels in the model's op modules for the run (see the module docstring).

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
