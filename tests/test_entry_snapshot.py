"""Every entry's network is unchanged by the house refactors: the fixed input's outputs at ``tiny_overrides`` with
weights filled by name, and the paper-size module tree, equal what ``tests/entry_snapshot.py --write`` stored."""

from __future__ import annotations

import json

import pytest
import torch
from entry_snapshot import FIXTURES, architecture, build, run, summary

import zoo

STORED = json.loads((FIXTURES / "outputs.json").read_text())


def test_snapshot_covers_every_entry():
    assert sorted(STORED) == sorted(zoo.list_models()), (
        "new entry: add it with `python tests/entry_snapshot.py --write`"
    )


@pytest.mark.parametrize("name", sorted(STORED))
def test_entry_outputs_unchanged(name):
    module = build(name)
    inputs = torch.load(FIXTURES / f"{name}.pt", weights_only=True)
    got = summary(run(module, inputs))
    want = STORED[name]["outputs"]
    assert [g["shape"] for g in got] == [w["shape"] for w in want], f"{name}: output shapes changed"
    for g, w in zip(got, want):
        for key in ("sum", "abs_sum", "head"):
            torch.testing.assert_close(
                torch.tensor(g[key], dtype=torch.float64),
                torch.tensor(w[key], dtype=torch.float64),
                rtol=1e-5,
                atol=1e-6,
                msg=lambda m: f"{name}: {key} changed: {m}",
            )


@pytest.mark.parametrize("name", sorted(STORED))
def test_paper_size_architecture_unchanged(name):
    assert architecture(name) == STORED[name]["architecture"], f"{name}: the paper-size module tree changed"
