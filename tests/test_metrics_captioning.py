"""Caption metrics through pycocoevalcap: hand-worked BLEU / CIDEr-D cases, a caption equal to its references, the
torchmetrics wrapper (batches, duplicate ids, merged process states) and the Java path (PTB tokenizer, METEOR)."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.metrics.captioning import CaptionMetrics, caption_scores


def test_bleu_on_a_hand_worked_case():
    s = caption_scores({0: ["a man is walking"]}, {0: ["a man is running"]}, tokenize=False, meteor=False)
    # n-gram precisions 3/4, 2/3, 1/2, 0/1; equal lengths -> no brevity penalty
    assert s["bleu1"] == pytest.approx(0.75, abs=1e-6)
    assert s["bleu2"] == pytest.approx(math.sqrt(0.75 * 2 / 3), abs=1e-6)
    assert s["bleu3"] == pytest.approx((0.75 * 2 / 3 * 0.5) ** (1 / 3), abs=1e-6)
    assert s["bleu4"] < 1e-3  # no 4-gram matches (coco-caption's tiny smoothing only)
    assert s["rouge_l"] == pytest.approx(0.75)  # LCS 3 of 4 words, beta 1.2
    short = caption_scores({0: ["a man is walking"]}, {0: ["a man"]}, tokenize=False, meteor=False)
    assert short["bleu1"] == pytest.approx(math.exp(1 - 4 / 2), abs=1e-6)  # brevity penalty e^(1 - r/c)


def test_captions_equal_to_their_references_score_what_the_definitions_give():
    refs = {0: ["a cat sits"], 1: ["a dog runs fast"]}
    s = caption_scores(refs, {k: list(v) for k, v in refs.items()}, tokenize=False, meteor=False)
    for n in range(1, 5):
        assert s[f"bleu{n}"] == pytest.approx(1.0, abs=1e-6)
    assert s["rouge_l"] == pytest.approx(1.0)
    # CIDEr-D: 10 x mean over n = 1..4 of the tf-idf cosine; "a" occurs in every image (idf 0) but the other n-grams
    # match exactly (cosine 1); the 3-word caption has no 4-gram (cosine 0): (10 x 3/4 + 10 x 4/4) / 2 = 8.75
    assert s["cider"] == pytest.approx(8.75, abs=1e-6)


def test_metric_gathers_batches_drops_repeated_ids_and_merges_process_states():
    refs = [["a man is walking", "a man walks"], ["a dog runs fast"], ["a cat sits"]]
    cands = ["a man is running", "a dog runs", "a cat sits"]
    want = caption_scores(
        {i: r for i, r in enumerate(refs)}, {i: [c] for i, c in enumerate(cands)}, tokenize=False, meteor=False
    )
    m = CaptionMetrics(tokenize=False, meteor=False)
    m.update(cands[:2], refs[:2], torch.tensor([0, 1]))
    m.update(cands[2:], refs[2:], torch.tensor([2]))
    got = m.compute()
    for k, v in want.items():
        assert float(got[k]) == pytest.approx(v, rel=1e-6)
    # two "ranks": the second repeats item 0 (a distributed sampler pads), states concatenated as a gather would
    r0, r1 = CaptionMetrics(tokenize=False, meteor=False), CaptionMetrics(tokenize=False, meteor=False)
    r0.update(cands[:2], refs[:2], torch.tensor([0, 1]))
    r1.update([cands[2], "garbage"], [refs[2], ["zzz"]], torch.tensor([2, 0]))
    r1.merge_state(r0)  # torchmetrics puts the incoming state first: rank 0's items, then rank 1's
    assert r1.captions()[1] == {0: [cands[0]], 1: [cands[1]], 2: [cands[2]]}
    assert float(r1.compute()["cider"]) == pytest.approx(want["cider"], rel=1e-6)
    with pytest.raises(ValueError, match="reference"):
        m.update(["x"], [[]])


def test_java_tokenizer_and_meteor():
    s = caption_scores(
        {0: ["A man is running.", "a man runs"], 1: ["The dog barks!"]},
        {0: ["a man is running"], 1: ["the dog, barks"]},
        tokenize=True,
        meteor=True,
    )
    assert s["bleu1"] == pytest.approx(1.0, abs=1e-6)  # case and punctuation removed by the PTB tokenizer
    assert 0.9 < s["meteor"] <= 1.0  # exact matches; only METEOR's fragmentation penalty remains
