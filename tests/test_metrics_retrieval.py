"""zoo.metrics.retrieval: recall at K and ranks on hand-made similarity matrices, and the accumulating metric."""

import pytest
import torch

from zoo.metrics.retrieval import CrossModalRetrieval, best_positive_rank, retrieval_scores


def test_ranks_and_recall_on_a_hand_made_matrix():
    # 3 queries x 4 gallery items; positives on the diagonal (query 2 also matches item 3)
    sim = torch.tensor(
        [
            [0.9, 0.1, 0.2, 0.3],  # positive 0 ranks 1st
            [0.8, 0.5, 0.9, 0.1],  # positive 1 ranks 3rd (0.9, 0.8 above it)
            [0.1, 0.2, 0.3, 0.4],
        ]
    )  # positives 2 (3rd... 0.3) and 3 (1st): best is rank 1
    match = torch.eye(3, 4, dtype=torch.bool)
    match[2, 3] = True
    assert best_positive_rank(sim, match).tolist() == [1, 3, 1]
    s = retrieval_scores(sim, match, ks=(1, 2, 3))
    assert s["r1"].item() == pytest.approx(200 / 3)
    assert s["r2"].item() == pytest.approx(200 / 3)
    assert s["r3"].item() == pytest.approx(100.0)
    assert s["medr"].item() == 1.0 and s["meanr"].item() == pytest.approx(5 / 3)


def test_ties_count_in_the_querys_favour_and_a_query_without_positive_is_an_error():
    sim = torch.zeros(2, 5)
    assert best_positive_rank(sim, torch.eye(2, 5, dtype=torch.bool)).tolist() == [1, 1]
    with pytest.raises(ValueError, match="at least one positive"):
        best_positive_rank(sim, torch.zeros(2, 5, dtype=torch.bool))


def test_metric_accumulates_batches_and_equals_one_shot():
    torch.manual_seed(0)
    v, t = torch.randn(12, 8), torch.randn(12, 8)
    t[:6] = v[:6] + 0.01 * torch.randn(6, 8)  # half the captions match their video closely
    m = CrossModalRetrieval(ks=(1, 5), query="text", gallery="video")
    for i in range(0, 12, 4):
        m.update(v[i : i + 4], t[i : i + 4])
    got = m.compute()
    sim = torch.nn.functional.normalize(t, dim=-1) @ torch.nn.functional.normalize(v, dim=-1).T
    ref = retrieval_scores(sim, torch.eye(12, dtype=torch.bool), ks=(1, 5))
    assert set(got) == {f"{d}_{k}" for d in ("t2v", "v2t") for k in ("r1", "r5", "medr", "meanr")}
    for k, val in ref.items():
        torch.testing.assert_close(got[f"t2v_{k}"], val)
    assert got["t2v_r1"] >= 50.0
    m.reset()
    m.update(v[:3], t[:3])
    assert m.compute()["t2v_r1"].item() <= 100.0  # ids restart after reset: a fresh one-to-one evaluation


def test_several_captions_per_item_by_id_and_repeated_gallery_rows_count_once():
    # two images, each with two captions; the image rows are passed once per caption (as a caption loader does)
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cap = torch.tensor([[1.0, 0.1], [0.9, 0.2], [0.1, 1.0], [0.3, 0.8]])
    m = CrossModalRetrieval(ks=(1,), query="text", gallery="image")
    m.update(img[[0, 0, 1, 1]], cap, a_ids=torch.tensor([0, 0, 1, 1]), b_ids=torch.tensor([0, 0, 1, 1]))
    out = m.compute()
    assert out["t2i_r1"].item() == 100.0 and out["i2t_r1"].item() == 100.0
    assert out["i2t_meanr"].item() == 1.0


def test_bad_input_is_a_clear_error():
    m = CrossModalRetrieval()
    with pytest.raises(ValueError, match="pass a_ids and b_ids"):
        m.update(torch.randn(3, 4), torch.randn(5, 4))
    with pytest.raises(ValueError, match="same D"):
        m.update(torch.randn(3, 4), torch.randn(3, 5))
    with pytest.raises(ValueError, match="both a_ids and b_ids"):
        m.update(torch.randn(3, 4), torch.randn(3, 4), a_ids=torch.arange(3))
