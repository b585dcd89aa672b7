"""zoo.ops.available() (printed by `zoo env`) and zoo.ops.bench.bench_op (`zoo bench --op NAME`) on the CPU."""

from __future__ import annotations

import pytest
import torch

import zoo.ops
from zoo.ops.bench import bench_op


def test_available_lists_every_op_with_a_status(monkeypatch):
    status = zoo.ops.available()
    assert set(status) == set(zoo.ops.OPS) == {"relation_kl", "graph_propagate", "fused_linear_cross_entropy"}
    if torch.cuda.is_available():
        assert all(s == "available" for s in status.values())
        return
    # no CUDA device: the interpreter (these tests run under it) or the reason is reported, never "available"
    assert all(s.startswith("available (TRITON_INTERPRET=1") for s in status.values())
    monkeypatch.delenv("TRITON_INTERPRET")
    assert all(s.startswith("reference only: no CUDA device") for s in zoo.ops.available().values())


@pytest.mark.parametrize(
    "op,size",
    [
        ("relation_kl", dict(B=1, H=1, N=20, d=16)),
        ("graph_propagate", dict(graph="random", nodes=30, nnz=90, F=8)),
        ("fused_linear_cross_entropy", dict(R=8, D=16, V=40)),
    ],
)
def test_bench_op_runs_reference_and_interpreted_kernel(op, size, capsys):
    rows = bench_op(op, device="cpu", sizes=[size], reps=1)
    providers = {r["provider"] for r in rows}
    assert {"reference", "triton"} <= providers
    assert all(r["op"] == op and r["ms"] > 0 and r["peak_mib"] is None for r in rows)
    assert "interpreter" in rows[0]["note"]
    assert op in capsys.readouterr().out


def test_bench_op_reference_only_without_interpreter_and_unknown_op(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET")
    rows = bench_op("fused_linear_cross_entropy", device="cpu", sizes=[dict(R=4, D=8, V=16)], reps=1, verbose=False)
    assert [r["provider"] for r in rows] == ["reference"] and "need a GPU" in rows[0]["note"]
    with pytest.raises(ValueError, match="unknown op"):
        bench_op("softmax")
