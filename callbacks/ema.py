"""Exponential moving average of the weights, used for validation, checkpoints and export.

Lightning's own :class:`~lightning.pytorch.callbacks.EMAWeightAveraging` does the work (an ``AveragedModel``
updated after every optimizer step, swapped in for validation, written as ``state_dict`` in checkpoints and
copied into the model when training ends, so ``zoo export`` of the last checkpoint is the EMA model). This
subclass only sets the zoo recipes' defaults: EMO and TinyMIM's fine-tuning average every step with decay
0.9998 and include BatchNorm buffers (``use_buffers=True``), as timm's ModelEma does.
"""

from __future__ import annotations

from lightning.pytorch.callbacks import EMAWeightAveraging


class EMA(EMAWeightAveraging):
    """EMA of all weights and buffers. ``decay``: per optimizer step; ``update_every_n_steps``: update period;
    ``update_starting_at_step``: no averaging before this step (warm-up)."""

    def __init__(
        self,
        decay: float = 0.9998,
        update_every_n_steps: int = 1,
        update_starting_at_step: int | None = None,
        use_buffers: bool = True,
        device: str | None = None,
    ) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        super().__init__(
            device=device,
            use_buffers=use_buffers,
            decay=decay,
            update_every_n_steps=update_every_n_steps,
            update_starting_at_step=update_starting_at_step,
        )
        self.decay = decay
