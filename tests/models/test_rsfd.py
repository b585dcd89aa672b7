"""RSFD: FAD on a hand-made vocabulary, DSS targets and loss, the highway encoder, beam search, the objective,
feature extraction to HDF5 with resume."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from zoo.errors import UserError
from zoo.models.rsfd.model import (
    BOS,
    EOS,
    PAD,
    RSFD,
    CaptionDecoder,
    DecoderLayer,
    DivergentSemanticSupervisor,
    Highway,
    HighwayEncoder,
    beam_search,
    fad_partition,
    greedy_decode,
    shifted_targets,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rsfd"


# ------------------------------------------------------------------------------------------------ FAD
def _decoder_with_counts(counts, d=4, threshold=200):
    dec = CaptionDecoder(
        len(counts), max_len=8, d_model=d, num_heads=1, ffn_dim=8, dropout=0.0, fad_threshold=threshold
    )
    dec.fad.token_counts.copy_(torch.tensor(counts, dtype=torch.float))
    return dec


# ids: 0 pad, 1 unk, 2 bos, 3 eos, 4 mask, 5 vis, 6 "man" (frequent), 7 "dog" (frequent), 8 "guy", 9 "puppy", 10 "cat"
COUNTS = [0, 0, 5000, 5000, 0, 0, 900, 300, 12, 3, 150]


def _hand_embeddings(dec):
    w = torch.zeros(11, 4)
    w[6] = torch.tensor([1.0, 0, 0, 0])  # man
    w[7] = torch.tensor([0, 1.0, 0, 0])  # dog
    w[8] = torch.tensor([0.9, 0.1, 0, 0])  # guy   -> man
    w[9] = torch.tensor([0.1, 0.8, 0, 0])  # puppy -> dog
    w[10] = torch.tensor([0.2, 0.7, 0, 1])  # cat  -> dog
    w[1] = torch.tensor([0.5, 0.1, 1, 0])  # <unk> (count 0 -> low) -> man
    with torch.no_grad():
        dec.word.weight.copy_(w)
    return w


def test_fad_partition_excludes_specials_as_released():
    low, high = fad_partition(torch.tensor(COUNTS, dtype=torch.float), 200)
    assert low.nonzero().flatten().tolist() == [1, 8, 9, 10]  # <unk> is low (count 0); pad/mask/vis never
    assert high.nonzero().flatten().tolist() == [6, 7]  # bos/eos are frequent but never in H


def test_fad_groups_and_group_means_on_a_hand_made_vocabulary():
    dec = _decoder_with_counts(COUNTS)
    w = _hand_embeddings(dec)
    low_ids, high_ids, assign = dec.fad.groups(dec.word.weight)
    groups = {int(low_ids[i]): int(high_ids[assign[i]]) for i in range(len(low_ids))}
    assert groups == {1: 6, 8: 6, 9: 7, 10: 7}
    table = dec.fad(dec.word.weight)
    torch.testing.assert_close(table[6], (w[6] + w[8] + w[1]) / 3)
    torch.testing.assert_close(table[7], (w[7] + w[9] + w[10]) / 3)
    for i in (0, 1, 2, 3, 8, 9, 10):  # low words and specials keep their own embedding
        torch.testing.assert_close(table[i], w[i])
    assert dec.fad.partition_sizes() == (4, 2)


def test_fad_unmarked_frequent_word_keeps_its_embedding():
    counts = list(COUNTS)
    counts[8] = counts[9] = counts[10] = counts[1] = 500  # nothing is rare: no group, no change
    dec = _decoder_with_counts(counts)
    w = _hand_embeddings(dec)
    torch.testing.assert_close(dec.fad(dec.word.weight), w)


def test_fad_is_training_only_by_default_and_switchable():
    dec = _decoder_with_counts(COUNTS)
    w = _hand_embeddings(dec)
    tokens = torch.tensor([[BOS, 6, 7, EOS]])
    ln = dec.norm
    pos = dec.position(torch.arange(4))

    def expected(table):
        return ln(F.embedding(tokens, table) + pos)

    dec.train()
    torch.testing.assert_close(dec.embed(tokens), expected(dec.fad(w)))
    dec.eval()
    torch.testing.assert_close(dec.embed(tokens), expected(w))
    dec.fad_at_inference = True  # the release's behaviour
    torch.testing.assert_close(dec.embed(tokens), expected(dec.fad(w)))
    dec.use_fad = False
    dec.train()
    torch.testing.assert_close(dec.embed(tokens), expected(w))


def test_fad_gradients_reach_rare_words_through_the_mean():
    dec = _decoder_with_counts(COUNTS)
    _hand_embeddings(dec)
    dec.train()
    out = dec.embed(torch.tensor([[6]]))  # only the frequent word "man" appears in the input
    out.pow(2).sum().backward()
    g = dec.word.weight.grad
    assert g[8].abs().sum() > 0 and g[1].abs().sum() > 0  # its group members (guy, <unk>) learn
    torch.testing.assert_close(g[8], g[6])  # uniform mean: the same gradient for every member
    assert g[7].abs().sum() == 0 and g[9].abs().sum() == 0  # another group: untouched
    dec.use_fad = False
    dec.word.weight.grad = None
    dec.embed(torch.tensor([[6]])).pow(2).sum().backward()
    assert dec.word.weight.grad[8].abs().sum() == 0  # without FAD the rare word gets nothing


# ------------------------------------------------------------------------------------------------ DSS
def test_dss_targets_offsets_padding_and_valid_slice():
    tokens = torch.tensor([[BOS, 11, 12, 13, EOS, PAD, PAD]])
    inp, tgt = tokens[:, :-1], tokens[:, 1:]  # inputs: bos 11 12 13 eos pad; targets: 11 12 13 eos pad pad
    t, v = shifted_targets(inp, tgt, 1)
    assert t.tolist() == [[12, 13, EOS, PAD, PAD, PAD]]
    t, v = shifted_targets(inp, tgt, 2)
    assert t.tolist() == [[13, EOS, PAD, PAD, PAD, PAD]]
    t, v = shifted_targets(inp, tgt, -1)
    # position t predicts y_{t-1}: none at t=0; at t=4 (input eos) y_3 = eos; t=5 is a padded input -> invalid
    assert t.tolist() == [[PAD, 11, 12, 13, EOS, PAD]]
    assert v.tolist() == [[False, True, True, True, True, False]]
    t, v = shifted_targets(inp, tgt, -2)
    assert t.tolist() == [[PAD, PAD, 11, 12, 13, PAD]]
    t, v = shifted_targets(inp, tgt, 9)  # beyond the sequence
    assert not v.any()


def test_dss_loss_is_the_mean_of_the_per_offset_losses_with_the_shared_projection():
    torch.manual_seed(0)
    d, vsz = 8, 20
    dss = DivergentSemanticSupervisor(d, vsz, window=2, shared_vocab_proj=True)
    assert dss.offsets == [-2, -1, 1, 2] and dss.vocab is None
    proj = torch.nn.Linear(d, vsz, bias=False)
    tokens = torch.tensor([[BOS, 11, 12, 13, EOS, PAD], [BOS, 14, EOS, PAD, PAD, PAD]])
    inp, tgt = tokens[:, :-1], tokens[:, 1:]
    hidden = torch.randn(2, 5, d)
    want = []
    for head, o in zip(dss.heads, dss.offsets):
        logp = F.log_softmax(proj(head(hidden)), -1)
        total = 0.0
        for b in range(2):
            for t in range(5):
                if 0 <= t + o < 5 and inp[b, t] != PAD and tgt[b, t + o] != PAD:
                    total = total - logp[b, t, tgt[b, t + o]]
        want.append(total / 2)
    torch.testing.assert_close(dss(hidden, inp, tgt, proj), torch.stack(want).mean())
    own = DivergentSemanticSupervisor(d, vsz, window=3, shared_vocab_proj=False)
    assert own.offsets == [-3, -2, -1, 1, 2, 3] and len(own.vocab) == 6


# ------------------------------------------------------------------------------------------------ encoder
def test_highway_gate_formula_and_encoder_shapes():
    torch.manual_seed(0)
    hw = Highway(6)
    x = torch.randn(3, 6)
    g = torch.sigmoid(hw.w2(x))
    torch.testing.assert_close(hw(x), g * x + (1 - g) * torch.tanh(hw.w1(x)))
    enc = HighwayEncoder([12, 10], d_model=6, dropout=0.0)
    out = enc([torch.randn(4, 5, 12), torch.randn(4, 3, 10)])
    assert out.shape == (4, 8, 6)  # concatenated in time
    enc.train()
    # per-modality BatchNorm over (batch x time): each modality's block is normalised on its own
    torch.testing.assert_close(out[:, :5].mean(dim=(0, 1)), torch.zeros(6), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="modalities"):
        enc([torch.randn(4, 5, 12)])


# ------------------------------------------------------------------------------------------------ decoding
def _tiny(vocab=15, max_len=7, seed=0):
    torch.manual_seed(seed)
    return RSFD([6, 5], vocab, max_len, 0, d_model=16, num_heads=2, ffn_dim=32, dropout=0.0, encoder_dropout=0.0).eval()


def test_beam_one_is_greedy_and_lengths_respect_max_len():
    model = _tiny()
    feats = [torch.randn(4, 3, 6), torch.randn(4, 2, 5)]
    with torch.no_grad():
        beam = beam_search(model, feats, beam_size=1, alpha=1.0)
        greedy = greedy_decode(model, feats)
    n = beam.tokens.shape[1]
    assert torch.equal(beam.tokens, greedy.tokens[:, :n])
    assert (greedy.tokens[:, n:] == PAD).all()
    assert beam.tokens.shape[1] <= 6  # max_len 7 positions, one holds <bos>
    with torch.no_grad():
        wide = beam_search(model, feats, beam_size=4)
        mem = model.encode(feats)
        tok = torch.tensor([[BOS, 7, 8]] * 4)
        torch.testing.assert_close(model.next_logits(tok, mem), model.logits(tok, mem)[0][:, -1])
    assert wide.tokens.shape[0] == 4 and wide.tokens.shape[1] <= 6


class _ScriptedLM:
    """A stand-in network with hand-set next-word distributions: beam search only calls encode / next_logits."""

    def __init__(self, table, vocab=8, max_len=6):
        self.table, self.vocab = table, vocab
        self.decoder = type("D", (), {"max_len": max_len})()

    def encode(self, feats):
        return torch.zeros(feats[0].shape[0], 1, 2)

    def next_logits(self, seqs, memory, category=None):
        out = torch.full((seqs.shape[0], self.vocab), -1e4)
        for i, s in enumerate(seqs.tolist()):
            for w, p in self.table.get(tuple(s), {6: 1.0}).items():
                out[i, w] = math.log(p)
        return out


def test_beam_search_finds_the_better_hypothesis_and_normalises_by_length():
    A, B = 6, 7
    table = {(BOS,): {A: 0.6, B: 0.4}, (BOS, A): {A: 0.25, B: 0.25, EOS: 0.25, 5: 0.25}, (BOS, B): {EOS: 1.0}}
    lm = _ScriptedLM(table)
    feats = [torch.zeros(1, 1, 1)]
    greedy = beam_search(lm, feats, beam_size=1)
    assert greedy.tokens[0, :2].tolist() == [A, A]  # greedy commits to the first word's argmax
    beam = beam_search(lm, feats, beam_size=2, alpha=1.0)
    assert beam.tokens[0].tolist() == [B, EOS]
    torch.testing.assert_close(beam.scores, torch.tensor([math.log(0.4) / 2]), atol=1e-5, rtol=0)
    # a network that never says <eos> stops at max_len: 5 words after <bos>
    never = beam_search(_ScriptedLM({}), feats, beam_size=3)
    assert never.tokens[0].tolist() == [6] * 5


# ------------------------------------------------------------------------------------------------ objective
_NET = (
    "in_features",
    "vocab_size",
    "max_len",
    "num_categories",
    "d_model",
    "num_heads",
    "ffn_dim",
    "num_layers",
    "encoder_dropout",
    "dropout",
    "fad",
    "fad_threshold",
    "fad_at_inference",
    "ffn_residual_dropout",
)


def _module(**kw):
    """A tiny RSFDModule; the network's arguments go into ``net``, the rest are the module's."""
    from zoo.models.rsfd.module import RSFDModule

    args = dict(
        in_features=[6, 5],
        vocab_size=15,
        max_len=7,
        num_categories=0,
        d_model=16,
        num_heads=2,
        ffn_dim=32,
        beam_size=2,
        example_steps=3,
        dropout=0.0,
        encoder_dropout=0.0,
    )
    args.update(kw)
    net = {k: args.pop(k) for k in _NET if k in args}
    return RSFDModule(net=net, **args)


def test_loss_is_caption_nll_plus_weighted_dss_and_dss_heads_live_outside_the_network():
    torch.manual_seed(0)
    m = _module(dss_weight=0.3)
    batch = {
        "feats": [torch.randn(3, 4, 6), torch.randn(3, 2, 5)],
        "tokens": torch.tensor([[BOS, 8, 9, 10, EOS], [BOS, 11, EOS, PAD, PAD], [BOS, 6, 7, EOS, PAD]]),
    }
    m.train()
    torch.manual_seed(1)
    out = m.losses(batch)
    inp, tgt = batch["tokens"][:, :-1], batch["tokens"][:, 1:]
    torch.manual_seed(1)
    logits, hidden = m.model(batch["feats"], inp)
    ce = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=PAD, reduction="sum") / 3
    torch.testing.assert_close(out["ce"], ce)
    torch.testing.assert_close(out["loss"], ce + 0.3 * m.dss(hidden, inp, tgt, m.model.vocab_proj))
    assert not any(n.startswith("dss") for n, _ in m.model.named_parameters())
    assert "dss" not in _module(dss=False).losses(batch)


def test_module_arguments_and_data_agreement_are_user_errors():
    with pytest.raises(UserError, match="divisible"):
        _module(d_model=15)
    with pytest.raises(UserError, match="selection_metrics"):
        _module(selection_metrics=["meteor"], meteor=False)
    with pytest.raises(UserError, match="beam_rule='first'"):
        _module(beam_rule="first")
    feats = [torch.randn(3, 2, 6), torch.randn(3, 2, 5)]
    with torch.no_grad():  # the module's decoding arguments reach the search
        for kw in ({}, {"beam_rule": "top_eos"}, {"decode_cache": False}):
            torch.manual_seed(0)
            mod = _module(**kw).eval()
            want = beam_search(mod.model, feats, None, 2, rule=kw.get("beam_rule", "release"))
            assert torch.equal(mod(feats)["tokens"], want.tokens)
    m = _module()

    class DM:
        feature_dims, vocab_size, num_categories, itow, token_counts = [6, 4], 10, 0, None, None

    m._trainer = type("T", (), {"datamodule": DM()})()
    with pytest.raises(UserError, match="in_features"):
        m.setup("fit")
    DM.feature_dims, DM.vocab_size = [6, 5], 99
    with pytest.raises(UserError, match="vocab_size"):
        m.setup("fit")
    DM.vocab_size, DM.token_counts = 12, torch.tensor([0, 0, 9, 9, 0, 0, 500, 300, 3, 2, 1, 0.0])
    m.setup("fit")
    counts = m.model.decoder.fad.token_counts
    assert counts[:12].tolist() == DM.token_counts.tolist() and counts[12:].sum() == 0  # padded with zeros


# ------------------------------------------------------------------------------------------------ features
def test_feature_extraction_writes_the_published_layout_and_resumes(tmp_path):
    import lightning.pytorch as pl

    from zoo.data_modules.captioning import VideoFramesDataModule
    from zoo.models.rsfd.features import FeatureExtractionModule, HDF5FeatureWriter
    from zoo.video_features import PARTIAL, done_keys

    app, mot = str(tmp_path / "image.hdf5"), str(tmp_path / "motion.hdf5")
    torch.manual_seed(0)
    module = FeatureExtractionModule("test_resnet", "r3d_18", image_size=32, motion_size=16, clip_len=4, overlap=2)

    class Interrupt(HDF5FeatureWriter):
        def write_on_batch_end(self, trainer, *a, **k):
            super().write_on_batch_end(trainer, *a, **k)
            if len(done_keys(app)) == 2:
                raise RuntimeError("interrupted")

    def run(writer):
        dm = VideoFramesDataModule(video_dir=None, digits=4, digits_frames=8, digits_size=32, skip_done=app)
        trainer = pl.Trainer(
            accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False, enable_model_summary=False
        )
        trainer.predict(module, datamodule=dm, return_predictions=False)
        return dm

    with pytest.raises(RuntimeError, match="interrupted"):
        run(Interrupt(app, mot))
    assert done_keys(app) == {"video0", "video1"}  # a valid file with the finished videos
    with h5py.File(app, "a") as f:
        first = f["video0"][()]
        f.create_dataset(PARTIAL + "video2", data=np.zeros(3))  # debris of a write cut short
    dm = run(HDF5FeatureWriter(app, mot))
    assert [v for v, _ in dm.items] == ["video2", "video3"]  # the rerun skipped the finished ones
    with h5py.File(app, "r") as fa, h5py.File(mot, "r") as fm:
        assert sorted(fa.keys()) == ["video0", "video1", "video2", "video3"]
        assert fa["video0"].shape == (8, 96) and fm["video0"].shape == (3, 512)  # frames; windows 0-3, 2-5, 4-7
        np.testing.assert_array_equal(fa["video0"][()], first)
    a, _ = module.model(torch.as_tensor(dm.items[0][1]))
    with h5py.File(app, "r") as fa:
        np.testing.assert_allclose(fa["video2"][()], a.numpy(), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ selection, fit
def test_release_selection_rule():
    from zoo.models.rsfd.module import release_selection

    keys = ["bleu4", "meteor", "cider"]
    kept = {"bleu4": 0.40, "meteor": 0.28, "cider": 0.50}
    assert release_selection(kept, None, keys) == (True, 3.0)
    # BLEU-4 -10 %, CIDEr +20 %: 0.9 + 1 + 1.2 = 3.1 > 3 -> the new evaluation is kept
    better, ratio = release_selection({"bleu4": 0.36, "meteor": 0.28, "cider": 0.60}, kept, keys)
    assert better and ratio == pytest.approx(3.1)
    better, ratio = release_selection({"bleu4": 0.36, "meteor": 0.28, "cider": 0.52}, kept, keys)
    assert not better and ratio == pytest.approx(2.94)
    assert not release_selection(kept, kept, keys)[0]  # a tie keeps the earlier one


def test_fit_validates_with_beam_search_and_caption_metrics(tmp_path):
    import json

    import lightning.pytorch as pl

    from zoo.data_modules.captioning import CaptionFeaturesDataModule

    rng = np.random.default_rng(0)
    videos = [
        {"video_id": f"video{k}", "category": k % 3, "split": s}
        for k, s in enumerate(["train"] * 6 + ["validate"] * 2 + ["test"] * 2)
    ]
    sentences = [
        {"video_id": v["video_id"], "caption": c}
        for k, v in enumerate(videos)
        for c in (f"a man number {k % 4} is running", "someone runs")
    ]
    (tmp_path / "videodatainfo.json").write_text(json.dumps({"videos": videos, "sentences": sentences}))
    for name, d, steps in (("image.hdf5", 5, 11), ("motion.hdf5", 3, 4)):
        with h5py.File(tmp_path / name, "w") as f:
            for v in videos:
                f[v["video_id"]] = rng.standard_normal((steps, d)).astype(np.float32)
    dm = CaptionFeaturesDataModule(
        root=str(tmp_path),
        features=["image.hdf5", "motion.hdf5"],
        count_threshold=0,
        n_steps=4,
        batch_size=4,
    )  # max_len unset: it follows the model's position table (6)
    m = _module(
        in_features=[5, 3],
        vocab_size=20,
        max_len=6,
        num_categories=3,
        tokenize=False,
        meteor=False,
        selection_metrics=["bleu4", "cider"],
        lr=1e-2,
        rare_threshold=3,
        log_baseline=True,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(m, datamodule=dm)
    logged = trainer.callback_metrics
    assert {"val/cider", "val/bleu4", "val/rouge_l", "val/kept_epoch", "train/dss"} <= set(logged)
    assert float(logged["val/kept_epoch"]) in (1.0, 2.0)
    assert m.model.decoder.fad.token_counts[BOS] == 12  # the data module's train-split table reached FAD
    out = trainer.test(m, datamodule=dm, verbose=False)[0]
    assert 0.0 <= out["test/bleu1"] <= 1.0 and out["test/cider"] >= 0.0
    # rare words: the training counts below 3 ("0" and "1" twice, "2" and "3" once); the test clips use "0" and "1"
    assert m.rare_words == {"0", "1", "2", "3"}
    assert out["test/rare_pairs"] == 2 and out["test/rare_recall"] in (0.0, 0.5, 1.0)
    assert out["test/baseline_rare_pairs"] == 2 and 0.0 <= out["test/baseline_rare_recall"] <= 1.0
    assert "val/rare_recall" in logged
    assert dm.max_len == 6 and max(len(t) for _, t in dm.sets["train"].items) <= 6


# ------------------------------------------------------------------------------------------------ beam golden
class _TableStep:
    """A decoder replaced by a fixed logit table ``logits[video, step, last token]`` (the golden's stand-in)."""

    def __init__(self, logits, k):
        self.logits, self.rows = logits, torch.arange(logits.shape[0]).repeat_interleave(k)

    def select(self, rows, videos=None):
        self.rows = self.rows[rows]

    def __call__(self, seqs):
        return self.logits[self.rows, seqs.shape[1] - 1, seqs[:, -1]]


def test_beam_search_matches_the_release_beam_golden():
    """tests/fixtures/rsfd/beam_release.safetensors: the release's models/Beam.py driven as models/Translator.py does,
    on 60 videos' fixed logit tables (beam 5, max_len 7, alpha 1). Zoo's release rule returns the release's best
    hypothesis and score wherever that is not the empty caption (<eos> alone), else the release's best non-empty one;
    a video whose only finished hypothesis was the empty one gets a non-empty caption."""
    from safetensors.torch import load_file

    from zoo.models.rsfd.model import beam_decode

    gold = load_file(str(FIXTURES / "beam_release.safetensors"))
    logits = gold["logits"]
    n, max_len = logits.shape[0], logits.shape[1] + 1
    out = beam_decode(_TableStep(logits, 5), n, 5, max_len, 1.0, "release")
    tokens = F.pad(out.tokens, (0, max_len - 1 - out.tokens.shape[1]))
    has = ~gold["official_nonempty_score"].isnan()
    assert int((gold["official_best"][:, 0] == EOS).sum()) == 3 and int((~has).sum()) == 1  # the empty cases
    assert torch.equal(tokens[has], gold["official_nonempty"][has])
    torch.testing.assert_close(out.scores[has].double(), gold["official_nonempty_score"][has], atol=1e-5, rtol=0)
    nonempty_official = has & (gold["official_best"][:, 0] != EOS)
    assert torch.equal(tokens[nonempty_official], gold["official_best"][nonempty_official])
    assert (tokens[:, 0] != EOS).all() and (tokens != PAD).any(1).all()  # never an empty caption
    old = beam_decode(_TableStep(logits, 5), n, 5, max_len, 1.0, "top_eos")
    old_tokens = F.pad(old.tokens, (0, max_len - 1 - old.tokens.shape[1]))
    differ = int((old_tokens[has] != gold["official_nonempty"][has]).any(1).sum())
    assert differ == 25  # zoo's previous rule disagrees with the release on 25 of these 59 videos


def test_beam_search_with_the_cache_equals_the_recomputed_search():
    torch.manual_seed(0)
    model = RSFD([6, 5], 30, 9, 3, d_model=16, num_heads=2, ffn_dim=32, num_layers=2).eval()
    model.decoder.fad.token_counts.copy_(torch.randint(0, 400, (30,)).float())
    model.decoder.fad_at_inference = True
    feats, cat = [torch.randn(24, 3, 6), torch.randn(24, 2, 5)], torch.randint(0, 3, (24,))
    with torch.no_grad():
        for rule in ("release", "top_eos"):
            for k in (1, 4):
                a = beam_search(model, feats, cat, k, rule=rule)
                b = beam_search(model, feats, cat, k, rule=rule, cache=False)
                assert torch.equal(a.tokens, b.tokens)
                torch.testing.assert_close(a.scores, b.scores, atol=1e-5, rtol=0)
        a, b = greedy_decode(model, feats, cat), greedy_decode(model, feats, cat, cache=False)
        assert torch.equal(a.tokens, b.tokens)
    with pytest.raises(ValueError, match="beam rule"):
        beam_search(model, feats, cat, 2, rule="first_eos")


def test_top_continuations_equal_the_whole_tables_top_k():
    """Beam candidates from each hypothesis's own top-k words = the top k of the whole (n, beam x |V|) table of
    summed scores with ended hypotheses at -1e20 (the release's Beam.advance), scores, hypotheses and words."""
    from zoo.models.rsfd.model import _DEAD, top_continuations

    g = torch.Generator().manual_seed(3)
    for n, b, v, k in ((7, 5, 40, 5), (4, 3, 9, 3), (5, 4, 3, 4), (6, 1, 11, 1), (3, 5, 1000, 5)):
        scores = torch.randn(n, b, generator=g) * 3
        logp = F.log_softmax(torch.randn(n, b, v, generator=g) * 2, dim=-1)
        ended = torch.rand(n, b, generator=g) < 0.3
        ended[:, 0] = False  # a searching video has a live hypothesis
        top, beam, word = top_continuations(scores, logp, ended, k)
        full = (scores[..., None] + logp).masked_fill(ended[..., None], _DEAD).view(n, b * v)
        ref_top, ref_idx = full.topk(k, dim=1)
        assert torch.equal(top, ref_top)
        assert torch.equal(beam, ref_idx // v) and torch.equal(word, ref_idx % v)


def test_kv_cache_appends_in_place_and_gathers_selected_rows_lazily():
    """KVCache = concatenating each position's keys/values and re-indexing the rows after every selection."""
    from zoo.models.rsfd.model import KVCache

    g = torch.Generator().manual_seed(4)
    cache, ref = KVCache(capacity=6), None
    selections = [None, torch.tensor([1, 1, 0, 3, 2, 5]), torch.tensor([0, 2, 4]), None, torch.tensor([2, 2, 0, 1])]
    for t, rows in enumerate(selections):
        if rows is not None:
            cache.select(rows)
            cache.select(torch.arange(rows.numel()).flip(0))  # two selections before an append compose
            ref = [x[rows].flip(0) for x in ref]
        n = 6 if ref is None else ref[0].shape[0]
        new = (torch.randn(n, 2, 1, 3, generator=g), torch.randn(n, 2, 1, 3, generator=g), torch.rand(n, 1) < 0.8)
        ref = list(new) if ref is None else [torch.cat([r, x], dim=2 if x.dim() == 4 else 1) for r, x in zip(ref, new)]
        got = cache.append(*new)
        assert all(torch.equal(a, r) for a, r in zip(got, ref)), t
    with pytest.raises(ValueError, match="room for 6"):
        for _ in range(2):
            cache.append(*new)
    # under autograd (keys that require grad) the cache concatenates: same values, and gradients flow
    cache, k = KVCache(capacity=3), torch.randn(4, 2, 1, 3, requires_grad=True)
    cache.append(k, k * 2, torch.ones(4, 1, dtype=torch.bool))
    cache.select(torch.tensor([3, 0]))
    got = cache.append(k[:2] + 1, k[:2], torch.ones(2, 1, dtype=torch.bool))
    torch.testing.assert_close(got[0], torch.cat([k[[3, 0]], k[:2] + 1], 2))
    got[0].sum().backward()
    assert k.grad is not None and k.grad.abs().sum() > 0


def test_beam_search_stops_when_every_video_is_done():
    """Every video finishes at step 2 (each hypothesis says <eos>): the search calls the network twice, not
    max_len - 1 times, and the greedy decoder stops likewise."""
    from zoo.models.rsfd.model import beam_decode

    A = 6

    class Counting(_ScriptedLM):
        calls = 0

        def next_logits(self, seqs, memory, category=None):
            Counting.calls += 1
            return super().next_logits(seqs, memory, category)

    table = {(BOS,): {A: 0.3, 7: 0.3, 5: 0.4}, **{(BOS, w): {EOS: 1.0} for w in (A, 7, 5)}}
    lm = Counting(table, max_len=20)
    out = beam_search(lm, [torch.zeros(3, 1, 1)], beam_size=3)
    assert Counting.calls == 2 and out.tokens.tolist() == [[5, EOS]] * 3
    Counting.calls = 0
    steps = _TableStep(torch.zeros(2, 9, 8, 8).index_fill_(3, torch.tensor([EOS]), 5.0), 1)
    assert beam_decode(steps, 2, 1, 10).tokens.shape[1] == 2  # beam 1: <eos> is barred only as the first word


def test_decoder_applies_the_release_dropouts_five_per_pass_and_the_old_four_on_request():
    """The release's BertOutput applies its dropout again after the FFN residual (models/bert.py): embedding, self-,
    cross-attention, FFN, FFN residual = 5 dropout calls per one-layer decoder pass; ffn_residual_dropout=False: 4."""
    for flag, calls in ((True, 5), (False, 4)):
        dec = CaptionDecoder(
            20, max_len=6, d_model=8, num_heads=2, ffn_dim=16, dropout=0.5, ffn_residual_dropout=flag
        ).train()
        seen = []
        for m in dec.modules():
            if isinstance(m, torch.nn.Dropout):
                m.register_forward_hook(lambda *a: seen.append(1))
        dec(torch.tensor([[BOS, 7, 8, EOS]]), torch.randn(1, 3, 8))
        assert len(seen) == calls
    torch.manual_seed(0)
    layer = DecoderLayer(8, 2, 16, dropout=0.5).train()
    x, mem, keep = torch.randn(1, 3, 8), torch.randn(1, 2, 8), torch.ones(1, 3, 1)
    kept = layer(x, mem, keep) != 0
    assert 0 < kept.float().mean() < 0.8  # the whole residual sum is dropped element-wise, not only the FFN branch


# ------------------------------------------------------------------------------------------------ official parity
def _official_net():
    from safetensors.torch import load_file

    state = load_file(str(FIXTURES / "official_net_weights.safetensors"))
    state.update(load_file(str(FIXTURES / "official_net_word_embeddings.safetensors")))
    return state, load_file(str(FIXTURES / "official_net_io.safetensors"))


def _zoo_from_official(state, io, **kw):
    from zoo.models.rsfd.convert import convert_state_dict

    model = RSFD([6, 5], 9468, 20, 3, d_model=4, num_heads=2, ffn_dim=8, fad_at_inference=True, **kw).eval()
    model.load_state_dict(
        convert_state_dict({"state_dict": state, "settings": {"modality": "mi"}}, token_counts=io["token_counts"]),
        strict=True,
    )
    return model


def test_network_matches_the_official_code_on_its_converted_weights():
    """tests/fixtures/rsfd/official_net_*.safetensors: the release's Seq2Seq (Encoder_HighWay, BatchNorm joint
    representation, BertDecoder with FAD over the release's hard-coded MSVD frequency table, tgt_word_prj), eval mode,
    d 4, on 3 padded captions with categories. Compared: encoder memory, decoder hidden states, log-probabilities of
    the targets, the best word and its log-probability at every position (float32, atol 1e-5)."""
    state, io = _official_net()
    model = _zoo_from_official(state, io)
    assert model.decoder.fad.partition_sizes() == (9169, 293)  # |L|, |H| of the release's MSVD table
    tokens, cat = io["tokens"], io["category"]
    with torch.no_grad():
        mem = model.encode([io["feat_m"], io["feat_i"]])
        logits, hidden = model.logits(tokens[:, :-1], mem, cat)
    keep = (tokens[:, :-1] != PAD)[..., None]
    torch.testing.assert_close(mem, io["enc_output"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(hidden * keep, io["hidden"], atol=1e-5, rtol=1e-5)
    logp = F.log_softmax(logits, -1)
    torch.testing.assert_close(logp.gather(2, tokens[:, 1:, None])[..., 0], io["logprob_targets"], atol=1e-5, rtol=0)
    torch.testing.assert_close(logp.max(-1).values, io["logprob_max"], atol=1e-5, rtol=0)
    assert torch.equal(logp.argmax(-1), io["logprob_argmax"])
    with torch.no_grad():  # FAD is part of the match: without it (zoo's inference default) the hidden states differ
        model.decoder.fad_at_inference = False
        plain = model.logits(tokens[:, :-1], mem, cat)[1]
    assert not torch.allclose(plain * keep, io["hidden"], atol=1e-3)


def test_converter_reads_the_release_save_format_strictly(tmp_path):
    import argparse

    from zoo.models.rsfd.convert import convert_state_dict, init_args, read_checkpoint

    state, io = _official_net()
    path = tmp_path / "model_0.pth.tar"
    torch.save(
        {
            "epoch": 12,
            "state_dict": state,
            "validate_result": {"CIDEr": np.float64(0.51), "loss": np.float32(2)},
            "settings": argparse.Namespace(modality="mi", num_attention_heads=2),
        },
        path,
    )
    converted = read_checkpoint(path, token_counts=io["token_counts"])
    model = _zoo_from_official(state, io)
    assert set(converted) == set(model.state_dict())
    for k, v in model.state_dict().items():
        assert torch.equal(converted[k].to(v.dtype), v), k
    args = init_args({"state_dict": state, "settings": {"modality": "mi", "num_attention_heads": 2}})
    net = {
        "in_features": [6, 5],
        "vocab_size": 9468,
        "max_len": 20,
        "num_categories": 3,
        "d_model": 4,
        "ffn_dim": 8,
        "num_layers": 1,
        "num_heads": 2,
    }
    assert args == {"net": net}
    from zoo.models.rsfd.module import RSFDModule

    built = RSFDModule(**args, dss=False)  # the module builds the checkpoint's network from them
    built.model.load_state_dict(converted, strict=True)
    swapped = convert_state_dict({"state_dict": state}, modalities="im")  # image first in zoo's feature list
    assert torch.equal(swapped["encoder.branches.0.0.weight"], state["encoder.Encoder_I.0.weight"])
    assert torch.equal(swapped["encoder.norms.0.running_mean"], state["joint_representation_learner.bn1.running_mean"])
    with pytest.raises(ValueError, match="no counterpart"):
        convert_state_dict({"state_dict": {**state, "decoder.layer.0.output.LayerNorm.weight": torch.ones(4)}})
    with pytest.raises(ValueError, match="modalities"):
        convert_state_dict({"state_dict": state}, modalities="ia")
    dss = convert_state_dict({"state_dict": {**state, "w1.weight": torch.ones(4, 4)}})
    assert "w1.weight" not in dss and set(dss) == set(converted)


def _write_mp4(path, frames: int = 6, size: int = 32, seed: int = 0):
    import av

    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=8)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())


def test_feature_extraction_skips_an_undecodable_video_and_the_rerun_does_not_die(tmp_path, caplog):
    """Issue 23: one corrupt file among the videos is skipped with a counted warning, the others are written, and the
    resumable rerun skips it again instead of stopping."""
    import lightning.pytorch as pl

    from zoo.data_modules.captioning import VideoFramesDataModule
    from zoo.models.rsfd.features import FeatureExtractionModule, HDF5FeatureWriter
    from zoo.video_features import done_keys

    videos = tmp_path / "videos"
    videos.mkdir()
    _write_mp4(videos / "video0.mp4")
    (videos / "video1.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    _write_mp4(videos / "video2.mp4", seed=1)
    app, mot = str(tmp_path / "image.hdf5"), str(tmp_path / "motion.hdf5")
    module = FeatureExtractionModule("test_resnet", "r3d_18", image_size=32, motion_size=16, clip_len=4, overlap=2)

    def run():
        dm = VideoFramesDataModule(video_dir=str(videos), skip_done=app, max_frames=6)
        trainer = pl.Trainer(
            accelerator="cpu",
            logger=False,
            callbacks=[HDF5FeatureWriter(app, mot)],
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        with pytest.warns(RuntimeWarning, match=r"skipping video video1 .*1 skipped so far"):
            trainer.predict(module, datamodule=dm, return_predictions=False)
        return dm

    run()
    assert done_keys(app) == done_keys(mot) == {"video0", "video2"}
    assert module.skipped == ["video1"]
    dm = run()  # the rerun: only the bad file is left, it is skipped again
    assert [v for v, _ in dm.items] == ["video1"] and done_keys(app) == {"video0", "video2"}


# ------------------------------------------------------------------------------------------------ sizes, data follows
def test_sizes_unknown_size_and_net_override_are_one_line_errors():
    from zoo.models.rsfd.module import RSFDModule
    from zoo.models.rsfd.sizes import SIZES

    with torch.device("meta"):
        msvd = RSFDModule(size="msvd")
    assert msvd.arch["max_len"] == 20 and msvd.model.vocab_proj.out_features == SIZES["msvd"]["vocab_size"]
    assert msvd.data_config() == {"max_len": 20} and msvd.hparams.size == "msvd"
    with pytest.raises(UserError, match=r"RSFDModule: unknown size 'youcook'; choose one of msrvtt, msvd") as e:
        RSFDModule(size="youcook")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match=r"model.init_args.net has 'dss_window', which the network does not take") as e:
        RSFDModule(net={"dss_window": 3})  # a module argument, not the network's
    assert "\n" not in str(e.value)


def test_caption_data_follows_the_model_max_len_and_a_conflict_is_refused(tmp_path):
    from types import SimpleNamespace

    from zoo.data_modules.captioning import CaptionFeaturesDataModule

    module = _module(max_len=6)
    dm = CaptionFeaturesDataModule(root=str(tmp_path / "missing"), max_len=9)
    dm.trainer = SimpleNamespace(lightning_module=module)
    with pytest.raises(UserError, match="data.init_args.max_len is 9 but the model was built for 6") as e:
        dm.setup("fit")
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="max_len is not set and no attached model fixes it"):
        CaptionFeaturesDataModule(root=str(tmp_path / "missing")).setup("fit")


def test_bench_hook_takes_the_demo_features_and_categories():
    from zoo.models.rsfd.module import RSFDModule

    demo = {"size": "msrvtt", "net": {"in_features": [96, 512], "num_categories": 0, "d_model": 256}}
    over, note = RSFDModule.bench_init_args({"size": "msrvtt"}, demo)
    assert over == {"net": {"in_features": [96, 512], "num_categories": 0}} and "from the demo" in note
    assert RSFDModule.bench_init_args({"size": "msrvtt", "net": over["net"]}, demo) == ({}, "")


def test_frame_classifier_trains_and_the_feature_step_reads_its_cnn(tmp_path):
    """The demo's step 1 (FrameClassificationModule on DigitFramesDataModule, zoo fit) and step 2's image_checkpoint:
    the extractor's 2D CNN holds the trained weights; the seed fixes the initial / random weights whatever the global
    generator; a missing file or another image_model are one-line errors."""
    import lightning.pytorch as pl

    from zoo.data_modules.captioning import DigitFramesDataModule
    from zoo.errors import UserError
    from zoo.models.rsfd.features import FeatureExtractionModule, FrameClassificationModule

    torch.manual_seed(123)
    m = FrameClassificationModule(image_size=32, seed=0)
    torch.manual_seed(456)
    again = FrameClassificationModule(image_size=32, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), again.state_dict().values()))
    before = {k: v.clone() for k, v in m.image.state_dict().items()}
    dm = DigitFramesDataModule(num_images=40, size=32, batch_size=8, steps_per_epoch=3)
    ckpt = tmp_path / "cnn.ckpt"
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(m, datamodule=dm)
    assert trainer.global_step == 3 and {"train/loss", "train/acc"} <= set(trainer.callback_metrics)
    trainer.save_checkpoint(ckpt)
    trained = m.image.state_dict()
    assert any(not torch.equal(before[k], trained[k]) for k in trained)
    ext = FeatureExtractionModule("test_resnet", "r3d_18", image_size=32, motion_size=16, clip_len=4, overlap=2,
                                  image_checkpoint=str(ckpt), seed=0)  # fmt: skip
    assert all(torch.equal(v, trained[k]) for k, v in ext.model.image.state_dict().items())
    torch.manual_seed(7)
    other = FeatureExtractionModule("test_resnet", "r3d_18", image_size=32, motion_size=16, clip_len=4, overlap=2,
                                    seed=0)  # fmt: skip
    assert all(torch.equal(a, b) for a, b in zip(ext.model.motion.parameters(), other.model.motion.parameters()))
    with pytest.raises(UserError, match="rsfd-cnn.yaml") as e:
        FeatureExtractionModule("test_resnet", image_checkpoint=str(tmp_path / "none.ckpt"))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="image_model='resnet18'"):
        FeatureExtractionModule("resnet18", image_checkpoint=str(ckpt))


def test_rare_word_recall_counts_clip_word_pairs_of_the_references():
    from zoo.models.rsfd.module import rare_word_recall

    refs = {
        0: ["a red three moves left", "the Red digit three"],  # rare: red
        1: ["a pink one is moving up", "an orange one"],  # rare: pink, orange (any reference counts)
        2: ["a white two"],  # no rare word: no pair
    }
    cands = {0: ["a red three"], 1: ["a orange one moves up"], 2: ["a red two"]}
    recall, pairs = rare_word_recall(refs, cands, {"red", "pink", "orange", "yellow"})
    assert pairs == 3 and recall == pytest.approx(2 / 3)  # red (clip 0) and orange (clip 1) of 3 pairs
    recall, pairs = rare_word_recall({0: ["a white two"]}, {0: ["a white two"]}, {"red"})
    assert pairs == 0 and math.isnan(recall)
    with pytest.raises(UserError, match="rare_threshold"):
        _module(rare_threshold=0)
