"""A-CLIP: attentive mask, token gather, attention hook, losses against direct computations, EMA schedule,
logit-scale clamp, weight-decay groups, zero-shot classifier and retrieval, and a short end-to-end fit."""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from zoo.errors import UserError
from zoo.models.aclip.convert import to_official_state_dict as convert_to_release
from zoo.models.aclip.masking import (
    attentive_keep,
    cells_kept,
    cells_to_patches,
    keep_random_cells,
    keep_top_cells,
    map_to_view,
)
from zoo.models.aclip.model import ACLIP, ACLIPVisionTransformer
from zoo.models.aclip.module import (
    ACLIPModule,
    aclip_loss,
    byol_loss,
    clip_loss,
    momentum_at,
    simclr_loss,
    weight_decay_groups,
)

TINY = dict(
    img_size=32,
    patch_size=8,
    vision_width=32,
    vision_depth=2,
    vision_heads=2,
    embed_dim=16,
    context_length=8,
    vocab_size=64,
    text_width=16,
    text_heads=2,
    text_layers=1,
    ssl_mlp_dim=32,
    ssl_emb_dim=8,
    byol_hidden_dim=32,
    byol_dim=8,
)


# ---------------------------------------------------------------------------------------------- attentive mask
def _cells_of(keep: torch.Tensor, grid: int = 14, unit: int = 2) -> set[int]:
    rows, cols = keep // grid, keep % grid
    return set(((rows // unit) * (grid // unit) + cols // unit).tolist())


def test_top_cells_of_a_hand_made_map_are_kept_as_2x2_patch_units():
    torch.manual_seed(0)
    cell_scores = torch.randperm(49).float().reshape(1, 7, 7)  # distinct values: the top 25 are known
    patch_map = cell_scores.repeat_interleave(2, 1).repeat_interleave(2, 2)  # each cell = 2x2 equal patches
    keep = keep_top_cells(patch_map, unit=2, ratio=0.5)
    assert cells_kept(14, 2, 0.5) == 25 and keep.shape == (1, 100)
    expected_cells = set(cell_scores.flatten().argsort(descending=True)[:25].tolist())
    assert _cells_of(keep[0]) == expected_cells
    # every kept cell contributes its four patches, sorted row-major
    exp = cells_to_patches(torch.tensor([sorted(expected_cells)]), 14, 2)
    assert torch.equal(keep, exp) and torch.equal(keep, keep.sort(dim=1).values)
    best = int(cell_scores.flatten().argmax())
    r, c = divmod(best, 7)
    assert {2 * r * 14 + 2 * c, 2 * r * 14 + 2 * c + 1, (2 * r + 1) * 14 + 2 * c, (2 * r + 1) * 14 + 2 * c + 1} <= set(
        keep[0].tolist()
    )


def _official_map(scores, view_box, ema_box, grid):
    """The released get_mask: resize to v3's pixel box, torchvision crop (zero padding), resize back."""
    from torchvision.transforms.functional import crop

    out = []
    for i in range(scores.shape[0]):
        m = scores[i].reshape(1, 1, grid, grid)
        m = F.interpolate(m, (int(ema_box[i, 2]), int(ema_box[i, 3])), mode="bilinear")
        m = crop(
            m,
            int(view_box[i, 0] - ema_box[i, 0]),
            int(view_box[i, 1] - ema_box[i, 1]),
            int(view_box[i, 2]),
            int(view_box[i, 3]),
        )
        out.append(F.interpolate(m, (grid, grid), mode="bilinear")[0, 0])
    return torch.stack(out)


def test_map_through_crop_boxes_matches_the_released_mapping_and_moves_the_hot_region():
    torch.manual_seed(0)
    scores = torch.rand(3, 196)
    ema = torch.tensor([[10, 20, 200, 180], [0, 0, 224, 224], [5, 5, 100, 120]])
    view = torch.tensor([[30, 40, 120, 100], [0, 112, 112, 112], [50, 60, 80, 90]])  # the last one leaves v3's box
    torch.testing.assert_close(map_to_view(scores, view, ema, 14), _official_map(scores, view, ema, 14))

    # a hot 4x4-patch block in v3's bottom-right quadrant lands in the bottom-right 4x4 cells of a view that is
    # exactly that quadrant (the block fills the view's rows/cols 6..13 -> cells 3..6)
    hot = torch.zeros(1, 14, 14)
    hot[0, 10:14, 10:14] = 1
    keep = attentive_keep(hot.reshape(1, -1), torch.tensor([[24, 34, 14, 14]]), torch.tensor([[10, 20, 28, 28]]), 14)
    block = {r * 7 + c for r in range(3, 7) for c in range(3, 7)}
    assert block <= _cells_of(keep[0])
    # the same view box but the map's hot block in the opposite corner: none of those cells need be kept first
    cold = torch.zeros(1, 14, 14)
    cold[0, 0:4, 0:4] = 1
    mapped = map_to_view(cold.reshape(1, -1), torch.tensor([[24, 34, 14, 14]]), torch.tensor([[10, 20, 28, 28]]), 14)
    assert mapped.abs().max() == 0  # the hot region lies outside that view


def test_random_cells_have_the_same_count_and_granularity():
    keep = keep_random_cells(4, 14, 2, 0.5, generator=torch.Generator().manual_seed(0))
    assert keep.shape == (4, 100)
    for row in keep:
        cells = _cells_of(row)
        assert len(cells) == 25 and len(set(row.tolist())) == 100
    assert not torch.equal(keep[0], keep[1])
    with pytest.raises(ValueError, match="masking units"):
        cells_kept(7, 2)


# ---------------------------------------------------------------------------------------------- towers
def test_token_gather_keeps_cls_and_the_right_positions():
    torch.manual_seed(0)
    vit = ACLIPVisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2).eval()
    x = torch.randn(2, 3, 32, 32)
    keep = torch.tensor([[0, 5, 6, 15], [1, 2, 9, 10]])
    full, kept = vit._tokens(x, None), vit._tokens(x, keep)
    for b in range(2):
        torch.testing.assert_close(kept[b], full[b, torch.cat([torch.tensor([0]), 1 + keep[b]])])
    # all tokens kept = timm's own path; the CLS depends on the kept set, not on its order
    torch.testing.assert_close(vit.forward_cls(x, torch.arange(16).expand(2, -1)), vit.forward_features(x)[:, 0])
    torch.testing.assert_close(vit.forward_cls(x, keep), vit.forward_cls(x, keep.flip(1)), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(vit.forward_cls(x, keep), vit.forward_cls(x, keep.roll(1, dims=0)))
    assert not vit.patch_embed.proj.weight.requires_grad  # frozen at random init


def test_attention_hook_returns_the_mean_cls_row_of_every_layer_and_head():
    torch.manual_seed(0)
    vit = ACLIPVisionTransformer(img_size=32, patch_size=8, embed_dim=32, depth=3, num_heads=4).eval()
    x = torch.randn(2, 3, 32, 32)
    cls, scores = vit.forward_cls_attention(x)
    # direct computation: q k^T softmax of each block on its input tokens
    t, rows = vit._tokens(x, None), []
    for blk in vit.blocks:
        a = blk.attn
        q, k, _ = a.qkv(blk.norm1(t)).reshape(2, 17, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4)
        attn = ((q * a.scale) @ k.transpose(-2, -1)).softmax(-1)
        rows.append(attn[:, :, 0, 1:])
        t = blk(t)
    torch.testing.assert_close(scores, torch.stack(rows).mean(dim=(0, 2)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cls, vit.forward_cls(x), atol=1e-5, rtol=1e-5)
    assert scores.shape == (2, 16) and all(blk.attn.fused_attn == vit.blocks[0].attn.fused_attn for blk in vit.blocks)


# ---------------------------------------------------------------------------------------------- losses
def test_clip_loss_against_a_direct_computation():
    torch.manual_seed(0)
    i, t, s = torch.randn(5, 8), torch.randn(5, 8), torch.tensor(3.0)
    i_n, t_n = i / i.norm(dim=1, keepdim=True), t / t.norm(dim=1, keepdim=True)
    sim = (s * i_n @ t_n.T).tolist()
    i2t = sum(-sim[r][r] + math.log(sum(math.exp(v) for v in sim[r])) for r in range(5)) / 5
    t2i = sum(-sim[c][c] + math.log(sum(math.exp(sim[r][c]) for r in range(5))) for c in range(5)) / 5
    assert clip_loss(i, t, s).item() == pytest.approx((i2t + t2i) / 2, rel=1e-5)


def test_simclr_loss_against_a_direct_computation():
    torch.manual_seed(0)
    q, k, tau = torch.randn(4, 6), torch.randn(4, 6), 0.1
    qn, kn = F.normalize(q, dim=1), F.normalize(k, dim=1)

    def side(a, b):
        total = 0.0
        for r in range(4):
            pos = float(a[r] @ b[r]) / tau
            den = sum(math.exp(float(a[r] @ b[j]) / tau) for j in range(4))
            den += sum(math.exp(float(a[r] @ a[j]) / tau) for j in range(4) if j != r)
            total += -pos + math.log(den)
        return total / 4

    assert simclr_loss(q, k, tau).item() == pytest.approx((side(qn, kn) + side(kn, qn)) / 2, rel=1e-5)


def test_byol_loss_and_the_weighted_total_with_the_simclr_pairing_flag():
    torch.manual_seed(0)
    p, z = torch.randn(3, 4), torch.randn(3, 4)
    direct = sum(2 - 2 * float(p[r] @ z[r]) / (float(p[r].norm()) * float(z[r].norm())) for r in range(3)) / 3
    assert byol_loss(p, z).item() == pytest.approx(direct, rel=1e-5)

    out = {
        "image1": torch.randn(4, 8),
        "image2": torch.randn(4, 8),
        "text": torch.randn(4, 8),
        "ssl1": torch.randn(4, 6),
        "ssl2": torch.randn(4, 6),
        "pred1": torch.randn(4, 5),
        "pred2": torch.randn(4, 5),
        "target": torch.randn(4, 5),
        "logit_scale": torch.tensor(1 / 0.07),
    }
    got = aclip_loss(out)
    c1, c2 = (
        clip_loss(out["image1"], out["text"], out["logit_scale"]),
        clip_loss(out["image2"], out["text"], out["logit_scale"]),
    )
    s = simclr_loss(out["ssl1"], out["ssl2"], 0.1)
    b = (byol_loss(out["pred1"], out["target"]) + byol_loss(out["pred2"], out["target"])) / 2
    torch.testing.assert_close(got["loss"], 0.5 * c1 + 0.5 * c2 + 1.0 * s + 2.0 * b)
    released = aclip_loss(out, same_view=True)  # the released code: view 1 against itself
    torch.testing.assert_close(released["simclr"], simclr_loss(out["ssl1"], out["ssl1"], 0.1))
    assert not torch.allclose(released["simclr"], got["simclr"])
    torch.testing.assert_close(released["clip"], got["clip"])


# ---------------------------------------------------------------------------------------------- EMA, clamp, optim
def test_momentum_schedule_and_update():
    assert momentum_at(0, 100) == pytest.approx(0.996)
    assert momentum_at(50, 100) == pytest.approx(0.998)
    assert momentum_at(100, 100) == pytest.approx(1.0)
    assert momentum_at(25, 100) == pytest.approx(1 - 0.004 * (1 + math.cos(math.pi / 4)) / 2)
    vals = [momentum_at(s, 40) for s in range(41)]
    assert all(a <= b for a, b in zip(vals, vals[1:]))

    torch.manual_seed(0)
    net = ACLIP(**TINY)
    with torch.no_grad():
        for p in net.visual.parameters():
            p.add_(1.0)
        net.image_projection.add_(1.0)
    before = [(o.clone(), e.clone()) for o, e in net.ema_pairs()]
    net.momentum_update(0.9)
    for (o, e), (o_new, e_new) in zip(before, net.ema_pairs()):
        torch.testing.assert_close(e_new, 0.9 * e + 0.1 * o)
    # token embedding and ln_final are shared, not copied
    names = {n for n, _ in net.named_parameters()}
    assert sorted(n for n in names if "embedding" in n or "ln_final" in n) == sorted(
        ["text.token_embedding.weight", "text.positional_embedding", "text.ln_final.weight", "text.ln_final.bias"]
    )
    assert all(not p.requires_grad for n, p in net.named_parameters() if "_ema" in n)


def test_logit_scale_is_clamped_after_each_optimizer_step():
    module = ACLIPModule(net=TINY)
    opt = torch.optim.SGD([module.model.logit_scale], lr=0.0)
    for value, want in ((7.0, math.log(100)), (-1.0, 0.0), (2.0, 2.0)):
        with torch.no_grad():
            module.model.logit_scale.fill_(value)
        module.optimizer_step(0, 0, opt, lambda: None)
        assert module.model.logit_scale.item() == pytest.approx(want)


def test_weight_decay_groups_follow_the_release():
    net = ACLIP(**TINY)
    no_decay, decay = weight_decay_groups(net, 0.5)
    ids = {id(p): n for n, p in net.named_parameters()}
    dec, nodec = {ids[id(p)] for p in decay["params"]}, {ids[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.5 and no_decay["weight_decay"] == 0.0
    # the released rule is literal: tokens and position embeddings are >= 2-D, so they are decayed
    assert {
        "visual.blocks.0.attn.qkv.weight",
        "image_projection",
        "image_mlp.layer1.weight",
        "text.token_embedding.weight",
        "visual.cls_token",
        "visual.pos_embed",
        "text.positional_embedding",
    } <= dec
    assert {
        "logit_scale",
        "text.ln_final.weight",
        "text.transformer.resblocks.0.ln_1.weight",
        "image_mlp.bn1.weight",
        "visual.blocks.0.attn.qkv.bias",
        "visual.norm.weight",
    } <= nodec
    assert not any("_ema" in n or "patch_embed.proj" in n for n in dec | nodec)  # nothing frozen is optimised


def test_sizes_and_net_overrides():
    """Unknown size / network argument: one line; the module fixes eval_towers (from the objective)."""
    with pytest.raises(UserError, match=r"^ACLIPModule: unknown size 'b32'; choose one of b16, l16, s16") as e:
        ACLIPModule("b32")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"^ACLIPModule: model.init_args.net has 'text_depth', which the network") as e:
        ACLIPModule(net={**TINY, "text_depth": 2})
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="'eval_towers'"):
        ACLIPModule(net={**TINY, "eval_towers": "online"})
    m = ACLIPModule("s16", net=TINY)
    assert m.data_config() == {"image_size": 32, "context_length": 8} and m.hparams.size == "s16"
    assert m.example_input_array[1].shape == (2, 8) and m.tokenizer().context_length == 8
    with torch.device("meta"):
        b16, s16 = ACLIPModule(), ACLIPModule("s16")
    assert b16.data_config() == {"image_size": 224, "context_length": 77}
    assert s16.model.visual.blocks[0].attn.num_heads == 12 and s16.model.visual.embed_dim == 384


def test_bad_arguments_are_user_errors():
    with pytest.raises(UserError, match="objective"):
        ACLIPModule(net=TINY, objective="slip")
    with pytest.raises(UserError, match="masking units"):
        ACLIPModule(net={**TINY, "img_size": 24})
    with pytest.raises(UserError, match="keep_ratio"):
        ACLIPModule(net=TINY, keep_ratio=1.5)


# ---------------------------------------------------------------------------------------------- evaluation
def test_zero_shot_classifier_on_planted_text_and_image_embeddings():
    from open_clip.tokenizer import SimpleTokenizer
    from torchmetrics.classification import MulticlassAccuracy

    from zoo.metrics.zeroshot import zero_shot_logits, zero_shot_weights

    tok = SimpleTokenizer(context_length=16)
    names = ["cat", "dog", "car"]
    ids = [tok.encode(n)[0] for n in names]

    class Planted:  # text embedding = one-hot of the class word in the prompt + a template-specific offset
        def encode_text(self, tokens, normalize=False):
            out = torch.stack([torch.tensor([float((row == i).any()) for i in ids]) for row in tokens])
            out = torch.cat([out, 0.1 * (tokens[:, 1:2] == tok.encode("a")[0]).float()], 1)
            return F.normalize(out, dim=-1) if normalize else out

    w = zero_shot_weights(Planted(), tok, names, ["a photo of a {}.", "the {}"])
    assert w.shape == (4, 3)
    labels = torch.tensor([0, 1, 2, 2, 1, 0])
    images = F.one_hot(labels, 4).float() + 0.05 * torch.randn(6, 4)
    acc = MulticlassAccuracy(num_classes=3, top_k=1, average="micro")
    assert acc(zero_shot_logits(images, w), labels).item() == 1.0
    assert acc(zero_shot_logits(images, w), (labels + 1) % 3).item() == 0.0


def test_retrieval_recall_on_a_hand_made_similarity():
    from zoo.metrics.retrieval import CrossModalRetrieval

    # three pairs; text 1 prefers image 2 (its own image ranks 2nd), the rest are matched at rank 1
    img = torch.eye(3)
    txt = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.0, 0.0, 1.0]])
    m = CrossModalRetrieval(ks=(1, 5, 10), query="text", gallery="image")
    m.update(img[:2], txt[:2], torch.tensor([0, 1]), torch.tensor([0, 1]))  # accumulates over batches
    m.update(img[2:], txt[2:], torch.tensor([2]), torch.tensor([2]))
    out = m.compute()
    assert out["t2i_r1"].item() == pytest.approx(200 / 3) and out["t2i_r5"].item() == 100
    # image 1's best text is text 1 (0.6 vs 0); image 2: text 2 (1.0) beats text 1 (0.8)
    assert out["i2t_r1"].item() == 100


def test_forward_gives_the_ema_towers_in_eval_and_the_online_outputs_in_training():
    torch.manual_seed(0)
    module = ACLIPModule(net=TINY)
    images, text = module.example_input_array
    with torch.no_grad():
        module.model.visual.cls_token.add_(1.0)  # online and EMA towers now differ
        module.eval()
        ev = module(images, text)
        ema = F.normalize(module.model.encode_image(images, ema=True), dim=-1)
    torch.testing.assert_close(ev["image_embeds"], ema)
    torch.testing.assert_close(ev["image_embeds"].norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        assert set(module(images)) == {"image_embeds", "logit_scale"}  # images only (zoo bench's inference input)
    module.train()
    tr = module(images, text)
    assert {"ssl_embeds", "byol_pred"} <= set(tr) and not torch.allclose(F.normalize(tr["image_embeds"], dim=-1), ema)


def test_short_fit_on_captioned_digits_runs_end_to_end(tmp_path):
    """Two steps of the real objective on the digits data module, then zero-shot + retrieval on held-out digits."""
    from lightning.pytorch import Trainer, seed_everything

    from zoo.data_modules.image_text import ImageTextDataModule

    seed_everything(0)
    module = ACLIPModule(net={**TINY, "vocab_size": 49408, "context_length": 16})
    dm = ImageTextDataModule(root=None, batch_size=8)  # image size and context length follow the model
    trainer = Trainer(
        accelerator="cpu",
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        num_sanity_val_steps=0,
    )
    before = module.model.visual_ema.cls_token.clone()
    online_before = module.model.visual.blocks[0].attn.qkv.weight.clone()
    trainer.fit(module, datamodule=dm)
    m = trainer.callback_metrics
    for key in (
        "train/loss",
        "train/clip",
        "train/simclr",
        "train/byol",
        "val/zeroshot_top1",
        "val/zeroshot_top5",
        "val/i2t_r1",
        "val/t2i_r1",
    ):
        assert key in m and torch.isfinite(m[key]), key
    assert module.classnames[7] == "seven"
    assert not torch.equal(module.model.visual.blocks[0].attn.qkv.weight, online_before)  # trained
    ema_move = (module.model.visual_ema.cls_token - before).abs().max()
    online_move = (module.model.visual.cls_token - before).abs().max()
    assert 0 < ema_move < 0.01 * online_move  # the second step's update moved the EMA (1 - m) of the way
    assert 0.99 < m["train/momentum"].item() <= 1.0


def _batch(B=4, size=32, ctx=8, vocab=64):
    g = torch.Generator().manual_seed(0)
    text = torch.randint(1, vocab - 1, (B, ctx), generator=g)
    text[:, -1] = vocab - 1
    boxes = torch.tensor([[[4, 0, 20, 24], [8, 6, 24, 20], [0, 0, 32, 32]]]).expand(B, -1, -1)
    return {
        "view1": torch.randn(B, 3, size, size, generator=g),
        "view2": torch.randn(B, 3, size, size, generator=g),
        "view3": torch.randn(B, 3, size, size, generator=g),
        "boxes": boxes,
        "text": text,
    }


@pytest.mark.filterwarnings("ignore:.*self.log.*")
def test_training_step_of_both_objectives():
    torch.manual_seed(0)
    aclip = ACLIPModule(net=TINY).train()
    aclip.training_step(_batch(), 0).backward()
    assert (
        aclip.model.image_mlp.layer1.weight.grad is not None and aclip.model.byol_predictor[0].weight.grad is not None
    )
    assert aclip.model.visual_ema.cls_token.grad is None  # the EMA tower is a target, never trained by gradient
    clip = ACLIPModule(net=TINY, objective="clip").train()
    loss = clip.training_step(_batch(), 0)
    loss.backward()
    assert torch.isfinite(loss) and clip.model.visual.blocks[0].attn.qkv.weight.grad is not None
    assert not any(p.requires_grad for p in clip.model.image_mlp.parameters())  # plain CLIP trains no head
    assert clip.model.eval_towers == "online" and aclip.model.eval_towers == "ema"


# ---------------------------------------------------------------------------------------------- release parity
# Golden tensors from microsoft/A-CLIP@0e51942 (models.py, losses.py) run on CPU: tests/fixtures/aclip/README.md.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "aclip"
GOLDEN_SIZE = dict(
    img_size=224,
    patch_size=16,
    vision_width=16,
    vision_depth=2,
    vision_heads=2,
    embed_dim=16,
    context_length=8,
    vocab_size=64,
    text_width=16,
    text_heads=2,
    text_layers=1,
    ssl_mlp_dim=32,
    ssl_emb_dim=8,
    byol_hidden_dim=32,
    byol_dim=8,
)
ATOL = 1e-5


def _release_checkpoint(path: Path) -> Path:
    """The release's tiny state dict saved as main.py saves it (DDP 'module.' prefix, optimizer, scaler, args)."""
    state = load_file(FIXTURES / "release_tiny_state.safetensors")
    params = [torch.nn.Parameter(v.clone()) for k, v in state.items() if v.is_floating_point()][:3]
    opt = torch.optim.AdamW(params, lr=5e-4)
    sum(p.sum() for p in params).backward()
    opt.step()
    ckpt = {
        "epoch": 3,
        "state_dict": {f"module.{k}": v for k, v in state.items()},
        "optimizer": opt.state_dict(),
        "scaler": {
            "scale": 65536.0,
            "growth_factor": 2.0,
            "backoff_factor": 0.5,
            "growth_interval": 2000,
            "_growth_tracker": 0,
        },
        "best_acc": 12.5,
        "args": argparse.Namespace(
            model="ACLIP_VITB16", mask_ratio=0.5, lr=5e-4, output_dir="./output", betas=(0.9, 0.98)
        ),
    }
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def golden():
    return load_file(FIXTURES / "golden.safetensors")


@pytest.fixture(scope="module")
def release_net(tmp_path_factory):
    from zoo.hub import load_weights_strict
    from zoo.models.aclip.convert import read_official

    path = _release_checkpoint(tmp_path_factory.mktemp("aclip") / "checkpoint_best.pt")
    module = ACLIPModule(net=GOLDEN_SIZE)
    load_weights_strict(module.model, read_official(path), str(path))
    return module


def _views(golden):
    return golden["base"].repeat_interleave(8, -1).repeat_interleave(8, -2)  # (3, B, 3, 224, 224), as produced


def _close(name, ours, theirs, atol=ATOL):
    delta = (ours.float() - theirs.float()).abs().max().item()
    assert delta <= atol, f"{name}: max |delta| vs the release {delta:.3g} > {atol}"
    return delta


def test_release_checkpoint_format_reads_safely_and_converts_strictly(tmp_path):
    from zoo.convert import read_release
    from zoo.models.aclip.convert import convert_state_dict, read_official, to_official_state_dict

    path = _release_checkpoint(tmp_path / "checkpoint.pt")
    raw = read_release(path)
    assert set(raw) == {"epoch", "state_dict", "optimizer", "scaler", "best_acc", "args"}
    assert isinstance(raw["args"], argparse.Namespace)
    state = read_official(path)
    net = ACLIP(**GOLDEN_SIZE)
    assert set(state) == set(net.state_dict())
    net.load_state_dict(state, strict=True)
    release = load_file(FIXTURES / "release_tiny_state.safetensors")
    assert set(to_official_state_dict(state)) == set(release)
    with pytest.raises(UserError, match="release does not have"):
        convert_state_dict({**release, "head.weight": torch.zeros(1)})

    bad = tmp_path / "crafted.pt"  # a global the release never saves: refused before anything in the file runs
    torch.save({"state_dict": release, "args": datetime.date(2023, 10, 11)}, bad)
    with pytest.raises(ValueError, match="weights_only"):
        read_official(bad)


def test_release_vit_b16_key_set_and_shapes_convert_onto_the_paper_size_model():
    """Every key and shape of ACLIP_VITB16's state dict (listed from the release's module) maps onto zoo's."""
    from zoo.models.aclip.convert import convert_state_dict

    release = json.loads((FIXTURES / "release_vit_b16_keys.json").read_text())
    assert len(release) == 634
    with torch.device("meta"):
        net = ACLIP()
        state = convert_state_dict({f"module.{k}": torch.empty(s, device="meta") for k, s in release.items()})
    own = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in state.items()} == own


def test_towers_match_the_release(golden, release_net):
    """Image tower (online / EMA, CLS and projected), text tower (online / EMA) and the EMA attention map."""
    net = release_net.model.eval()
    v1, _, v3 = _views(golden)
    with torch.no_grad():
        _close("online CLS", net.visual.forward_cls(v1), golden["eval_cls_online"])
        _close("online image embedding", net.encode_image(v1), golden["eval_image_online"])
        _close("EMA image embedding", net.encode_image(v1, ema=True), golden["eval_image_ema"])
        _close("online text embedding", net.encode_text(golden["text"], ema=False), golden["eval_text_online"])
        _close("EMA text embedding", net.encode_text(golden["text"], ema=True), golden["eval_text_ema"])
        _, scores = net.visual_ema.forward_cls_attention(v3)
    _close("EMA CLS attention", scores, golden["ema_attention"], 1e-6)


def test_attentive_mask_selection_matches_the_release(golden):
    """get_mask + get_att_mask (release) vs map_to_view + keep_top_cells: the same kept patches, both views."""
    pos, scores = golden["pos"], golden["ema_attention"]
    keep = torch.cat([attentive_keep(scores, pos[:, k], pos[:, 2], 14) for k in (0, 1)])
    ours = torch.ones(keep.shape[0], 196, dtype=torch.uint8).scatter_(1, keep, 0)
    assert torch.equal(ours, golden["mask"]), "kept patches differ from the release's mask"


def test_training_forward_and_losses_match_the_release(golden, release_net):
    """ACLIP.forward (momentum update, masks, masked online tower, heads) and ACLIPLoss, with the release's
    SimCLR pairing (release_simclr_same_view=True); SLIP's SIMCLRLoss on view 1 vs view 2 for the default."""
    module = copy.deepcopy(release_net).train()
    module.momentum = lambda: 0.99
    v1, v2, v3 = _views(golden)
    batch = {"view1": v1, "view2": v2, "view3": v3, "boxes": golden["pos"], "text": golden["text"]}
    out = module.step_outputs(batch)
    _close("masked image embeddings", torch.cat([out["image1"], out["image2"]]), golden["train_image_embed"])
    _close("text embeddings", out["text"], golden["train_text_embed"])
    _close("SimCLR head", torch.cat([out["ssl1"], out["ssl2"]]), golden["train_image_ssl_embed"])
    _close("BYOL predictor", torch.cat([out["pred1"], out["pred2"]]), golden["train_byol_feats"])
    _close("EMA BYOL target", out["target"], golden["train_byol_feats_e"])
    _close("logit scale", out["logit_scale"], golden["train_logit_scale"])
    state = convert_to_release(module.model.state_dict())
    for key in (
        "image_projection_e",
        "visual_ema.blocks.0.attn.qkv.weight",
        "transformer_e.resblocks.0.mlp.c_fc.weight",
    ):
        _close(f"EMA update {key}", state[key], golden[f"after_{key}"], 1e-7)
    end_to_end = aclip_loss(out, same_view=True)["loss"]
    _close("total loss, end to end", end_to_end, golden["loss_loss"], 1e-4)  # BN over 4 rows amplifies 1e-8 to 1e-6


def test_losses_match_the_release_on_its_own_outputs(golden):
    """ACLIPLoss (release pairing: SimCLR of view 1 with itself) and SLIP's SIMCLRLoss on view 1 vs view 2 (zoo's
    default), both fed the release's forward outputs."""
    B = golden["text"].shape[0]
    img, ssl, pred = golden["train_image_embed"], golden["train_image_ssl_embed"], golden["train_byol_feats"]
    out = {
        "image1": img[:B],
        "image2": img[B:],
        "text": golden["train_text_embed"],
        "ssl1": ssl[:B],
        "ssl2": ssl[B:],
        "pred1": pred[:B],
        "pred2": pred[B:],
        "target": golden["train_byol_feats_e"],
        "logit_scale": golden["train_logit_scale"],
    }
    release = aclip_loss(out, same_view=True)
    _close("total loss", release["loss"], golden["loss_loss"])
    _close("SimCLR loss (view 1 with itself)", release["simclr"], golden["loss_simclr_loss"])
    _close("BYOL loss", release["byol"], golden["loss_im_byol_loss"])
    _close("CLIP loss view 1", clip_loss(out["image1"], out["text"], out["logit_scale"]), golden["loss_contra_loss_1"])
    _close("CLIP loss view 2", clip_loss(out["image2"], out["text"], out["logit_scale"]), golden["loss_contra_loss_2"])
    _close("SimCLR loss (view 1 vs 2)", aclip_loss(out)["simclr"], golden["loss_simclr_two_views"])


# ---------------------------------------------------------------------------------------------- zero-shot protocol
RELEASE_IMAGENET_TEMPLATES = [
    "itap of a {}.",
    "a bad photo of the {}.",
    "a origami {}.",
    "a photo of the large {}.",
    "a {} in a video game.",
    "art of the {}.",
    "a photo of the small {}.",
]


@pytest.mark.parametrize("config", ["aclip.yaml", "aclip-vit-l16.yaml", "aclip-vit-s16.yaml", "aclip-cc3m.yaml"])
def test_paper_configs_evaluate_with_the_releases_seven_templates(config):
    """microsoft/A-CLIP main.py validate_zeroshot reads templates.json['imagenet']: 7 prompts, not CLIP's 80."""
    import yaml

    from zoo.metrics.zeroshot import resolve_templates

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / config).read_text())
    assert resolve_templates(cfg["data"]["init_args"]["templates"]) == RELEASE_IMAGENET_TEMPLATES
    assert len(resolve_templates("openai")) == 80  # the named variant


def test_module_defaults_to_the_releases_templates_when_nothing_sets_them():
    module = ACLIPModule(net=TINY, classnames=["zero", "one"])
    module.setup("validate")
    assert module.templates == RELEASE_IMAGENET_TEMPLATES
    module = ACLIPModule(net=TINY, classnames=["zero", "one"], templates="openai")
    module.setup("validate")
    assert len(module.templates) == 80


# ---------------------------------------------------------------------------------------------- described object kept
def test_box_patches_and_kept_fraction_by_hand():
    from zoo.models.aclip.masking import box_patches, kept_fraction

    # a 4x4 grid of 8-px patches on 32 px; box rows 8..24, cols 0..16 -> patches (1,0) (1,1) (2,0) (2,1)
    inside = box_patches(torch.tensor([[8, 0, 16, 16], [0, 0, 32, 32]]), grid=4, img_size=32)
    assert inside[0].nonzero().flatten().tolist() == [4, 5, 8, 9] and bool(inside[1].all())
    keep = torch.tensor([[4, 5, 6, 0], [0, 1, 2, 3]])
    assert kept_fraction(keep, inside).tolist() == [0.5, 0.25]
    assert kept_fraction(keep, torch.zeros_like(inside)).tolist() == [0.0, 0.0]


def test_target_kept_reads_the_ema_attention_in_both_masking_arms(monkeypatch):
    """The attentive rule on the whole image: attention planted on the target's cells keeps all of it, attention
    planted elsewhere none of it, whatever the masking arm (the metric measures the EMA attention)."""
    boxes = torch.tensor([[0, 0, 16, 16], [16, 16, 16, 16]])  # top-left and bottom-right quarter of 32 px
    for masking in ("attentive", "random"):
        module = ACLIPModule(net={**TINY, "patch_size": 4}, masking=masking).eval()  # 8x8 grid, 16 cells, 9 kept
        hot = torch.zeros(2, 8, 8)
        hot[0, :4, :4] = 1.0  # on the first image's target
        hot[1, :4, :4] = 1.0  # away from the second image's target: its cells rank last
        hot[1, 4:, 4:] = -1.0
        monkeypatch.setattr(module.model.visual_ema, "forward_cls_attention", lambda x, s=hot: (None, s.flatten(1)))
        frac = module.target_kept_fraction(torch.zeros(2, 3, 32, 32), boxes)
        assert frac[0].item() == 1.0 and frac[1].item() == 0.0, masking
