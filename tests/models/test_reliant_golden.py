"""RELIANT golden tests: zoo's teachers (GCN, GraphSAGE), the GraphAKD path (SGC student, logit / local / global
discriminators, the Legendre bias penalty) and the CPF student (PLP) against yushundong/RELIANT's own DGL modules run
on one small graph with the same weights (tests/fixtures/reliant/README.md says how the fixture was made)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zoo.models.reliant.model import (
    GCNTeacher,
    GlobalEmbDiscriminator,
    LocalEmbDiscriminator,
    LogitsDiscriminator,
    PLPStudent,
    SAGETeacher,
    SGCStudent,
    bias_penalty,
    teacher_embedding,
)

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "reliant" / "reliant_official.safetensors"
N, F_IN, H = 24, 6, 8


@pytest.fixture(scope="module")
def official():
    from safetensors.torch import load_file

    return load_file(FIXTURE)


def _load(module, official, name):
    prefix = f"w.{name}."
    module.load_state_dict({k[len(prefix) :]: v for k, v in official.items() if k.startswith(prefix)})
    return module.eval()


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_teachers_match_the_release(official):
    """GCN (3 GraphConv) and GraphSAGE (4 SAGEConv "gcn") logits and the embedding the release saves for GraphAKD
    (its ``emb``: the first layer's output); the earlier zoo forms (mean aggregator, penultimate embedding) differ."""
    x, ei = official["x"], official["edge_index"]
    gcn = _load(GCNTeacher(F_IN, hidden=H, num_layers=3, propagate_impl="reference"), official, "gcn")
    sage = _load(SAGETeacher(F_IN, hidden=H, num_layers=4, propagate_impl="reference"), official, "sage")
    with torch.no_grad():
        close(gcn(x, ei), official["gcn_logits"])
        close(teacher_embedding(gcn, x, ei), official["gcn_emb"])
        close(sage(x, ei), official["sage_logits"])
        close(teacher_embedding(sage, x, ei), official["sage_emb"])
        assert not torch.allclose(teacher_embedding(gcn, x, ei, "penultimate"), official["gcn_emb"], atol=1e-3)
        mean = _load(
            SAGETeacher(F_IN, hidden=H, num_layers=4, propagate_impl="reference", aggregator="mean"), official, "sage"
        )
        assert not torch.allclose(mean(x, ei), official["sage_logits"], atol=1e-3)


def test_graphakd_student_discriminators_and_penalty_match_the_release(official):
    x, ei, sens, y = official["x"], official["edge_index"], official["sens"], official["y"]
    feat = torch.cat([x, official["proxy"].mean(0).expand(N, -1)], 1)  # the student step's input: the proxy's mean
    sgc = _load(SGCStudent(F_IN + 2, H, 2, k=1, propagate_impl="reference"), official, "sgc")
    logits_d = _load(LogitsDiscriminator(2), official, "logitsD")
    local_d = _load(LocalEmbDiscriminator(H), official, "localD")
    global_d = _load(GlobalEmbDiscriminator(H), official, "globalD")
    with torch.no_grad():
        logits, emb = sgc.forward_with_embedding(feat, ei)
        close(logits, official["sgc_logits"])
        close(emb, official["sgc_emb"])
        close(logits_d(official["gcn_logits"].log_softmax(-1)), official["disc_logits"])
        # self-loop edges included: 138 = 114 edges + 24 loops
        close(local_d(emb, ei).sort().values, official["disc_local_sorted"])
        summary = torch.sigmoid(official["gcn_emb"].mean(0)).unsqueeze(-1)
        close(global_d(emb, summary), official["disc_global"])
        no_loops = LocalEmbDiscriminator(H, self_loops=False)
        no_loops.load_state_dict(local_d.state_dict())
        assert no_loops(emb, ei).numel() == 114
        probs = F.softmax(logits, -1)
        train8 = torch.arange(N) < 8
        close(bias_penalty(probs, sens, train8, metric="sp"), official["penalty_sp_train"])
        close(bias_penalty(probs, sens, torch.ones(N, dtype=torch.bool), y, metric="eo"), official["penalty_eo_all"])


def test_cpf_student_plp_matches_the_release(official):
    x, ei, y, train = official["x"], official["edge_index"], official["y"], official["train_mask"].bool()
    plp = PLPStudent(
        F_IN, N, 2, num_layers=3, emb_dim=H, mlp_layers=2, feat_drop=0.8, attn_drop=0.2, propagate_impl="reference"
    )
    plp = _load(plp, official, "plp")
    plp.set_labels(y, train)
    with torch.no_grad():
        close(plp(x, ei), official["plp_out"])
