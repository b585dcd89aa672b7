"""Lightning strategies for zoo models, registered with Lightning's ``StrategyRegistry`` so YAML can name them.

Importing this module registers (``zoo fit`` imports it before building the Trainer):

- ``zoo_ddp`` / ``zoo_ddp_spawn`` / ``zoo_ddp_find_unused_parameters_true``: Lightning's ``DDPStrategy``
  (``start_method`` popen / spawn) that first switches the model's op modules to the zoo's Triton kernels (the
  ``zoo.callbacks.FusedKernels`` switch; kernels that cannot run on the device keep the reference path, logged), with
  ``gradient_as_bucket_view=True`` (gradients live in DDP's buckets: one gradient copy less).
- ``zoo_fsdp`` / ``zoo_fsdp_checkpointed``: Lightning's ``FSDPStrategy`` whose auto-wrap policy wraps each block of
  the model in its own FSDP unit — and, for ``_checkpointed``, applies activation checkpointing to the same blocks —
  plus the same fused-kernel switch.

The blocks are declared by the models, not listed here: any module of the model (its network in
``zoo/models/<method>/model.py``, or the LightningModule) may set ``fsdp_blocks``, a tuple of classes or class names
(like transformers' ``_no_split_modules``); the strategy collects them from the module it is about to wrap.

Everything distributed is Lightning's and PyTorch's own; these subclasses only choose settings.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, StrategyRegistry
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

log = logging.getLogger(__name__)


def fsdp_block_classes(model: nn.Module, extra: Iterable[str | type] = ()) -> set[type]:
    """The classes FSDP shards by (one unit per instance): those named in ``fsdp_blocks`` by any module of
    ``model``, plus ``extra``, that ``model`` has instances of (subclasses count). A name matches a class's
    ``__name__`` or its ``module.qualname`` path."""
    wanted = list(extra)
    for module in model.modules():
        declared = getattr(module, "fsdp_blocks", ()) or ()
        if isinstance(declared, (str, type)):
            declared = (declared,)
        wanted.extend(declared)
    bad = [w for w in wanted if not isinstance(w, (str, type))]
    if bad:
        raise TypeError(f"fsdp_blocks entries must be nn.Module classes or class names, got {bad!r}")
    classes = {w for w in wanted if isinstance(w, type)}
    names = {w for w in wanted if isinstance(w, str)}
    found = set()
    for module in model.modules():
        for cls in type(module).__mro__:
            if cls in classes or cls.__name__ in names or f"{cls.__module__}.{cls.__qualname__}" in names:
                found.add(cls)
                break
    return found


class _FusedKernelsMixin:
    """The zoo strategies' kernel switch: the ``FusedKernels`` callback's own setup (before the strategy wraps the
    model) and teardown (after it unwraps), called by the strategy. ``fused_ops``: "all", op names, or None (off)."""

    def _init_kernels(self, fused_ops) -> None:
        from zoo.callbacks.fused_kernels import FusedKernels

        self.fused_ops = fused_ops
        self._kernels = FusedKernels(fused_ops) if fused_ops else None
        self._kernels_trainer = None

    def setup(self, trainer) -> None:
        if self._kernels is not None:
            self._kernels.setup(trainer, self.lightning_module, "fit")
            self._kernels_trainer = trainer
        super().setup(trainer)

    def teardown(self) -> None:
        super().teardown()
        if self._kernels is not None and self._kernels_trainer is not None:
            self._kernels.teardown(self._kernels_trainer, self.lightning_module, "fit")
            self._kernels_trainer = None


class ZooDDPStrategy(_FusedKernelsMixin, DDPStrategy):
    """``DDPStrategy`` with the zoo's fused kernels (``fused_ops``: "all", a list of op names, or None for none)."""

    def __init__(self, fused_ops: str | list[str] | None = "all", **kwargs) -> None:
        kwargs.setdefault("gradient_as_bucket_view", True)
        super().__init__(**kwargs)
        self._init_kernels(fused_ops)


class ZooFSDPStrategy(_FusedKernelsMixin, FSDPStrategy):
    """``FSDPStrategy`` wrapping each block the model declares (``fsdp_blocks``; ``block_classes`` adds class names
    or paths) in its own FSDP unit; ``checkpoint_blocks=True`` also recomputes their activations in the backward. An
    explicit ``auto_wrap_policy`` / ``activation_checkpointing_policy`` wins over the blocks."""

    def __init__(
        self,
        block_classes: list[str] | None = None,
        checkpoint_blocks: bool = False,
        fused_ops: str | list[str] | None = "all",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.block_classes = tuple(block_classes or ())
        self.checkpoint_blocks = checkpoint_blocks
        self._init_kernels(fused_ops)

    def configure_block_policies(self, model: nn.Module) -> set[type]:
        """Set the auto-wrap (and checkpointing) policy from the block classes of ``model``."""
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        blocks = fsdp_block_classes(model, self.block_classes)
        if not blocks:
            rank_zero_info(
                f"{type(self).__name__}: the model declares no fsdp_blocks; FSDP wraps it as one unit "
                "(set fsdp_blocks on the model, or pass block_classes=['pkg.module.Block'])"
            )
            return blocks
        names = sorted(f"{c.__module__}.{c.__qualname__}" for c in blocks)
        if "auto_wrap_policy" not in self.kwargs:
            self.kwargs["auto_wrap_policy"] = ModuleWrapPolicy(blocks)
            rank_zero_info(f"{type(self).__name__}: one FSDP unit per {names}")
        if self.checkpoint_blocks and not self._activation_checkpointing_kwargs:
            self._activation_checkpointing_kwargs = {"auto_wrap_policy": ModuleWrapPolicy(blocks)}
            rank_zero_info(f"{type(self).__name__}: activation checkpointing of {names}")
        return blocks

    def _setup_model(self, model: nn.Module) -> nn.Module:
        self.configure_block_policies(model)
        return super()._setup_model(model)


def register(registry=StrategyRegistry) -> None:
    """Register the zoo strategies (idempotent: re-registering replaces the entries)."""
    registry.register(
        "zoo_ddp",
        ZooDDPStrategy,
        description="DDP for zoo models, with the zoo's fused kernels",
        override=True,
        start_method="popen",
    )
    registry.register(
        "zoo_ddp_find_unused_parameters_true",
        ZooDDPStrategy,
        override=True,
        start_method="popen",
        find_unused_parameters=True,
        description="zoo_ddp for models with parameters that get no gradient in some steps "
        "(e.g. TinyMIM's student: its last block's projection and MLP)",
    )
    registry.register(
        "zoo_ddp_spawn",
        ZooDDPStrategy,
        override=True,
        start_method="spawn",
        description="DDP (start_method='spawn') for zoo models, with the zoo's fused kernels",
    )
    registry.register(
        "zoo_fsdp",
        ZooFSDPStrategy,
        override=True,
        description="FSDP sharding each block the model declares (fsdp_blocks), with the fused kernels",
    )
    registry.register(
        "zoo_fsdp_checkpointed",
        ZooFSDPStrategy,
        override=True,
        checkpoint_blocks=True,
        description="zoo_fsdp plus activation checkpointing of each zoo block",
    )


register()
