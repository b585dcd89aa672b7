"""TinyMIM: relation loss, frozen teacher, converter, offline Hub loading, fine-tuning, demo configs."""

from __future__ import annotations

import argparse
import datetime
import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

import zoo
from zoo import hub, registry
from zoo.errors import UserError
from zoo.models.tinymim import convert
from zoo.models.tinymim.model import TinyMIMStarViT, TinyMIMViT, sincos_pos_embed
from zoo.models.tinymim.module import (
    TinyMIMDistillModule,
    ViTFinetuneModule,
    color_jitter,
    relation_kl_loss,
)

REPO = Path(__file__).resolve().parents[2]
TEACHER = dict(embed_dim=48, depth=3, num_heads=4, img_size=32, patch_size=8, seed=1)
STUDENT = dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, last_heads=4)


def tiny_distill(**kw) -> TinyMIMDistillModule:
    """A toy student (``net`` overrides of STUDENT's keys) with the toy teacher; other keywords go to the module."""
    torch.manual_seed(0)
    net = {**STUDENT, **{k: v for k, v in kw.items() if k in STUDENT}}
    rest = {k: v for k, v in kw.items() if k not in STUDENT}
    return TinyMIMDistillModule(net=net, **{"teacher": TEACHER, "teacher_block": -1, "lr": 1e-3, **rest})


def direct_relation_kl(s_a, s_b, t_a, t_b):
    """The official computation (models_tinymim.py): KLDivLoss(log(student probs), teacher probs), summed over keys,
    averaged over batch x heads x queries; temperatures 1/sqrt(own head dim)."""
    s = torch.softmax(s_a @ s_b.transpose(-1, -2) * s_a.shape[-1] ** -0.5, dim=-1)
    t = torch.softmax(t_a @ t_b.transpose(-1, -2) * t_a.shape[-1] ** -0.5, dim=-1)
    return torch.nn.KLDivLoss(reduction="none")(s.log(), t).sum(-1).mean()


# ============================================================================================== relation loss
@pytest.mark.parametrize("impl", ["reference", "auto"])
def test_relation_loss_matches_direct_computation(impl):
    g = torch.Generator().manual_seed(0)
    student = [torch.randn(2, 3, 7, 4, generator=g, dtype=torch.float64) for _ in range(3)]
    teacher = [torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64) for _ in range(3)]
    loss, l_qk, l_vv = relation_kl_loss(student, teacher, impl=impl)
    want_qk = direct_relation_kl(student[0], student[1], teacher[0], teacher[1])
    want_vv = direct_relation_kl(student[2], student[2], teacher[2], teacher[2])
    torch.testing.assert_close(l_qk.double(), want_qk, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(l_vv.double(), want_vv, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss, l_qk + l_vv)  # weights 1:1


def test_relation_loss_is_zero_for_identical_relations_and_nonnegative_otherwise():
    g = torch.Generator().manual_seed(1)
    qkv = [torch.randn(3, 4, 9, 8, generator=g) for _ in range(3)]
    loss, _, _ = relation_kl_loss(qkv, [t.clone() for t in qkv])
    assert abs(loss.item()) < 1e-6
    for _ in range(5):
        other = [torch.randn(3, 4, 9, 16, generator=g) * 3 for _ in range(3)]
        loss, l_qk, l_vv = relation_kl_loss(qkv, other)
        assert l_qk.item() > 0 and l_vv.item() > 0 and loss.item() > 0


def test_relation_loss_rejects_mismatched_heads():
    s = [torch.randn(2, 2, 5, 4) for _ in range(3)]
    t = [torch.randn(2, 4, 5, 4) for _ in range(3)]
    with pytest.raises(ValueError, match="heads"):
        relation_kl_loss(s, t)


def test_student_equal_to_teacher_gives_zero_loss_in_the_module():
    """A student that *is* the teacher (same weights, same head split, same images) has zero relation loss."""
    m = TinyMIMDistillModule(
        net={**STUDENT, "embed_dim": 48, "depth": 3, "num_heads": 4, "last_heads": 4},
        teacher=TEACHER,
        teacher_block=-1,
        lr=1e-3,
    )
    m.configure_model()
    m.model.load_state_dict(m.teacher.state_dict())
    m.eval()
    loss, l_qk, l_vv = m.relation_loss(torch.randn(3, 3, 32, 32))
    assert loss.item() < 1e-5


def test_module_loss_is_the_relation_of_teacher_block_and_student_last_block():
    m = tiny_distill(teacher_block=2)  # 1-based: the second of three teacher blocks
    m.configure_model()
    m.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        loss, _, _ = m.relation_loss(x)
        tq, tk, tv = m.teacher.forward_qkv(x, block=1)
        sq, sk, sv = m.model.forward_qkv(x, block=-1)
    want = direct_relation_kl(sq, sk, tq, tk) + direct_relation_kl(sv, sv, tv, tv)
    torch.testing.assert_close(loss, want, rtol=1e-5, atol=1e-6)


def test_forward_qkv_is_what_timms_attention_uses():
    torch.manual_seed(0)
    net = TinyMIMViT(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, last_heads=4).eval()
    x = torch.randn(2, 3, 32, 32)
    q, k, v = net.forward_qkv(x, -1)
    assert q.shape == (2, 4, 17, 8)
    h = net.blocks[0](net.embed(x))
    blk = net.blocks[1]
    a = torch.softmax(q @ k.transpose(-1, -2) * 8**-0.5, dim=-1) @ v
    torch.testing.assert_close(blk.attn.proj(a.transpose(1, 2).reshape(2, 17, 32)), blk.attn(blk.norm1(h)))


def test_fixed_sincos_position_embedding_matches_mae_layout():
    pe = sincos_pos_embed(8, (2, 3))
    assert pe.shape == (1, 7, 8) and pe[0, 0].abs().sum() == 0  # CLS row zero
    # patch (row 1, col 2) = token 1 + 1*3 + 2: first half encodes the column, second half the row
    omega = 1.0 / 10000 ** (torch.arange(2) / 2.0)
    want = torch.cat([torch.sin(2 * omega), torch.cos(2 * omega), torch.sin(1 * omega), torch.cos(1 * omega)])
    torch.testing.assert_close(pe[0, 1 + 3 + 2], want.float())
    net = TinyMIMViT(img_size=32, patch_size=8, embed_dim=16, depth=1, num_heads=2)
    assert not net.pos_embed.requires_grad


# ============================================================================================== the teacher
def test_gradients_reach_only_the_student():
    m = tiny_distill()
    m.configure_model()
    m.train()
    assert not m.teacher.training, "the teacher stays in eval mode when the module trains"
    loss = m.training_step((torch.randn(4, 3, 32, 32), torch.zeros(4, dtype=torch.long)), 0)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in m.teacher.parameters())
    got = {n for n, p in m.model.named_parameters() if p.grad is not None}
    # Everything up to the last block's q, k, v is trained; the rest of that block and the final norm are not used
    # by the loss (as in the released model).
    assert {
        "cls_token",
        "patch_embed.proj.weight",
        "blocks.0.mlp.fc2.weight",
        "blocks.1.attn.qkv.weight",
        "blocks.1.norm1.weight",
    } <= got
    assert not got & {"blocks.1.attn.proj.weight", "blocks.1.mlp.fc1.weight", "norm.weight", "pos_embed"}
    assert all(torch.isfinite(m.model.get_parameter(n).grad).all() for n in got)


def test_teacher_is_built_lazily_and_not_part_of_the_model():
    with torch.device("meta"):
        m = zoo.create("tinymim-base")  # paper size on meta: no teacher, no file read
    assert m.teacher is None
    assert m.hparams.teacher_block == 18 and m.model.last_heads == 16
    assert not any(k.startswith("teacher") for k in m.state_dict())


def test_teacher_head_count_must_match_the_students_last_block():
    m = tiny_distill(last_heads=2)
    with pytest.raises(ValueError, match="heads"):
        m.configure_model()
    m = tiny_distill(last_heads=2, teacher_heads=2)  # re-split the teacher's channels instead
    m.configure_model()
    assert m.relation_loss(torch.randn(2, 3, 32, 32))[0].item() > 0


def test_no_teacher_is_a_clear_error():
    m = TinyMIMDistillModule(net=STUDENT)
    with pytest.raises(ValueError, match="needs a teacher"):
        m.configure_model()


def test_teacher_frozen_through_fit_and_left_out_of_checkpoints(tmp_path):
    from lightning.pytorch import Callback, Trainer

    from zoo.data_modules.images import ImageNetDataModule

    class Watch(Callback):
        def on_train_start(self, trainer, pl_module):
            self.teacher0 = {k: v.clone() for k, v in pl_module.teacher.state_dict().items()}
            self.student0 = {k: v.clone() for k, v in pl_module.model.state_dict().items()}
            opt_params = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
            self.teacher_in_opt = any(id(p) in opt_params for p in pl_module.teacher.parameters())
            self.modes = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.modes.append((pl_module.training, pl_module.teacher.training))

    def data():
        return ImageNetDataModule(
            root=None,
            image_size=32,
            batch_size=8,
            num_workers=0,
            auto_augment=None,
            color_jitter=None,
            re_prob=0.0,
            crop_pct=1.0,
            pin_memory=False,
        )

    watch = Watch()
    m = tiny_distill(lr=None, blr=1e-3, warmup_epochs=0)
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[watch],
        default_root_dir=tmp_path,
    )
    trainer.fit(m, datamodule=data())
    assert not watch.teacher_in_opt
    assert watch.modes and all(s and not t for s, t in watch.modes)
    for k, v in m.teacher.state_dict().items():
        assert torch.equal(v, watch.teacher0[k]), f"teacher weight {k} changed during fit"
    assert any(not torch.equal(v, watch.student0[k]) for k, v in m.model.state_dict().items())
    # lr scaled by the batch: blr * 8 / 256
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(1e-3 * 8 / 256)

    ckpt = tmp_path / "distill.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert state and not any(k.startswith("teacher.") for k in state)
    # resuming restores into a module whose teacher is rebuilt from its spec
    m2 = tiny_distill(lr=None, blr=1e-3, warmup_epochs=0)
    Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    ).fit(m2, datamodule=data(), ckpt_path=ckpt)
    # and exporting gives the student alone
    mod, _, _ = hub.module_from_checkpoint(ckpt, "zoo.models.tinymim.module.TinyMIMDistillModule")
    assert mod.teacher is None
    # sequential distillation: the distilled student (4 heads in its last block) teaches a smaller one
    nxt = TinyMIMDistillModule(
        net=dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2, last_heads=2),
        teacher=str(ckpt),
        teacher_block=-1,
        teacher_heads=2,
        lr=1e-3,
    )
    nxt.configure_model()
    torch.testing.assert_close(
        nxt.teacher.state_dict()["blocks.1.attn.qkv.weight"], m.model.state_dict()["blocks.1.attn.qkv.weight"]
    )
    assert nxt.teacher.blocks[0].attn.num_heads == 2 and nxt.teacher.blocks[1].attn.num_heads == 4
    assert nxt.relation_loss(torch.randn(2, 3, 32, 32))[0].item() > 0


def test_color_jitter_acts_per_image_and_only_on_the_students_copy():
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    x01 = torch.rand(6, 3, 8, 8)
    x = (x01 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    assert torch.equal(color_jitter(x, 0.0, mean, std), x)
    y = color_jitter(x, 0.4, mean, std, generator=torch.Generator().manual_seed(0))
    y01 = y * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
    assert y01.min() >= -1e-5 and y01.max() <= 1 + 1e-5
    change = (y01 - x01).abs().flatten(1).mean(1)
    assert (change > 1e-3).all() and change.std() > 0  # every image changed, by different amounts
    # brightness alone (contrast = saturation = 1) is a per-image scaling: check one image against torchvision
    from torchvision.transforms.v2 import functional as TF

    torch.testing.assert_close(TF.adjust_brightness(x01[:1], 1.3), (1.3 * x01[:1]).clamp(0, 1))


def warmup_cosine(step, total, warmup, min_ratio):
    """The lr factor at optimizer step ``step`` of the schedule the TinyMIM modules configure (peak lr 1)."""
    from zoo.training import warmup_cosine as schedule

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule(opt, total, warmup, min_ratio)["scheduler"].step_update(step)
    return opt.param_groups[0]["lr"]


def test_warmup_cosine_schedule():
    assert warmup_cosine(0, 100, 10, 0.0) == 0.0
    assert warmup_cosine(5, 100, 10, 0.0) == pytest.approx(0.5)
    assert warmup_cosine(10, 100, 10, 0.1) == pytest.approx(1.0)
    assert warmup_cosine(100, 100, 10, 0.1) == pytest.approx(0.1)


# ============================================================================================== converter
def official_vit_keys(dim, depth, tokens, patch=16, pretrain=True, classes=0, dist=False, neck=None):
    """Names and shapes of an official MAE/TinyMIM checkpoint , written out independently of zoo."""
    keys = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, tokens, dim),
        "patch_embed.proj.weight": (dim, 3, patch, patch),
        "patch_embed.proj.bias": (dim,),
    }
    for i in range(depth):
        b = f"blocks.{i}."
        keys.update(
            {
                b + "norm1.weight": (dim,),
                b + "norm1.bias": (dim,),
                b + "attn.qkv.weight": (3 * dim, dim),
                b + "attn.qkv.bias": (3 * dim,),
                b + "attn.proj.weight": (dim, dim),
                b + "attn.proj.bias": (dim,),
                b + "norm2.weight": (dim,),
                b + "norm2.bias": (dim,),
                b + "mlp.fc1.weight": (4 * dim, dim),
                b + "mlp.fc1.bias": (4 * dim,),
                b + "mlp.fc2.weight": (dim, 4 * dim),
                b + "mlp.fc2.bias": (dim,),
            }
        )
    if pretrain:
        keys.update({"norm.weight": (dim,), "norm.bias": (dim,)})
    if dist:
        keys["dist_token"] = (1, 1, dim)
    width = dim
    if neck:
        keys.update(
            {
                "conv1x1.0.weight": (dim,),
                "conv1x1.0.bias": (dim,),
                "conv1x1.1.weight": (neck, dim),
                "conv1x1.1.bias": (neck,),
            }
        )
        width = neck
    if classes:
        keys.update(
            {
                "fc_norm.weight": (width,),
                "fc_norm.bias": (width,),
                "head.weight": (classes, width),
                "head.bias": (classes,),
            }
        )
        if dist:
            keys.update({"head_dist.weight": (classes, width), "head_dist.bias": (classes,)})
    return keys


@pytest.mark.parametrize(
    "name, official",
    [
        ("tinymim-base", official_vit_keys(768, 12, 197)),  # TinyMIM-PT-B.pth
        ("tinymim-tiny", official_vit_keys(192, 12, 197)),
        ("tinymim-small.in1k-ft", official_vit_keys(384, 12, 197, pretrain=False, classes=1000)),
        ("tinymim-base.in1k-ft", official_vit_keys(768, 12, 197, pretrain=False, classes=1000)),
        ("tinymim-tiny-star", official_vit_keys(192, 12, 198, pretrain=False, classes=1000, dist=True, neck=1280)),
    ],
)
def test_official_layouts_convert_onto_the_paper_size_models(name, official):
    with torch.device("meta"):
        module = zoo.create(name)
        sd = {k: torch.empty(s) for k, s in official.items()}
    conv = convert.convert_state_dict({"model": sd})
    own = module.model.state_dict()
    assert set(conv) == set(own)
    assert {k: tuple(v.shape) for k, v in conv.items()} == {k: tuple(v.shape) for k, v in own.items()}
    assert sum(v.numel() for v in sd.values()) == registry.get(name).params  # exact count of the released layout


def test_mae_checkpoint_with_decoder_is_stripped_to_the_encoder_and_loads_as_a_teacher(tmp_path):
    keys = official_vit_keys(32, 2, 17, patch=8)
    g = torch.Generator().manual_seed(0)
    sd = {k: torch.randn(s, generator=g) for k, s in keys.items()}
    full = {
        **sd,
        "mask_token": torch.zeros(1, 1, 16),
        "decoder_embed.weight": torch.zeros(16, 32),
        "decoder_blocks.0.norm1.weight": torch.zeros(16),
        "decoder_pred.weight": torch.zeros(192, 16),
        "decoder_pos_embed": torch.zeros(1, 17, 16),
        "decoder_norm.weight": torch.zeros(16),
    }
    path = tmp_path / "mae_pretrain_tiny.pth"
    torch.save({"model": {f"module.{k}": v for k, v in full.items()}}, path)
    conv = convert.read_official(path)
    assert set(conv) == set(sd)
    # ... and the distillation module accepts the file as its teacher (dims inferred, heads = width / 64 -> 1 here,
    # overridden by teacher_heads)
    m = TinyMIMDistillModule(
        net={**STUDENT, "last_heads": 4}, teacher=str(path), teacher_block=2, teacher_heads=4, lr=1e-3
    )
    m.configure_model()
    torch.testing.assert_close(m.teacher.blocks[1].attn.qkv.weight, sd["blocks.1.attn.qkv.weight"])
    assert m.relation_loss(torch.randn(2, 3, 32, 32))[0].item() > 0


def test_converter_round_trip_with_values():
    g = torch.Generator().manual_seed(0)
    star = TinyMIMStarViT(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4, neck_dim=64, num_classes=10)
    official = {
        k: torch.randn(s, generator=g)
        for k, s in official_vit_keys(32, 2, 18, patch=8, pretrain=False, classes=10, dist=True, neck=64).items()
    }
    conv = convert.convert_state_dict({"model": official})
    star.load_state_dict(conv, strict=True)
    back = convert.to_official_state_dict(star.state_dict())["model"]
    assert set(back) == set(official)
    for k in official:
        assert torch.equal(back[k], official[k]), k
    with pytest.raises(ValueError, match="not a TinyMIM/MAE"):
        convert.convert_state_dict({"model": {"fc.weight": torch.zeros(2, 2)}})


def test_convert_cli_writes_a_hub_folder_whose_card_has_the_paper_results(tmp_path):
    g = torch.Generator().manual_seed(0)
    official = {
        k: torch.randn(s, generator=g) * 0.02
        for k, s in official_vit_keys(192, 12, 198, pretrain=False, classes=1000, dist=True, neck=1280).items()
    }
    path = tmp_path / "TinyMIM-FT-Tstar.pth"
    torch.save({"model": official}, path)
    out = tmp_path / "hub"
    assert convert.main([str(path), "tinymim-tiny-star", str(out)]) == 0
    card = (out / "README.md").read_text()
    assert "79.6" in card and "45" in card and "TinyMIM" in card
    m = zoo.load(f"local-dir:{out}")
    torch.testing.assert_close(m.model.head_dist.weight, official["head_dist.weight"])
    with torch.no_grad():
        assert m(torch.randn(1, 3, 224, 224)).shape == (1, 1000)


def test_released_base_card_carries_the_paper_numbers():
    card = str(hub.make_card(registry.get("tinymim-base")))
    assert "85" in card and "52.2" in card and "no-licence-upstream" in card


# ============================================================================================== loading
def _put_in_cache(folder: Path, cache: Path, repo_id: str, commit="89abcdef0123456789abcdef0123456789abcdef"):
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for f in ("config.json", "model.safetensors"):
        shutil.copy(folder / f, snap / f)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_zoo_load_tinymim_base_offline_from_the_hub_cache(tmp_path, hf_cache, monkeypatch):
    import dataclasses

    entry = registry.get("tinymim-base")
    assert entry.hub_repo
    # once the conversion is published, the entry pins its commit (weights status "hub"; today "pending")
    pinned = dataclasses.replace(entry, revision="89abcdef0123456789abcdef0123456789abcdef")
    assert pinned.weights == "hub"
    monkeypatch.setitem(registry._load(), "tinymim-base", pinned)
    torch.manual_seed(0)
    module = zoo.create("tinymim-base", **entry.tiny_overrides)
    folder = hub.export(module, tmp_path / "export", name="tinymim-base")
    assert json.loads((folder / "config.json").read_text())["init_args"]["net"]["embed_dim"] == 32  # tiny init args
    _put_in_cache(folder, hf_cache, entry.hub_repo)

    loaded = zoo.load("tinymim-base")
    assert isinstance(loaded, TinyMIMDistillModule) and not loaded.training
    assert loaded.teacher is None, "loading a student never builds its teacher"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        feats = loaded(x)
        torch.testing.assert_close(feats, module.eval()(x))
    assert feats.shape == (2, 17, 32)


def test_zoo_load_tinymim_base_without_weights_is_a_clear_error(hf_cache):
    with pytest.raises(ValueError, match=r"tinymim-base has no published weights yet.*zoo.models.tinymim.convert"):
        zoo.load("tinymim-base")  # pending: nothing was uploaded; the message says how to convert the file
    with pytest.raises(ValueError, match="no published weights"):
        zoo.load("tinymim-small")


# ============================================================================================== fine-tuning
def test_finetune_starts_from_a_distillation_checkpoint(tmp_path):
    student = tiny_distill()
    ckpt = tmp_path / "distill.ckpt"
    torch.save(
        {
            "state_dict": {f"model.{k}": v for k, v in student.model.state_dict().items()},
            "hyper_parameters": dict(student.hparams),
        },
        ckpt,
    )
    ft = ViTFinetuneModule(
        net=dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=1), num_classes=10, pretrained=str(ckpt)
    )
    ft.configure_model()
    for k in ("blocks.1.attn.qkv.weight", "patch_embed.proj.weight", "cls_token", "pos_embed"):
        torch.testing.assert_close(ft.model.state_dict()[k], student.model.state_dict()[k])
    assert ft.model.head.weight.abs().max() < 1e-3  # MAE's N(0, 2e-5) head, not loaded
    # a larger fine-tuning resolution resamples the position embedding
    ft64 = ViTFinetuneModule(
        net=dict(img_size=64, patch_size=8, embed_dim=24, depth=2, num_heads=2), num_classes=10, pretrained=str(ckpt)
    )
    ft64.configure_model()
    assert ft64.model.pos_embed.shape == (1, 65, 24)
    bad = ViTFinetuneModule(
        net=dict(img_size=32, patch_size=8, embed_dim=16, depth=2, num_heads=2), num_classes=10, pretrained=str(ckpt)
    )
    with pytest.raises(ValueError, match="do not fit"):
        bad.configure_model()


def test_layer_wise_lr_decay_is_maes():
    ft = ViTFinetuneModule(
        net=dict(img_size=32, patch_size=8, embed_dim=24, depth=3, num_heads=2), num_classes=10, layer_decay=0.65
    )
    scale = {}
    for g in ft.param_groups(1.0):
        for p in g["params"]:
            scale[id(p)] = (g["lr"], g["weight_decay"])
    named = dict(ft.model.named_parameters())
    L = 3 + 1
    assert scale[id(named["cls_token"])] == (pytest.approx(0.65**L), 0.0)
    assert scale[id(named["patch_embed.proj.weight"])] == (pytest.approx(0.65**L), 0.05)
    assert scale[id(named["blocks.0.attn.qkv.weight"])] == (pytest.approx(0.65**3), 0.05)
    assert scale[id(named["blocks.2.norm1.weight"])] == (pytest.approx(0.65), 0.0)
    assert scale[id(named["head.weight"])] == (pytest.approx(1.0), 0.05)


def test_finetune_training_step_with_mixup_and_metrics():
    torch.manual_seed(0)
    ft = ViTFinetuneModule(net=dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2), num_classes=10)
    assert ft.mixup_fn is not None
    batch = (torch.randn(5, 3, 32, 32), torch.randint(0, 10, (5,)))  # odd: one image is dropped for Mixup
    loss = ft.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.item() > 0
    ft.eval()
    ft.val_metrics.update(ft(batch[0]), batch[1])
    got = ft.val_metrics.compute()
    assert set(got) == {"val/acc1", "val/acc5"} and got["val/acc5"] >= got["val/acc1"]


def test_star_variant_has_two_heads_and_a_1280_neck_at_paper_size():
    with torch.device("meta"):
        m = zoo.create("tinymim-tiny-star")
    net = m.model
    assert net.pos_embed.shape == (1, 198, 192) and net.head.in_features == 1280
    assert net.neck[1].out_features == 1280 and net.blocks[0].attn.num_heads == 12
    with torch.device("meta"):
        t = zoo.create("tinymim-tiny")
        tf = zoo.create("tinymim-tiny.in1k-ft")
    assert [b.attn.num_heads for b in t.model.blocks] == [6] * 11 + [12]
    assert {b.attn.num_heads for b in tf.model.blocks} == {3}


# ============================================================================================== demo configs
def test_demo_configs_distill_then_finetune(tmp_path):
    from zoo.cli import main

    def shortened(name, root, **model):
        cfg = yaml.safe_load((REPO / "configs/demo" / name).read_text())
        cfg["trainer"].update(max_epochs=1, limit_train_batches=2, limit_val_batches=1, default_root_dir=str(root))
        cfg["trainer"]["logger"]["init_args"]["save_dir"] = str(root)
        cfg["trainer"]["callbacks"][0]["init_args"]["dirpath"] = str(root / "checkpoints")
        cfg["model"]["init_args"].update(model)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(cfg))
        return path

    main(["fit", "--config", str(shortened("tinymim-teacher.yaml", tmp_path / "teacher"))])
    teacher = tmp_path / "teacher" / "checkpoints" / "last.ckpt"
    main(["fit", "--config", str(shortened("tinymim.yaml", tmp_path / "distill", teacher=str(teacher)))])
    ckpt = tmp_path / "distill" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not any(k.startswith("teacher.") for k in state)
    main(["fit", "--config", str(shortened("tinymim-finetune.yaml", tmp_path / "ft", pretrained=str(ckpt)))])
    assert list((tmp_path / "ft" / "checkpoints").glob("*.ckpt"))
    for name in ("tinymim.yaml", "tinymim-finetune.yaml"):  # the paper recipes parse (no data is read)
        cfg = yaml.safe_load((REPO / "configs" / name).read_text())
        assert cfg["model"]["class_path"].startswith("zoo.models.tinymim.module.")


def test_relation_loss_is_an_op_module_that_fused_kernels_switches(monkeypatch):
    """The distillation module opts into zoo.callbacks.FusedKernels: its loss is a RelationKLLoss whose starting
    implementation is ``relation_impl``; the switch sets the Triton kernel and restore() gives the setting back."""
    from zoo.callbacks.fused_kernels import apply_fused_kernels

    m = tiny_distill(relation_impl="reference")
    m.configure_model()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        loss, l_qk, l_vv = m.relation_loss(images)
        from zoo.models.tinymim.module import _teacher_qkv

        t_qkv = _teacher_qkv(m.teacher, images, m._teacher_index, m.teacher.teacher_heads)
        ref = relation_kl_loss(m.model.forward_qkv(images, -1), t_qkv, impl="reference")
    torch.testing.assert_close(loss, ref[0])
    # temperatures from each model's own head dim: student 24 / 4 heads, teacher 48 / 4 heads
    assert m.relation_kl.student_scale == pytest.approx(6**-0.5)
    assert m.relation_kl.teacher_scale == pytest.approx(12**-0.5)
    monkeypatch.setattr("zoo.ops._dispatch.kernel_error", lambda device: None)
    switch = apply_fused_kernels(m, ["relation_kl"], "cuda")
    assert m.relation_kl.impl == "triton"
    assert any("relation_kl: Triton kernel in 1 module(s)" in line for line in switch.report)
    switch.restore()
    assert m.relation_kl.impl == "reference"
    assert not [k for k in m.state_dict() if k.startswith("relation_kl")], "the loss module holds no state"


# ============================================================================================== release format
def _save_model_format(path: Path, model_state: dict) -> Path:
    """A checkpoint as TinyMIM's util/misc.py save_model writes it: model, optimizer, epoch, scaler, args."""
    params = [torch.nn.Parameter(v.clone()) for v in list(model_state.values())[:3]]
    opt = torch.optim.AdamW(params, lr=2.4e-3, betas=(0.9, 0.95))
    sum(p.sum() for p in params).backward()
    opt.step()
    args = argparse.Namespace(
        model="tinymim_vit_tiny_patch16",
        teacher_model="mae_vit_base",
        batch_size=128,
        blr=1.5e-4,
        epochs=300,
        output_dir="./output_dir",
        input_size=224,
    )
    torch.save(
        {
            "model": model_state,
            "optimizer": opt.state_dict(),
            "epoch": 299,
            "scaler": {
                "scale": 65536.0,
                "growth_factor": 2.0,
                "backoff_factor": 0.5,
                "growth_interval": 2000,
                "_growth_tracker": 0,
            },
            "args": args,
        },
        path,
    )
    return path


def test_save_model_format_reads_through_read_release_and_loads_strictly(tmp_path):
    from zoo.convert import read_release

    state = load_file(FIXTURES / "student_state.safetensors")
    path = _save_model_format(tmp_path / "checkpoint-299.pth", state)
    raw = read_release(path)
    assert set(raw) == {"model", "optimizer", "epoch", "scaler", "args"}
    assert isinstance(raw["args"], argparse.Namespace)
    net = TinyMIMViT(**GOLDEN_STUDENT)
    hub.load_weights_strict(net, convert.read_official(path), str(path))
    for k, v in state.items():
        assert torch.equal(net.state_dict()[k], v), k
    with pytest.raises(UserError, match="outside the MAE/TinyMIM layout"):
        convert.convert_state_dict({"model": {**state, "blocks.0.attn.relative_position_bias_table": torch.zeros(9)}})
    bad = tmp_path / "crafted.pth"  # a global save_model never writes: refused before anything in the file runs
    torch.save({"model": state, "args": datetime.date(2023, 5, 25)}, bad)
    with pytest.raises(ValueError, match="weights_only"):
        convert.read_official(bad)


# ============================================================================================== release parity
# Golden tensors from OliverRensu/TinyMIM@d084705 run on CPU: tests/fixtures/tinymim/README.md.
FIXTURES = REPO / "tests" / "fixtures" / "tinymim"
GOLDEN_STUDENT = dict(img_size=64, patch_size=16, embed_dim=16, depth=12, num_heads=2, last_heads=4)
GOLDEN_TEACHER = dict(img_size=64, patch_size=16, embed_dim=24, depth=3, num_heads=4)


def _delta(name, ours, theirs, atol):
    d = (ours.float() - theirs.float()).abs().max().item()
    assert d <= atol, f"{name}: max |delta| vs the release {d:.3g} > {atol}"
    return d


def _relation(a, b):
    return torch.softmax(a @ b.transpose(-1, -2) * a.shape[-1] ** -0.5, dim=-1)


def test_student_teacher_relations_and_loss_match_the_release():
    """TinyMIMViT.forward_encoder (student, block 12 of 12, 4 heads in the last block) and MaskedAutoencoderViT
    (teacher, relation block 3) -> Q-K and V-V relations, and TinyMIMViT.forward's KL losses."""
    from zoo.models.tinymim.module import _teacher_qkv

    golden = load_file(FIXTURES / "relation_golden.safetensors")
    student, teacher = TinyMIMViT(**GOLDEN_STUDENT).eval(), TinyMIMViT(**GOLDEN_TEACHER).eval()
    for net, name in ((student, "student"), (teacher, "teacher")):
        state = convert.convert_state_dict(load_file(FIXTURES / f"{name}_state.safetensors"))
        torch.testing.assert_close(net.pos_embed, state["pos_embed"], rtol=0, atol=1e-6)  # MAE's fixed sin-cos
        hub.load_weights_strict(net, state, name)
    with torch.no_grad():
        sq, sk, sv = student.forward_qkv(golden["student_images"], -1)
        tq, tk, tv = _teacher_qkv(teacher, golden["images"], 2, None)
        _delta("student Q-K relation", _relation(sq, sk), golden["student_qk"], 1e-6)
        _delta("student V-V relation", _relation(sv, sv), golden["student_vv"], 1e-6)
        _delta("teacher Q-K relation", _relation(tq, tk), golden["teacher_qk"], 1e-6)
        _delta("teacher V-V relation", _relation(tv, tv), golden["teacher_vv"], 1e-6)
        total, qk, vv = relation_kl_loss((sq, sk, sv), (tq, tk, tv))
    _delta("Q-K KL loss", qk, golden["qk_loss"], 1e-5)
    _delta("V-V KL loss", vv, golden["vv_loss"], 1e-5)
    _delta("total loss", total, golden["qk_loss"] + golden["vv_loss"], 1e-5)


def _star_release_state() -> dict:
    """The T* backbone's weights as the golden script drew them (5.7M values, regenerated rather than stored):
    official key names in sorted order from one generator; LayerNorm weights 1 + 0.1 n, vectors 0.1 n, others 0.05 n."""
    shapes = official_vit_keys(192, 12, 18, patch=16, pretrain=False, classes=0, dist=True, neck=1280)
    g = torch.Generator().manual_seed(4)
    state = {}
    for k in sorted(shapes):
        n = torch.randn(shapes[k], generator=g)
        if len(shapes[k]) == 1 and ("norm" in k or k.startswith("conv1x1.0")) and k.endswith("weight"):
            state[k] = 1.0 + 0.1 * n
        else:
            state[k] = (0.1 if len(shapes[k]) == 1 else 0.05) * n
    return state


def test_star_backbone_and_neck_match_the_release():
    """TinyMIM*-T (Segmentation/TinyMIMstar-T/backbone/mae.py MAE: CLS + dist token, 12 heads, conv1x1 on block 12's
    tokens): block 4 / 6 / 8 outputs and the 1280-wide neck output of the patch tokens."""
    golden = load_file(FIXTURES / "star_golden.safetensors")
    star = TinyMIMStarViT(img_size=64, patch_size=16, num_classes=0).eval()
    state = convert.convert_state_dict({"model": _star_release_state()})
    missing = set(star.state_dict()) - set(state)
    assert missing == {"fc_norm.weight", "fc_norm.bias"}  # the classifier's norm: not part of the backbone
    star.load_state_dict(state, strict=False)
    B, grid = 1, 4
    with torch.no_grad():
        x = star.norm_pre(star._pos_embed(star.patch_embed(golden["images"])))
        for i, blk in enumerate(star.blocks):
            x = blk(x)
            if i in (3, 5, 7):
                ours = x[:, 2:].transpose(1, 2).reshape(B, -1, grid, grid)
                _delta(f"block {i + 1} tokens", ours, golden[f"block{i + 1}"], 1e-4)
        neck = star.forward_features(golden["images"])[:, 2:].transpose(1, 2).reshape(B, -1, grid, grid)
    _delta("neck (conv1x1) output", neck, golden["neck"], 1e-5)


def test_argument_checks_are_user_errors():
    """Each names the problem and the fix in one line (zoo.errors.UserError, printed by the zoo command)."""
    with pytest.raises(UserError, match="teacher_block=0"):
        TinyMIMDistillModule(net=STUDENT, teacher=TEACHER, teacher_block=0)
    with pytest.raises(UserError, match="last_heads=5 does not divide embed_dim=24"):
        TinyMIMViT(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, last_heads=5)
    with pytest.raises(UserError, match="divisible by 4"):
        sincos_pos_embed(18, (2, 2))
    with pytest.raises(UserError, match="unknown net.kind 'deit'"):
        ViTFinetuneModule(net=dict(kind="deit", img_size=32, patch_size=8, embed_dim=32, depth=2), num_classes=10)
    with pytest.raises(UserError, match="differ in"):
        q = torch.randn(1, 2, 5, 4)
        relation_kl_loss((q, q, q), (q[:, :1], q[:, :1], q[:, :1]))
    with pytest.raises(UserError, match="teacher_block=9 but the teacher has 3 blocks"):
        TinyMIMDistillModule(net=STUDENT, teacher=TEACHER, teacher_block=9).configure_model()
    with pytest.raises(UserError, match="not a TinyMIM/MAE"):
        convert.convert_state_dict({"model": {}})


def test_finetune_classifier_matches_the_release():
    """models_vit.py VisionTransformer(global_pool=True) on timm 0.3.2: mean of patch tokens -> fc_norm -> head."""
    golden = load_file(FIXTURES / "finetune_golden.safetensors")
    module = ViTFinetuneModule(
        net=dict(kind="vit", img_size=64, patch_size=16, embed_dim=16, depth=2, num_heads=2),
        num_classes=10,
        mixup=0.0,
        cutmix=0.0,
    ).eval()
    hub.load_weights_strict(
        module.model,
        convert.convert_state_dict({"model": load_file(FIXTURES / "finetune_state.safetensors")}),
        "release",
    )
    with torch.no_grad():
        features = module.model.forward_head(module.model.forward_features(golden["images"]), pre_logits=True)
        _delta("pooled features (fc_norm)", features, golden["features"], 1e-5)
        _delta("logits", module(golden["images"]), golden["logits"], 1e-5)


def test_sizes_and_net_overrides_are_checked_in_one_line():
    """An unknown size or a network argument the network does not take: one line naming the choices."""
    for make, where in ((TinyMIMDistillModule, "TinyMIMDistillModule"), (ViTFinetuneModule, "ViTFinetuneModule")):
        with pytest.raises(UserError, match=rf"^{where}: unknown size 'huge'; choose one of .*base.*small.*tiny") as e:
            make("huge")
        assert "\n" not in str(e.value)
        with pytest.raises(UserError, match=rf"^{where}: model.init_args.net has 'width', which the network") as e:
            make("tiny", net={"width": 3})
        assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="'fixed_pos_embed'"):  # the module fixes it (MAE's sin-cos for pre-training)
        TinyMIMDistillModule("tiny", net={"fixed_pos_embed": False})
    with pytest.raises(UserError, match="'num_classes'"):  # the label set is the module's num_classes
        ViTFinetuneModule("tiny", net={"num_classes": 3})
    with pytest.raises(UserError, match="'neck_dim'"):  # a T* argument on a plain ViT size
        ViTFinetuneModule("tiny", net={"neck_dim": 64})


def test_sizes_build_the_published_networks_and_give_their_input_side_to_the_data():
    from zoo.models.tinymim.sizes import FINETUNE_SIZES, SIZES

    with torch.device("meta"):
        pt = {k: TinyMIMDistillModule(k) for k in SIZES}
        ft = {k: ViTFinetuneModule(k) for k in FINETUNE_SIZES}
    assert {k: sum(p.numel() for p in m.model.parameters()) for k, m in pt.items()} == {
        "tiny": 5_524_416,
        "small": 21_665_664,
        "base": 85_798_656,
    }
    assert {k: sum(p.numel() for p in m.model.parameters()) for k, m in ft.items()} == {
        "tiny": 5_717_416,
        "small": 22_050_664,
        "base": 86_567_656,
        "tiny-star": 8_336_400,
    }
    assert isinstance(ft["tiny-star"].model, TinyMIMStarViT) and type(ft["tiny"].model) is TinyMIMViT
    assert pt["base"].model.blocks[0].drop_path1.drop_prob == 0.1 and pt["base"].model.fixed_pos_embed
    assert ft["base"].model.global_pool == "avg" and not ft["base"].model.fixed_pos_embed
    assert all(m.data_config() == {"image_size": 224} for m in (*pt.values(), *ft.values()))
    small = ViTFinetuneModule(
        "tiny", net={"img_size": 32, "patch_size": 8, "embed_dim": 16, "depth": 1, "num_heads": 2}
    )
    assert small.data_config() == {"image_size": 32} and small.example_input_array.shape[-1] == 32
