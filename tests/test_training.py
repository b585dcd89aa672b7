"""zoo.training: the timm warm-up + cosine schedule gives the values of the two hand-written schedules it replaced
(EMO's and MAE's/TinyMIM's ``lr_sched``), at every step and inside a Lightning fit; timm's no-weight-decay groups
are the groups the modules built by hand."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from zoo.training import TimmScheduled, warmup_cosine


# The schedules as they were written in zoo/models/emo/module.py and zoo/models/tinymim/module.py (LambdaLR factors).
def old_emo_lr(step, total, warmup, lr, warmup_lr, min_lr):
    if warmup > 0 and step < warmup:
        return warmup_lr + (lr - warmup_lr) * step / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + (lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def old_mae_factor(step, total, warmup, min_ratio):
    if warmup > 0 and step < warmup:
        return step / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _new_lrs(groups, total, warmup, min_lr, warmup_lr, steps):
    params = [nn.Parameter(torch.zeros(1)) for _ in groups]
    opt = torch.optim.AdamW([{"params": [p], **g} for p, g in zip(params, groups)], lr=groups[0]["lr"])
    sched = warmup_cosine(opt, total, warmup, min_lr, warmup_lr)["scheduler"]
    out = {0: [g["lr"] for g in opt.param_groups]}  # before any step: the lr of the first step
    for s in steps:
        sched.step_update(s)
        out[s] = [g["lr"] for g in opt.param_groups]
    return out


STEPS = [1, 2, 5, 19, 20, 21, 50, 77, 99, 100, 101, 150]


@pytest.mark.parametrize("total,warmup", [(100, 20), (100, 0), (37, 5)])
def test_emo_schedule_values_unchanged(total, warmup):
    lr, warmup_lr, min_lr = 6e-3, 1e-6, 1e-5
    new = _new_lrs([{"lr": lr}, {"lr": lr, "weight_decay": 0.0}], total, warmup, min_lr, warmup_lr, STEPS)
    for s, values in new.items():
        # LambdaLR(opt, lambda s: old_emo_lr(...) / lr) on groups whose lr is lr
        want = lr * (old_emo_lr(s, total, warmup, lr, warmup_lr, min_lr) / lr)
        assert values == [pytest.approx(want, rel=1e-12, abs=1e-18)] * 2, s


@pytest.mark.parametrize("total,warmup,min_lr", [(100, 10, 1e-6), (100, 0, 0.0), (10, 15, 0.0)])
def test_mae_schedule_values_unchanged_with_layer_scales(total, warmup, min_lr):
    lr = 5e-4
    scales = [0.65**3, 0.65, 1.0]
    # ViTFinetuneModule's layer-decay groups: lr x lr_scale, and the lr_scale that timm's scheduler applies
    groups = [{"lr": lr * s, "lr_scale": s} for s in scales]
    new = _new_lrs(groups, total, warmup, min_lr, 0.0, STEPS)
    for s, values in new.items():
        want = [lr * sc * old_mae_factor(s, total, warmup, min_lr / lr) for sc in scales]
        assert values == [pytest.approx(w, rel=1e-12, abs=1e-18) for w in want], s


class _Probe(TimmScheduled, pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 1)
        self.seen = []

    def training_step(self, batch, _):
        self.seen.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return self.lin(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.1)
        return {
            "optimizer": opt,
            "lr_scheduler": warmup_cosine(opt, total_steps=8, warmup_steps=3, min_lr=1e-3, warmup_lr=1e-4),
        }


def test_lightning_steps_the_timm_scheduler_once_per_optimizer_step(tmp_path):
    m = _Probe()
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=10,
        accumulate_grad_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(m, DataLoader(TensorDataset(torch.randn(40, 3)), batch_size=2))
    # two batches per optimizer step; optimizer step k runs at the factor LambdaLR gave after k steps
    want = [0.1 * old_emo_lr(k, 8, 3, 0.1, 1e-4, 1e-3) / 0.1 for k in range(10) for _ in range(2)]
    assert m.seen == [pytest.approx(w, rel=1e-12) for w in want]


def test_no_weight_decay_groups_are_the_hand_written_ones():
    from zoo.models.emo.module import EMOModule
    from zoo.models.tinymim.module import TinyMIMDistillModule

    emo = EMOModule("emo_1m", num_classes=10, img_size=32)
    skip = emo.model.no_weight_decay()
    old = [
        ({id(p) for n, p in emo.model.named_parameters() if n not in skip}, 0.05),
        ({id(p) for n, p in emo.model.named_parameters() if n in skip}, 0.0),
    ]
    assert [({id(p) for p in g["params"]}, g["weight_decay"]) for g in emo.param_groups()] == old

    tm = TinyMIMDistillModule(
        net=dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, last_heads=4), lr=1e-3
    )
    tm.trainer = pl.Trainer(accelerator="cpu", max_steps=4, logger=False)  # the schedule reads the step count
    opt = tm.configure_optimizers()["optimizer"]
    named = [(n, p) for n, p in tm.model.named_parameters() if p.requires_grad]
    old = [
        ({id(p) for n, p in named if not (p.ndim <= 1 or n.endswith(".bias"))}, 0.05),
        ({id(p) for n, p in named if p.ndim <= 1 or n.endswith(".bias")}, 0.0),
    ]
    assert [({id(p) for p in g["params"]}, g["weight_decay"]) for g in opt.param_groups] == old
    assert id(tm.model.cls_token) in old[0][0]  # MAE pre-training decays the tokens
