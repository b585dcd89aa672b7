"""TinyMIM's claim in miniature: the MAE teacher pre-trained here (MAEPretrainModule), the feature-distillation
baseline (TinyMIMDistillModule target="feature"), and the demo chain teacher -> distillation -> fine-tuning."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from zoo.errors import UserError
from zoo.models.tinymim.model import MAEDecoder, TinyMIMViT
from zoo.models.tinymim.module import (
    MAEPretrainModule,
    TinyMIMDistillModule,
    ViTFinetuneModule,
    feature_distillation_loss,
    mae_pixel_loss,
)

REPO = Path(__file__).resolve().parents[2]
ENCODER = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
MAE_NET = dict(**ENCODER, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
STUDENT = dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2, last_heads=4)
TEACHER = dict(embed_dim=48, depth=3, num_heads=4, img_size=32, patch_size=8, seed=1)
SHORT = ["--trainer.max_epochs=1", "--trainer.max_steps=2", "--trainer.limit_val_batches=1"]


def tiny_mae(**kw) -> MAEPretrainModule:
    torch.manual_seed(0)
    return MAEPretrainModule(net=MAE_NET, **{"lr": 1e-3, **kw})


def mae_patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """facebookresearch/mae models_mae.py ``patchify``, written out: (N, 3, H, W) -> (N, L, p*p*3)."""
    n, _, h, w = imgs.shape
    x = imgs.reshape(n, 3, h // p, p, w // p, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, (h // p) * (w // p), p * p * 3)


# ============================================================================================== MAE pre-training
def test_mae_loss_is_the_normalised_pixel_mse_of_the_masked_patches_only():
    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 3, 32, 32, generator=g)
    pred = torch.randn(3, 16, 8 * 8 * 3, generator=g)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, :12] = True
    target = mae_patchify(images, 8)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    want = ((pred - target) ** 2).mean(-1)[mask].mean()
    torch.testing.assert_close(mae_pixel_loss(pred, images, mask, 8), want)
    raw = ((pred - mae_patchify(images, 8)) ** 2).mean(-1)[mask].mean()
    torch.testing.assert_close(mae_pixel_loss(pred, images, mask, 8, norm_pix_loss=False), raw)
    changed = pred.clone()
    changed[:, 12:] += 5.0  # visible patches: no loss there
    torch.testing.assert_close(mae_pixel_loss(changed, images, mask, 8), want)
    changed[:, :1] += 5.0
    assert mae_pixel_loss(changed, images, mask, 8) > want


def test_masked_encoder_sees_only_the_visible_patches_and_the_decoder_predicts_every_patch():
    enc = TinyMIMViT(**ENCODER).eval()
    images = torch.randn(2, 3, 32, 32)
    none = torch.zeros(2, 16, dtype=torch.bool)
    torch.testing.assert_close(enc.forward_masked(images, none), enc.forward_features(images))
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, [1, 5, 6, 9]] = False
    mask[1, [0, 2, 3, 15]] = False
    latent = enc.forward_masked(images, mask)
    assert latent.shape == (2, 1 + 4, 32)
    other = images.clone()
    other[:, :, 24:, 24:] = 0  # patch 15: masked in sample 0, visible in sample 1
    moved = enc.forward_masked(other, mask)
    torch.testing.assert_close(moved[0], latent[0])
    assert not torch.allclose(moved[1], latent[1])
    dec = MAEDecoder(32, (4, 4), 8, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    assert dec(latent, mask).shape == (2, 16, 8 * 8 * 3)
    assert not dec.decoder_pos_embed.requires_grad


def test_mae_module_loss_falls_and_trains_encoder_and_decoder():
    from lightning.pytorch import Trainer

    m = tiny_mae(warmup_epochs=0, lr=3e-3)
    coarse = torch.randn(8, 3, 4, 4, generator=torch.Generator().manual_seed(1))
    images = torch.nn.functional.interpolate(coarse, size=32, mode="bilinear")  # smooth: masked pixels are predictable
    first = m.reconstruction_loss(images, torch.Generator().manual_seed(0)).item()
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_epochs=30)
    trainer.fit(m, torch.utils.data.DataLoader(images, batch_size=8))
    assert m.reconstruction_loss(images, torch.Generator().manual_seed(0)).item() < 0.9 * first
    trained = {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    assert id(m.decoder.mask_token) in trained and id(m.model.blocks[0].attn.qkv.weight) in trained
    assert id(m.model.pos_embed) not in trained and id(m.decoder.decoder_pos_embed) not in trained


def test_mae_arguments_are_checked():
    with pytest.raises(UserError, match="mask_ratio=1.0 must lie in"):
        MAEPretrainModule(net=MAE_NET, mask_ratio=1.0)
    with pytest.raises(UserError, match="'last_heads'"):
        MAEPretrainModule(net={**MAE_NET, "last_heads": 4})
    assert MAEPretrainModule(net=MAE_NET).data_config() == {"image_size": 32}


def test_an_mae_checkpoint_is_a_teacher_of_the_distillation(tmp_path):
    """A Lightning checkpoint of MAEPretrainModule (with or without LightningCLI's _class_path) gives the encoder."""
    from lightning.pytorch import Trainer

    mae = tiny_mae()
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=1)
    images = torch.randn(4, 3, 32, 32)
    trainer.fit(mae, torch.utils.data.DataLoader(images, batch_size=4))
    ckpt = tmp_path / "teacher.ckpt"
    trainer.save_checkpoint(ckpt)
    d = TinyMIMDistillModule(net={**STUDENT, "last_heads": 2}, teacher=str(ckpt), teacher_block=-1, lr=1e-3)
    d.configure_model()
    assert type(d.teacher) is TinyMIMViT and not any(p.requires_grad for p in d.teacher.parameters())
    for k, v in mae.model.state_dict().items():
        torch.testing.assert_close(d.teacher.state_dict()[k], v)
    assert d.relation_loss(images)[0] > 0


# ============================================================================================== feature distillation
def tiny_feature(**kw) -> TinyMIMDistillModule:
    torch.manual_seed(0)
    return TinyMIMDistillModule(net=STUDENT, teacher=TEACHER, teacher_block=-1, lr=1e-3, target="feature", **kw)


def test_feature_target_regresses_projected_student_tokens_onto_whitened_teacher_tokens():
    m = tiny_feature()
    m.configure_model()
    assert (m.feature_proj.in_features, m.feature_proj.out_features) == (24, 48)
    images = torch.randn(2, 3, 32, 32)
    losses = m.distillation_losses(images)
    assert set(losses) == {"loss"}
    with torch.no_grad():
        t = m.teacher.blocks(m.teacher.embed(images))  # teacher_block=-1: its last block (before the final norm)
        s = m.feature_proj(m.model.forward_features(images))
        mu, var = t.mean(-1, keepdim=True), t.var(-1, keepdim=True, unbiased=False)
        want = torch.nn.functional.smooth_l1_loss(s, (t - mu) / (var + 1e-5) ** 0.5)
    torch.testing.assert_close(losses["loss"], want)
    losses["loss"].backward()
    assert m.feature_proj.weight.grad.abs().sum() > 0 and m.model.blocks[-1].mlp.fc2.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.teacher.parameters())


def test_feature_loss_is_zero_when_the_student_gives_the_whitened_target():
    t = torch.randn(2, 5, 8)
    target = torch.nn.functional.layer_norm(t, (8,))
    assert feature_distillation_loss(target, t).item() < 1e-10
    with pytest.raises(UserError, match="differ"):
        feature_distillation_loss(torch.randn(2, 5, 4), t)


def test_target_switch_is_validated_and_relation_stays_the_default():
    with pytest.raises(UserError, match="unknown target 'features'.*did you mean 'feature'"):
        TinyMIMDistillModule(net=STUDENT, teacher=TEACHER, target="features")
    m = TinyMIMDistillModule(net=STUDENT, teacher=TEACHER, teacher_block=-1)
    m.configure_model()
    assert m.hparams.target == "relation" and m.feature_proj is None
    assert set(m.distillation_losses(torch.randn(2, 3, 32, 32))) == {"loss", "loss_qk", "loss_vv"}


def test_feature_target_needs_no_head_match_and_its_student_fine_tunes(tmp_path):
    """Tokens are compared, not relations: a last block with other heads than the teacher is fine; the checkpoint keeps
    the projection for resuming, and the student alone loads into fine-tuning and into a fresh module."""
    from lightning.pytorch import Trainer

    torch.manual_seed(0)
    m = TinyMIMDistillModule(
        net={**STUDENT, "last_heads": 2}, teacher=TEACHER, teacher_block=-1, lr=1e-3, target="feature"
    )
    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, max_steps=2)
    trainer.fit(m, torch.utils.data.DataLoader(torch.randn(8, 3, 32, 32), batch_size=4))
    assert id(m.feature_proj.weight) in {id(p) for g in trainer.optimizers[0].param_groups for p in g["params"]}
    ckpt = tmp_path / "feature.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=True)["state_dict"]
    assert "feature_proj.weight" in state and not any(k.startswith("teacher.") for k in state)
    fresh = TinyMIMDistillModule.load_from_checkpoint(ckpt)  # not configured: the projection is dropped
    torch.testing.assert_close(fresh.model.state_dict()["cls_token"], m.model.state_dict()["cls_token"])
    ft = ViTFinetuneModule(net=dict(img_size=32, patch_size=8, embed_dim=24, depth=2, num_heads=2), num_classes=10)
    ft.hparams.pretrained = str(ckpt)
    ft.configure_model()
    torch.testing.assert_close(ft.model.blocks[0].attn.qkv.weight, m.model.blocks[0].attn.qkv.weight)


# ============================================================================================== the claim's chain
def test_demo_chain_configs_share_the_root_and_differ_only_in_the_target():
    relation = yaml.safe_load((REPO / "configs/demo/tinymim.yaml").read_text())
    feature = yaml.safe_load((REPO / "configs/demo/tinymim-feature.yaml").read_text())
    teacher = yaml.safe_load((REPO / "configs/demo/tinymim-teacher.yaml").read_text())
    assert feature["model"]["init_args"].pop("target") == "feature" and "target" not in relation["model"]["init_args"]
    assert feature == relation
    assert relation["model"]["init_args"]["teacher"] == "${trainer.default_root_dir}/teacher/checkpoints/last.ckpt"
    assert (
        teacher["trainer"]["callbacks"][0]["init_args"]["dirpath"] == "${trainer.default_root_dir}/teacher/checkpoints"
    )
    assert teacher["model"]["init_args"]["mask_ratio"] == 0.75 and teacher["model"]["init_args"]["norm_pix_loss"]
    assert teacher["trainer"]["default_root_dir"] == relation["trainer"]["default_root_dir"]


def test_claim_arms_rerun_the_whole_chain():
    from zoo.models.tinymim import CLAIM

    commands = {a.label: a.command() for a in CLAIM.arms}
    root = "zoo reproduce --config configs/demo/tinymim-finetune.yaml"
    assert commands == {
        "relation distillation": f"{root} --after configs/demo/tinymim-teacher.yaml,configs/demo/tinymim.yaml "
        "--seeds 0-2 --record",
        "feature distillation": f"{root} --after configs/demo/tinymim-teacher.yaml,configs/demo/tinymim-feature.yaml "
        "--seeds 0-2 --record --variant feature-distill",
        "no distillation": f"{root} --seeds 0-2 --record --variant scratch --model.init_args.pretrained=null",
    }
    assert not any(a.unavailable for a in CLAIM.arms)


def test_reproduce_runs_the_feature_arm_chain_teacher_then_feature_distillation(tmp_path, monkeypatch):
    """The feature arm's switch reaches the distillation step (its own config in the chain), whose student the
    fine-tuning reads; the teacher the distillation reads is the MAE step's checkpoint in the same folder."""
    from zoo.checkpoints import read_checkpoint
    from zoo.reproduce import reproduce_config
    from zoo.results import read_rows

    monkeypatch.chdir(REPO)
    rows = reproduce_config(
        "configs/demo/tinymim-finetune.yaml",
        [0],
        variant="feature-distill",
        overrides=[*SHORT, "--trainer.num_sanity_val_steps=0"],
        results_dir=tmp_path,
        runs_dir=tmp_path / "runs",
        after=["configs/demo/tinymim-teacher.yaml,configs/demo/tinymim-feature.yaml"],
        echo=lambda s: None,
    )
    run = tmp_path / "runs" / "demo" / "tinymim-finetune" / "feature-distill" / "seed0"
    hp = read_checkpoint(run / "distill" / "checkpoints" / "last.ckpt")["hyper_parameters"]
    assert hp["target"] == "feature" and hp["teacher"] == str(run / "teacher" / "checkpoints" / "last.ckpt")
    assert (run / "teacher" / "checkpoints" / "last.ckpt").is_file()
    assert {r["variant"] for r in read_rows("demo/tinymim-finetune", tmp_path)} == {"feature-distill"} and rows
