"""`zoo bench` measures models side by side and prints ratios against the first."""
from __future__ import annotations

from zoo.bench import bench_models


def test_bench_prints_side_by_side_rows(capsys):
    rows = bench_models(["emo-1m", "timm:mobilenetv2_050"], batch_size=2, steps=2, device="cpu")
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["model", "device", "mode"]
    assert [r["name"] for r in rows] == ["emo-1m", "timm:mobilenetv2_050"]
    assert all(r["samples_per_s"] > 0 and r["batch"] == 2 for r in rows)
    assert rows[0]["params"] == 1_361_168
    assert out[1].rstrip().endswith("1.00x")


def test_bench_train_mode_runs_backward():
    (row,) = bench_models(["timm:mobilenetv2_050"], batch_size=2, steps=1, device="cpu", train=True)
    assert row["mode"] == "train" and row["latency_ms"] > 0
