"""Lightning strategies for zoo models, registered with Lightning's ``StrategyRegistry`` so YAML can name them.

Importing this module registers (``zoo fit`` imports it before building the Trainer):

- ``zoo_ddp`` / ``zoo_ddp_spawn`` / ``zoo_ddp_find_unused_parameters_true``: Lightning's ``DDPStrategy`` (``start_method`` popen / spawn) that first switches
  the model's opted-in modules to the zoo's Triton kernels (``zoo.callbacks.fused_kernels`` protocol; kernels that
  cannot run on the device keep the reference path, logged), with ``gradient_as_bucket_view=True`` (gradients live
  in DDP's buckets: one gradient copy less).
- ``zoo_fsdp`` / ``zoo_fsdp_checkpointed``: Lightning's ``FSDPStrategy`` whose auto-wrap policy wraps each
  transformer / inverted-residual block of a zoo model in its own FSDP unit — and, for ``_checkpointed``, applies
  activation checkpointing to the same blocks — plus the same fused-kernel switch.

Block classes are named by import path (``BLOCK_CLASSES``; extend with ``block_classes=[...]``) and resolved only
from modules that are already imported — a model holding an instance of a class has imported its module — so no
library is imported for a model that does not use it, and a path that does not resolve is skipped.

Everything distributed is Lightning's and PyTorch's own; these subclasses only choose settings.
"""
from __future__ import annotations

import importlib
import logging
import sys

from lightning.pytorch.strategies import DDPStrategy, FSDPStrategy, StrategyRegistry
from lightning.pytorch.utilities import rank_zero_info
from torch import nn

log = logging.getLogger(__name__)

#: Block classes of zoo models, by import path: the units FSDP shards and activation checkpointing recomputes.
BLOCK_CLASSES = (
    "timm.models.vision_transformer.Block",  # ViT blocks (TinyMIM students/teachers, MAE-style backbones)
    "timm.models.vision_transformer.ResPostBlock",
    "zoo.models.emo.model.iRMB",  # EMO's inverted residual mobile block
    "transformers.models.bert.modeling_bert.BertLayer",  # BERT-style encoders (MLM / coreference heads)
)


def resolve_block_classes(model: nn.Module, paths=BLOCK_CLASSES) -> set[type]:
    """The classes among ``paths`` that ``model`` has instances of (subclasses count)."""
    found = set()
    for path in paths:
        module_name, _, class_name = path.rpartition(".")
        if module_name not in sys.modules:  # not imported -> this model cannot hold one
            continue
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as e:
            log.debug("zoo strategies: skipping block class %s (%s)", path, e)
            continue
        if isinstance(cls, type) and issubclass(cls, nn.Module) and any(isinstance(m, cls) for m in model.modules()):
            found.add(cls)
    return found


class _FusedOpsMixin:
    """Switches the model's opted-in modules to the Triton kernels before the strategy wraps it; undoes it in
    teardown."""

    def _apply_fused(self) -> None:
        if not self.fused_ops or self._fused is not None:
            return
        from zoo.callbacks.fused_kernels import apply_fused_kernels

        self._fused = apply_fused_kernels(self.model, self.fused_ops, self.root_device)
        rank_zero_info(f"{type(self).__name__}: fused kernels on {self.root_device}:\n  "
                       + "\n  ".join(self._fused.report))

    def _restore_fused(self) -> None:
        if self._fused is not None:
            self._fused.restore()
            self._fused = None


class ZooDDPStrategy(_FusedOpsMixin, DDPStrategy):
    """``DDPStrategy`` with the zoo's fused kernels (``fused_ops``: "all", a list of op names, or None for none)."""

    def __init__(self, fused_ops: str | list[str] | None = "all", **kwargs) -> None:
        kwargs.setdefault("gradient_as_bucket_view", True)
        super().__init__(**kwargs)
        self.fused_ops = fused_ops
        self._fused = None

    def setup(self, trainer) -> None:
        self._apply_fused()
        super().setup(trainer)

    def teardown(self) -> None:
        super().teardown()
        self._restore_fused()


class ZooFSDPStrategy(_FusedOpsMixin, FSDPStrategy):
    """``FSDPStrategy`` wrapping each zoo block (``BLOCK_CLASSES`` + ``block_classes``) in its own FSDP unit;
    ``checkpoint_blocks=True`` also recomputes their activations in the backward. An explicit
    ``auto_wrap_policy`` / ``activation_checkpointing_policy`` wins over the block classes."""

    def __init__(self, block_classes: list[str] | None = None, checkpoint_blocks: bool = False,
                 fused_ops: str | list[str] | None = "all", **kwargs) -> None:
        super().__init__(**kwargs)
        self.block_class_paths = tuple(BLOCK_CLASSES) + tuple(block_classes or ())
        self.checkpoint_blocks = checkpoint_blocks
        self.fused_ops = fused_ops
        self._fused = None

    def configure_block_policies(self, model: nn.Module) -> set[type]:
        """Set the auto-wrap (and checkpointing) policy from the block classes found in ``model``."""
        from torch.distributed.fsdp.wrap import ModuleWrapPolicy

        blocks = resolve_block_classes(model, self.block_class_paths)
        if not blocks:
            rank_zero_info(f"{type(self).__name__}: no known block class in the model; FSDP wraps it as one unit "
                           "(pass block_classes=['pkg.module.Block'] to shard per block)")
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

    def setup(self, trainer) -> None:
        self._apply_fused()
        super().setup(trainer)

    def teardown(self) -> None:
        super().teardown()
        self._restore_fused()


def register(registry=StrategyRegistry) -> None:
    """Register the zoo strategies (idempotent: re-registering replaces the entries)."""
    registry.register("zoo_ddp", ZooDDPStrategy, description="DDP for zoo models, with the zoo's fused kernels",
                      override=True, start_method="popen")
    registry.register("zoo_ddp_find_unused_parameters_true", ZooDDPStrategy, override=True, start_method="popen",
                      find_unused_parameters=True,
                      description="zoo_ddp for models with parameters that get no gradient in some steps "
                                  "(e.g. TinyMIM's student: its last block's projection and MLP)")
    registry.register("zoo_ddp_spawn", ZooDDPStrategy, override=True, start_method="spawn",
                      description="DDP (start_method='spawn') for zoo models, with the zoo's fused kernels")
    registry.register("zoo_fsdp", ZooFSDPStrategy, override=True,
                      description="FSDP sharding each zoo block (ViT Block, iRMB, ...), with the fused kernels")
    registry.register("zoo_fsdp_checkpointed", ZooFSDPStrategy, override=True, checkpoint_blocks=True,
                      description="zoo_fsdp plus activation checkpointing of each zoo block")


register()
