"""EMO / iRMB: sizes against the paper, the released model's details, the timm-like surface, the converter."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import zoo
from zoo.bench import count_macs
from zoo.errors import UserError
from zoo.models.emo import FIGURES
from zoo.models.emo.convert import convert_state_dict, read_official, to_official_state_dict
from zoo.models.emo.model import EMO, emo_1m, window_partition, window_unpartition
from zoo.models.emo.module import EMOModule
from zoo.models.emo.sizes import SIZES

PAPER_PARAMS = {"emo_1m": 1_361_168, "emo_2m": 2_377_472, "emo_5m": 5_108_848, "emo_6m": 6_168_496}
PAPER_MACS = {"emo_1m": 261e6, "emo_2m": 439e6, "emo_5m": 903e6, "emo_6m": 961e6}


def tiny(**kw):
    torch.manual_seed(0)
    return EMO(depths=(1, 2, 2, 2), embed_dims=(16, 24, 32, 48), dim_heads=(8, 8, 8, 16), num_classes=5, **kw)


@pytest.mark.parametrize("variant", sorted(SIZES))
def test_parameter_count_equals_the_released_model(variant):
    with torch.device("meta"):
        net = EMO(**SIZES[variant])
    assert sum(p.numel() for p in net.parameters()) == PAPER_PARAMS[variant]
    assert FIGURES[variant[4:]][0] == PAPER_PARAMS[variant]


@pytest.mark.parametrize("variant", sorted(SIZES))
def test_multiply_adds_at_224_within_2_percent_of_the_paper(variant):
    """torch.utils.flop_counter, with fvcore's charges for norms and pooling (how the paper counted): within 2 %.
    Convolutions, products and attention alone are 1-3 % below (the norms are ~1-2 % of an EMO's work)."""
    with torch.device("meta"):
        net = EMO(**SIZES[variant])
        x = torch.empty(1, 3, 224, 224)
    macs = count_macs(net, x)
    assert abs(macs / PAPER_MACS[variant] - 1) < 0.02, f"{variant}: {macs / 1e6:.1f}M MACs"
    core = count_macs(net, x, norms=False)
    assert 0.96 < core / PAPER_MACS[variant] < macs / PAPER_MACS[variant]


def test_macs_on_the_cpu_equal_those_on_meta():
    torch.manual_seed(0)
    net = emo_1m()
    x = torch.randn(1, 3, 96, 96)
    with torch.device("meta"):
        meta_net, meta_x = emo_1m(), torch.empty(1, 3, 96, 96)
    assert count_macs(net, x) == count_macs(meta_net, meta_x)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net.eval()(x)
    assert count_macs(net, x, norms=False) > counter.get_total_flops() / 2, "the CPU attention kernel is counted"


def test_windows_are_strided_as_released():
    x = torch.arange(14 * 14, dtype=torch.float).view(1, 1, 14, 14)
    w, n_h, n_w = window_partition(x, 7, 7)
    assert (n_h, n_w) == (2, 2) and w.shape == (4, 1, 7, 7)
    # window 0 holds rows 0, 2, ..., 12 and columns 0, 2, ..., 12 (a dilated grid, not the top-left 7x7 block)
    assert w[0, 0, 0].tolist() == [float(c) for c in range(0, 14, 2)]
    assert w[0, 0, :, 0].tolist() == [float(14 * r) for r in range(0, 14, 2)]
    assert w[1, 0, 0, 0].item() == 1.0  # window (0, 1) starts at column 1
    torch.testing.assert_close(window_unpartition(w, n_h, n_w), x)


def test_block_structure_of_the_released_model():
    net = emo_1m()
    stage0 = net.stages[0][0]
    assert not stage0.has_skip and isinstance(stage0.norm, torch.nn.Identity)
    assert stage0.se.fc1.out_channels == 24, "stage-0 SE has reduction ratio 1"
    assert net.stem.conv.bias is not None, "the stem conv has a bias"
    for i, stage in enumerate(net.stages[1:], start=1):
        down = stage[0]
        assert not down.has_skip and not down.attn, f"stage {i}: the downsampling block has no skip, no attention"
        assert down.v.out_channels == int(down.v.in_channels * SIZES["emo_1m"]["exp_ratios"][i - 1] * 2)
        for blk in stage[1:]:
            assert blk.has_skip and blk.attn == (i >= 3)
            assert isinstance(blk.conv_local.bn, torch.nn.BatchNorm2d) and blk.conv_local.bn.eps == 1e-6
    assert net.stages[3][1].num_heads == 4 and net.stages[4][1].num_heads == 8


def test_attention_placement_changes_outputs_not_shapes():
    a, b = tiny(attn_pre=True).eval(), tiny(attn_pre=False).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ya, yb = a(x), b(x)
    assert ya.shape == yb.shape == (2, 5)
    assert not torch.allclose(ya, yb)


def test_inputs_that_are_not_a_multiple_of_the_window_are_padded():
    net = tiny(window_sizes=7).eval()
    with torch.no_grad():
        out = net.forward_features(torch.randn(1, 3, 100, 76))
    assert out.shape == (1, 48, 4, 3) and torch.isfinite(out).all()


def test_timm_like_surface():
    net = tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = net.forward_features(x)
        assert feats.shape == (2, net.num_features, 2, 2)
        assert net.forward_head(feats, pre_logits=True).shape == (2, net.num_features)
        torch.testing.assert_close(net.forward_head(feats), net(x))
    net.reset_classifier(3)
    assert net(x).shape == (2, 3)
    net.reset_classifier(0)
    assert net(x).shape == (2, net.num_features)

    backbone = tiny(features_only=True, out_indices=(1, 2, 3, 4)).eval()
    with torch.no_grad():
        maps = backbone(x)
    assert [m.shape[1] for m in maps] == [f["num_chs"] for f in backbone.feature_info] == [16, 24, 32, 48]
    assert [64 // m.shape[-1] for m in maps] == [f["reduction"] for f in backbone.feature_info] == [4, 8, 16, 32]
    with pytest.raises(ValueError, match="out_indices"):
        tiny(features_only=True, out_indices=(7,))


def test_no_weight_decay_on_norms_and_biases():
    net = tiny()
    skip = net.no_weight_decay()
    assert "head.bias" in skip and "stages.1.0.norm.weight" in skip and "stem.conv.bias" in skip
    assert "head.weight" not in skip and "stages.1.0.v.weight" not in skip


# --------------------------------------------------------------------------------------------- converter
OFFICIAL_KEYS = [  # fvcore tables of the official logs
    "stage0.0.convs.0.0.weight",
    "stage0.0.convs.0.0.bias",
    "stage0.0.convs.0.1.running_var",
    "stage0.1.conv_local.conv.weight",
    "stage0.1.conv_local.norm.weight",
    "stage0.1.se.conv_reduce.weight",
    "stage0.1.se.conv_expand.bias",
    "stage0.1.proj.conv.weight",
    "stage1.0.norm.running_mean",
    "stage1.1.v.conv.weight",
    "stage1.1.v.conv.bias",
    "stage2.1.proj.conv.weight",
    "stage3.1.norm.norm.weight",
    "stage3.1.qk.conv.weight",
    "stage3.1.qk.conv.bias",
    "stage4.2.conv_local.conv.weight",
    "norm.norm.weight",
    "norm.norm.bias",
    "head.weight",
    "head.bias",
]


def test_converter_maps_the_official_layout():
    torch.manual_seed(0)
    net = emo_1m().eval()
    official = to_official_state_dict(net.state_dict())
    assert set(OFFICIAL_KEYS) <= set(official), sorted(set(OFFICIAL_KEYS) - set(official))
    assert not any(k.startswith(("stem.", "stages.")) for k in official)
    # official 1x1 convs are 4-D conv weights, as ours
    assert official["stage3.1.qk.conv.weight"].shape == (160, 80, 1, 1)
    back = convert_state_dict({"net_E": official, "net": {}})
    assert set(back) == set(net.state_dict())
    fresh = emo_1m().eval()
    fresh.load_state_dict(back, strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), net(x))


def test_converter_refuses_other_checkpoints(tmp_path):
    with pytest.raises(ValueError, match="stage0"):
        convert_state_dict({"blocks.0.weight": torch.zeros(1)})

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    p = tmp_path / "net.pth"
    p.write_bytes(pickle.dumps({"x": Evil()}))
    with pytest.raises(ValueError, match="weights_only"):
        read_official(p)
    with pytest.raises(FileNotFoundError, match="EMO_1M"):
        read_official(tmp_path / "absent.pth")


def test_official_checkpoint_of_another_size_is_a_clear_error(tmp_path):
    official = to_official_state_dict(EMO(**SIZES["emo_2m"]).state_dict())
    torch.save(official, tmp_path / "net.pth")
    from zoo.hub import WeightsMismatchError
    from zoo.models.emo.convert import load_official

    with pytest.raises(WeightsMismatchError, match="shape mismatches"):
        load_official(tmp_path / "net.pth", "emo-1m")


# ------------------------------------------------------------------------------------------------ module
def warmup_cosine_lr(step, total, warmup, lr, warmup_lr, min_lr):
    """The lr at optimizer step ``step`` of the schedule EMOModule configures (zoo.training.warmup_cosine)."""
    from zoo.training import warmup_cosine

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    warmup_cosine(opt, total, warmup, min_lr, warmup_lr)["scheduler"].step_update(step)
    return opt.param_groups[0]["lr"]


def test_schedule_warms_up_then_decays_to_min_lr():
    lrs = [warmup_cosine_lr(s, total=100, warmup=20, lr=6e-3, warmup_lr=1e-6, min_lr=1e-6) for s in range(101)]
    assert lrs[0] == pytest.approx(1e-6) and lrs[20] == pytest.approx(6e-3)
    assert all(a < b for a, b in zip(lrs[:20], lrs[1:21]))
    assert all(a >= b for a, b in zip(lrs[20:], lrs[21:]))
    assert lrs[100] == pytest.approx(1e-6) and lrs[60] == pytest.approx((6e-3 + 1e-6) / 2)


def test_module_recipe_and_errors():
    m = EMOModule("emo_1m", num_classes=10, img_size=32)
    assert m.model.stages[1][1].drop_path.drop_prob == pytest.approx(0.04036 / 14), "the size's drop-path rate"
    assert m.data_config() == {"image_size": 32}  # the data module's image_size follows it
    groups = m.param_groups()
    assert groups[0]["weight_decay"] == 0.05 and groups[1]["weight_decay"] == 0.0
    assert sum(len(g["params"]) for g in groups) == len(list(m.model.parameters()))
    m.train()
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss = m.training_step((images, labels), 0)
    assert loss.ndim == 0 and torch.isfinite(loss)


# EMO Table 2 / the official README, written out here independently of the registry: (params, MAdds, top-1)
PAPER_TABLE = {
    "1m": (1_361_168, 261e6, 71.5),
    "2m": (2_377_472, 439e6, 75.1),
    "5m": (5_108_848, 903e6, 78.4),
    "6m": (6_168_496, 961e6, 79.0),
}


def test_registry_entries_carry_the_paper_table():
    assert set(PAPER_TABLE) == set(FIGURES)
    for size, (params, flops, top1) in PAPER_TABLE.items():
        e = zoo.registry.get(f"emo-{size}")
        assert e.params == params and e.flops == flops
        assert e.paper_metrics[0].value == top1 and e.preprocess["input_size"] == [3, 224, 224]


def test_lr_scales_with_the_effective_batch_as_the_official_trainer():
    from types import SimpleNamespace

    from zoo.training import scaled_lr

    def fake(hparams):
        trainer = SimpleNamespace(datamodule=SimpleNamespace(hparams=hparams), world_size=8, accumulate_grad_batches=1)
        return SimpleNamespace(trainer=trainer)

    assert scaled_lr(fake({"batch_size": 256}), None, 1.5e-3, per=512) == pytest.approx(6e-3)  # 2048 images: 6e-3
    assert scaled_lr(fake({}), 0.01, 1.5e-3, per=512) == 0.01
    with pytest.raises(ValueError, match="model.init_args.lr"):
        scaled_lr(fake({}), None, 1.5e-3, per=512)


def test_size_and_net_overrides_are_checked_in_one_line():
    with pytest.raises(
        UserError, match=r"^EMOModule: unknown size 'emo_3m'; choose one of emo_1m, emo_2m, emo_5m, emo_6m"
    ):
        EMOModule("emo_3m")
    with pytest.raises(UserError, match=r"^EMOModule: model.init_args.net has 'depth', which the network does not"):
        EMOModule(net={"depth": 3})
    with pytest.raises(UserError, match="'num_classes'"):  # the label set is the module's num_classes
        EMOModule(net={"num_classes": 3})
    for bad in ("emo_3m", {"depth": 3}):
        with pytest.raises(UserError) as e:
            EMOModule(bad) if isinstance(bad, str) else EMOModule(net=bad)
        assert "\n" not in str(e.value)
    m = EMOModule("emo_2m", net={"drop_path_rate": 0.0, "window_sizes": 4}, num_classes=5)
    assert m.model.stages[4][1].drop_path.__class__.__name__ == "Identity"
    assert m.model.stages[4][1].window_size == 4 and m.hparams.net == {"drop_path_rate": 0.0, "window_sizes": 4}
    assert sum(p.numel() for p in m.model.parameters()) == sum(
        p.numel() for p in EMO(**{**SIZES["emo_2m"], "num_classes": 5}).parameters()
    )
