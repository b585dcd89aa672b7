"""`zoo bench`: inference and real training steps side by side, data preprocessing, the JSON rows; EMO's in-place
value activation."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch
from lightning.pytorch import Callback

from zoo.bench import bench_models, write_json
from zoo.cli import main
from zoo.profiling import PeakMemory, time_calls

ROW_FIELDS = {
    "name",
    "mode",
    "device",
    "threads",
    "torch",
    "zoo",
    "batch",
    "unit",
    "samples_per_s",
    "step_ms_median",
    "step_ms_min",
    "step_ms_max",
    "peak_mem_mb",
    "params",
    "steps",
    "warmup",
    "loss",
    "data",
    "note",
}


class TrainingProbe(Callback):
    """Snapshots the parameters before the first step; at the end, what the optimizers of configure_optimizers did."""

    def on_train_start(self, trainer, pl_module):
        self.before = {k: v.detach().clone() for k, v in pl_module.named_parameters()}
        self.optimizers = list(trainer.optimizers)

    def on_train_end(self, trainer, pl_module):
        after = dict(pl_module.named_parameters())
        self.changed = [k for k, v in self.before.items() if not torch.equal(v, after[k].detach())]
        self.opt_steps = [
            max((int(s["step"]) for s in o.state.values() if "step" in s), default=0) for o in self.optimizers
        ]
        self.momentum_buffers = sum("momentum_buffer" in s for o in self.optimizers for s in o.state.values())


def test_inference_rows_side_by_side(capsys):
    rows = bench_models(["emo-1m", "timm:mobilenetv2_050"], batch_size=2, steps=2, warmup=1, device="cpu")
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["model", "mode", "dev"]
    assert [r["name"] for r in rows] == ["emo-1m", "timm:mobilenetv2_050"]
    assert all(ROW_FIELDS <= set(r) and r["mode"] == "infer" and r["batch"] == 2 for r in rows)
    assert rows[0]["params"] == 1_361_168
    assert out[1].rstrip().endswith("1.00x")


def test_train_runs_the_modules_training_step_and_optimizer(capsys):
    """emo-1m (at 32 px to stay fast) trains through its own training_step and AdamW: the parameters move, AdamW
    counts warmup + steps updates, the loss is finite; the demo batch size is overridden."""
    probe = TrainingProbe()
    (row,) = bench_models(
        ["emo-1m"],
        train=True,
        batch_size=4,
        steps=2,
        warmup=1,
        device="cpu",
        model_args={"img_size": 32},
        callbacks=[probe],
    )
    assert ROW_FIELDS <= set(row) and row["mode"] == "train"
    assert row["batch"] == 4 and row["unit"] == "images" and row["samples_per_s"] > 0
    assert row["step_ms_min"] <= row["step_ms_median"] <= row["step_ms_max"]
    assert math.isfinite(row["loss"]) and row["params"] == 1_361_168
    assert "configs/demo/emo.yaml" in row["data"] and "image_size=32 from the model" in row["note"]
    assert probe.opt_steps == [3]  # AdamW from EMOModule.configure_optimizers: 1 warm-up + 2 timed steps
    assert len(probe.changed) > 0.9 * len(probe.before)
    assert "emo-1m: " in capsys.readouterr().out


def test_train_full_graph_entry_takes_data_sizes_from_the_demo():
    """ccgc-bat (81 features, 4 clusters) on the demo's karate club: the sizes come from the demo, the width (500)
    is the entry's, one step is one full-graph epoch of CCGC's manual optimisation (Adam)."""
    probe = TrainingProbe()
    (row,) = bench_models(["ccgc-bat"], train=True, steps=2, warmup=1, device="cpu", callbacks=[probe])
    assert (row["batch"], row["unit"]) == (34, "nodes")
    assert "in_features=34" in row["note"] and "num_clusters=2" in row["note"]
    assert row["params"] == 2 * (34 * 500 + 500)
    assert probe.opt_steps == [3] and probe.changed


def test_train_timm_model_beside_an_entry_and_json(tmp_path):
    """The acceptance command at toy size: `zoo bench emo-1m timm:<name> --train --json PATH`."""
    path = tmp_path / "out" / "bench.json"
    assert (
        main(
            [
                "bench",
                "emo-1m",
                "timm:mobilenetv2_050",
                "--train",
                "--batch-size",
                "2",
                "--steps",
                "1",
                "--warmup",
                "1",
                "--device",
                "cpu",
                "--model-arg",
                "img_size=32",
                "--json",
                str(path),
            ]
        )
        == 0
    )
    rows = json.loads(path.read_text())
    assert [r["name"] for r in rows] == ["emo-1m", "timm:mobilenetv2_050"]
    assert all(ROW_FIELDS <= set(r) and r["mode"] == "train" and math.isfinite(r["loss"]) for r in rows)
    assert rows[1]["batch"] == 2 and "SGD on 1000 classes, images 224 px" in rows[1]["note"]
    assert list(path.parent.iterdir()) == [path]  # no temporary file left beside it


def test_timm_training_steps_its_sgd():
    probe = TrainingProbe()
    bench_models(["timm:mobilenetv2_050"], train=True, batch_size=2, steps=1, warmup=1, device="cpu", callbacks=[probe])
    assert probe.momentum_buffers > 0 and probe.changed


def test_user_errors_are_one_line(capsys):
    assert main(["bench", "timm:not_a_model_xyz", "--train", "--device", "cpu"]) == 2
    assert "unknown timm model 'not_a_model_xyz'" in capsys.readouterr().err
    assert main(["bench", "emo-1m", "--train", "--model-arg", "img_size"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    assert main(["bench", "emo-1m", "--train", "--data"]) == 2
    assert main(["bench", "emo-1m", "--model-arg", "img_size=32"]) == 2  # inference takes no init overrides


def test_data_preprocessing_in_a_fresh_process(tmp_path):
    (row,) = bench_models(["ccgc-bat"], data=True, json_path=str(tmp_path / "d.json"), verbose=False)
    assert row["mode"] == "data" and row["seconds"] > 0 and "GraphClusteringDataModule" in row["data"]
    assert json.loads((tmp_path / "d.json").read_text())[0]["name"] == "ccgc-bat"


def test_timer_and_peak_memory():
    times = time_calls(lambda: None, steps=3, warmup=1)
    assert len(times) == 3 and all(t >= 0 for t in times)
    with PeakMemory("cpu") as mem:
        block = torch.ones(64, 2**20 // 4 * 1, dtype=torch.float32)  # 64 MiB, touched
        del block
    assert mem.growth_mb > 48


def test_write_json_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "rows.json"
    write_json([{"a": 1}], path)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_json([{"a": 2}], path)
    assert json.loads(path.read_text()) == [{"a": 1}] and [p.name for p in tmp_path.iterdir()] == ["rows.json"]


def test_emo_value_activation_runs_in_place_and_keeps_gradients():
    """The iRMB value activation overwrites the value conv's output (official ConvNormAct, inplace=True) where the
    activation has an in-place form (SiLU), and gradients are those of the out-of-place activation."""
    from zoo.models.emo.model import iRMB

    torch.manual_seed(0)
    block = iRMB(16, 16, exp_ratio=2.0, act="silu").train()
    seen = {}
    hook = block.v.register_forward_hook(lambda m, i, o: seen.update(v=o))  # returns None: output unchanged
    x = torch.randn(2, 16, 8, 8, requires_grad=True)
    block(x).square().sum().backward()
    with torch.no_grad():
        pre = torch.nn.functional.conv2d(block.norm(x), block.v.weight, block.v.bias)
    assert torch.allclose(seen["v"], torch.nn.functional.silu(pre), atol=1e-6)  # overwritten: activated in place
    hook.remove()
    g_inplace = x.grad.clone()
    x.grad = None
    block.v_act = torch.nn.SiLU()
    block(x).square().sum().backward()
    assert torch.allclose(g_inplace, x.grad, atol=1e-6)
    assert not hasattr(iRMB(16, 16, act="gelu").v_act, "inplace")  # GELU: no in-place form, left as is


# ---------------------------------------------------------------------------------------------- issue 26
def test_warm_up_runs_until_the_step_time_is_stable():
    """A fresh process's first steps are slower: warm-up continues past min_steps until the last 3 step times agree
    within 5 %, and says when they never did."""
    from zoo.profiling import warm_up

    clock = {"t": 0.0}
    durations = iter([2.0, 1.6, 1.3, 1.1, 1.0, 1.01, 0.99, 1.0] + [1.0] * 50)

    def step():
        clock["t"] += next(durations)

    assert warm_up(step, min_steps=3, timer=lambda: clock["t"]) == (7, True)
    noisy = iter([1.0, 2.0] * 30)
    assert warm_up(
        lambda: clock.__setitem__("t", clock["t"] + next(noisy)), min_steps=1, max_steps=9, timer=lambda: clock["t"]
    ) == (9, False)


def test_inference_row_reports_its_warm_up_steps(capsys):
    (row,) = bench_models(["emo-1m"], batch_size=1, steps=1, warmup=2, device="cpu")
    assert row["warmup"] >= 2 and "warm-up: " in row["note"] and f"{row['warmup']} steps" in row["note"]
    assert "emo-1m: warm-up: " in capsys.readouterr().out


def test_peer_op_rows_iou_and_nms(capsys):
    """`zoo bench --op iou,nms` prints zoo vs shapely rows with ratios; zoo's NMS keeps what the shapely greedy
    NMS keeps, its IoU is shapely's."""
    import numpy as np

    from zoo.bench.peers import bench_peer_ops, scene_boxes, shapely_bev_iou, shapely_nms_rows, shapely_nms_tree
    from zoo.nn.boxes3d import bev_iou, rotated_nms

    rows = bench_peer_ops("iou,nms", reps=1, box_sizes=(60,))
    assert [(r["op"], r["peer"]) for r in rows] == [("iou", "shapely STRtree"), ("nms", rows[1]["peer"])]
    assert all(r["ratio"] == pytest.approx(r["zoo_ms"] / r["peer_ms"]) for r in rows)
    out = capsys.readouterr().out
    assert "ratio" in out.splitlines()[0] and "rotated NMS 60 boxes" in out
    boxes, scores = scene_boxes(300, seed=1)
    np.testing.assert_allclose(
        bev_iou(boxes.double(), boxes.double()).numpy(), shapely_bev_iou(boxes, boxes), atol=1e-9
    )
    keep = sorted(rotated_nms(boxes, scores, 0.2).tolist())
    assert (
        keep
        == sorted(shapely_nms_rows(boxes, scores, 0.2).tolist())
        == sorted(shapely_nms_tree(boxes, scores, 0.2).tolist())
    )
    assert 0 < len(keep) < 300


def test_rsfd_beam_op_row(monkeypatch, capsys):
    """`zoo bench --op rsfd-beam` (through the CLI, a tiny network): cached and uncached beam search each against
    cached greedy decoding, ratios of the medians, and the captions-equal flag; the script prints the same numbers."""
    import zoo.bench.peers as peers

    tiny = dict(in_features=[6, 5], vocab_size=30, max_len=7, num_categories=3, d_model=16, num_heads=2, ffn_dim=32)
    monkeypatch.setattr(peers, "RSFD_BEAM_BATCH", 3)
    monkeypatch.setattr(peers, "RSFD_BEAM_SIZE", tiny)
    assert main(["bench", "--op", "rsfd-beam", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "RSFD custom batch 3, beam 5 (cached)" in out and "(uncached)" in out
    assert "greedy decoding (cached)" in out and "same captions cached / uncached: True" in out
    rows = peers.bench_peer_ops("rsfd-beam", reps=1, verbose=False)
    assert [r["op"] for r in rows] == ["rsfd-beam"] * 2 and all(r["device"] == "cpu" for r in rows)
    assert all(r["ratio"] == pytest.approx(r["zoo_ms"] / r["peer_ms"]) for r in rows)
    assert "rsfd-beam" in peers.PEER_OPS and "rsfd-beam" not in peers.ALL_PEERS  # `--op peers`: the speed table
    r = peers.rsfd_beam_times(batch=2, size=tiny, reps=1, uncached=False)
    assert set(r["median_s"]) == {"greedy", "beam_cached"} and r["ratio_to_greedy"]["greedy"] == 1.0


def test_peer_op_rows_voxelize(monkeypatch, shared_data, capsys):
    """`zoo bench --op voxelize` (through the CLI): rows on the real KITTI / nuScenes frames against spconv's
    PointToVoxel, with the share of points spconv kept, and a linearity row."""
    import zoo.bench.peers as peers

    monkeypatch.setenv("ZOO_SHARED_DATA", str(shared_data))
    monkeypatch.setattr(peers, "UNIFORM_POINTS", 20_000)
    monkeypatch.setattr(peers, "LINEARITY_POINTS", (5_000, 20_000))
    assert main(["bench", "--op", "voxelize", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    for work in (
        "0.2 m pillars, KITTI frame",
        "3 KITTI scans",
        "nuScenes frame",
        "0.075 m voxels, uniform 20k",
        "linearity 5k-20k",
    ):
        assert work in out
    assert "spconv keeps" in out and "x  spconv PointToVoxel" in out
    from zoo.ops.bench import bench_op

    with pytest.raises(ValueError, match="voxelize, iou, nms"):
        bench_op("nope")


def test_gpu_check_script_syntax_and_dry_run():
    """scripts/gpu_check.sh: bash -n clean; the dry run (forced, and automatic without CUDA) lists the GPU-only
    tests, the kernel benchmarks and a bf16 training step of every registry entry, runs nothing, exits 0."""
    import subprocess
    from pathlib import Path

    from zoo import registry

    repo = Path(__file__).resolve().parents[1]
    script = repo / "scripts" / "gpu_check.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    runs = [["--dry-run"]] + ([[]] if not torch.cuda.is_available() else [])
    for args in runs:
        res = subprocess.run(["bash", str(script), *args], capture_output=True, text=True, timeout=120, cwd=repo)
        assert res.returncode == 0, res.stderr
        out = res.stdout
        assert "tests/test_ops_gpu.py" in out and "dry run: nothing was run" in out
        for op in ("relation_kl", "graph_propagate", "fused_linear_cross_entropy"):
            assert f"--op {op} --device cuda" in out
        trained = " ".join(line for line in out.splitlines() if "--precision bf16-mixed" in line)
        assert all(f" {e.name} " in trained for e in registry.all_entries())
    make = subprocess.run(["make", "-n", "gpu-check"], capture_output=True, text=True, cwd=repo)
    assert "scripts/gpu_check.sh" in make.stdout
    bad = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True, cwd=repo)
    assert bad.returncode == 2 and "--dry-run" in bad.stderr


def test_model_peer_rows(monkeypatch, capsys):
    """`zoo bench --op emo-train,create` (through the CLI): EMO-1M's training step against timm's MobileNetV2 on the
    same demo batches, and a cold `zoo.create` against `timm.create_model` in fresh processes, as ratios; both are
    part of `--op peers` (the speed table)."""
    import zoo.bench.model_peers as mp
    import zoo.bench.peers as peers

    calls = []
    real = mp._process_seconds
    monkeypatch.setattr(mp, "_process_seconds", lambda code: calls.append(code) or real("pass"))
    monkeypatch.setattr(mp.emo_train_rows, "__defaults__", (4, 1))  # batch 4, one timed step
    assert main(["bench", "--op", "emo-train,create", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "EMO-1M training step, batch 4" in out and "timm mobilenetv2_100 training step" in out
    assert "zoo.create('emo-1m'), cold process" in out and "Lightning's import is" in out
    assert sorted(calls) == sorted(mp.CREATE_SCRIPTS.values())  # one round: each script once
    rows = peers.bench_peer_ops("create", reps=2, verbose=False)
    assert len(calls) == 3 * len(mp.CREATE_SCRIPTS) and rows[0]["ratio"] == pytest.approx(
        rows[0]["zoo_ms"] / rows[0]["peer_ms"]
    )
    assert {"emo-train", "create"} <= set(peers.ALL_PEERS)
