"""Checkpoints trained with the official RSFD code (``lzp870/RSFD``, method ``ARB``) -> zoo's RSFD state_dict.

The release saves ``torch.save({'epoch', 'state_dict', 'validate_result', 'settings'}, path)`` (``misc/run.py``);
the network is ``models.get_model`` -> ``Seq2Seq`` (``models/seq2seq.py``), key names from its module definitions
(``models/Encoder.py``, ``models/joint_representation.py``, ``models/Decoder.py``, ``models/bert.py``):

=========================================================  ====================================================
official (``Seq2Seq``)                                     zoo (``zoo.models.rsfd.model.RSFD``)
=========================================================  ====================================================
``encoder.Encoder_<X>.0.*`` (Linear)                       ``encoder.branches.<j>.0.*``
``encoder.Encoder_<X>.1.w1.*`` / ``.1.w2.*`` (HighWay)     ``encoder.branches.<j>.1.w1.*`` / ``.1.w2.*``
``joint_representation_learner.bn<i>.*``                   ``encoder.norms.<j>.*``
``decoder.embedding.word_embeddings.weight``               ``decoder.word.weight``
``decoder.embedding.position_embeddings.weight``           ``decoder.position.weight``
``decoder.embedding.category_embeddings.weight``           ``decoder.category.weight`` (MSR-VTT)
``decoder.embedding.LayerNorm.*``                          ``decoder.norm.*``
``decoder.layer.<n>.attention.self.{query,key,value}.*``   ``decoder.layers.<n>.self_attn.{query,key,value}.*``
``decoder.layer.<n>.attention.output.dense.*``             ``decoder.layers.<n>.self_attn.dense.*``
``decoder.layer.<n>.attend_to_enc_output.self.*``          ``decoder.layers.<n>.cross_attn.*``
``decoder.layer.<n>.attend_to_enc_output.output.dense.*``  ``decoder.layers.<n>.cross_attn.dense.*``
``decoder.layer.<n>.intermediate.dense.*``                 ``decoder.layers.<n>.ffn_in.*``
``decoder.layer.<n>.output.dense.*``                       ``decoder.layers.<n>.ffn_out.*``
``tgt_word_prj.weight``                                    ``vocab_proj.weight``
(not in the checkpoint)                                    ``decoder.fad.token_counts``
=========================================================  ====================================================

``<X>`` is a modality letter of the release's ``--modality`` (``mi``: motion, then image); ``bn<i>`` follows that
order. Zoo's branch ``<j>`` follows ``modalities`` (default: the release's order, read from ``settings['modality']``;
``mi``, the release's default, for a bare state_dict), so the features are passed in that order. FAD's frequency
table is a Python list in the release's ``models/bert.py``, not a tensor of the checkpoint: ``token_counts`` fills
it (the data module fills it from the corpus at ``fit`` / ``test`` anyway; zeros otherwise, i.e. no frequent words).
DSS heads named as in the release's commented-out code (``w1``..``w6``, ``tgt_word_prj_other_loss1``..``6``) are
training-only and dropped; any other key is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from zoo import convert as _convert

WHERE = "checkpoints written by the official RSFD code (lzp870/RSFD misc/run.py); the authors publish none"

_DECODER = (
    (r"attention\.self\.(query|key|value)\.", r"self_attn.\1."),
    (r"attention\.output\.dense\.", "self_attn.dense."),
    (r"attend_to_enc_output\.self\.(query|key|value)\.", r"cross_attn.\1."),
    (r"attend_to_enc_output\.output\.dense\.", "cross_attn.dense."),
    (r"intermediate\.dense\.", "ffn_in."),
    (r"output\.dense\.", "ffn_out."),
)
_EMBEDDING = {
    "word_embeddings.weight": "word.weight",
    "position_embeddings.weight": "position.weight",
    "category_embeddings.weight": "category.weight",
    "LayerNorm.weight": "norm.weight",
    "LayerNorm.bias": "norm.bias",
}
_DSS_HEADS = re.compile(r"^(w[1-6]\.weight|tgt_word_prj_other_loss[1-6]\.weight)$")


def _settings_modality(official: dict) -> str | None:
    settings = official.get("settings")
    value = settings.get("modality") if isinstance(settings, dict) else getattr(settings, "modality", None)
    return value.lower() if isinstance(value, str) else None


def _unwrap(official: dict) -> dict:
    state = official.get("state_dict", official)
    if not isinstance(state, dict) or not any(
        str(k).removeprefix("module.").startswith("encoder.Encoder_") for k in state
    ):
        raise ValueError(
            "not an RSFD checkpoint of the official code: expected encoder.Encoder_<X>.* keys (a "
            f"state_dict or under 'state_dict'); first keys: {sorted(map(str, state))[:5]}"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


def convert_key(key: str, branch: dict[str, int], release_order: str) -> str | None:
    """One official key -> its zoo name (None for the dropped DSS heads); ``branch`` maps a modality letter to zoo's
    branch index, ``release_order`` is the release's ``--modality``."""
    if _DSS_HEADS.match(key):
        return None
    if m := re.fullmatch(r"encoder\.Encoder_([A-Z])\.(0\.(weight|bias)|1\.w[12]\.(weight|bias))", key):
        return f"encoder.branches.{branch[m[1].lower()]}.{m[2]}"
    if m := re.fullmatch(r"joint_representation_learner\.bn(\d+)\.(.+)", key):
        return f"encoder.norms.{branch[release_order[int(m[1])]]}.{m[2]}"
    if key.startswith("decoder.embedding.") and key[len("decoder.embedding.") :] in _EMBEDDING:
        return "decoder." + _EMBEDDING[key[len("decoder.embedding.") :]]
    if m := re.fullmatch(r"decoder\.layer\.(\d+)\.(.+)", key):
        for pattern, repl in _DECODER:
            rest, n = re.subn("^" + pattern, repl, m[2])
            if n and re.fullmatch(r"[a-z_]+\.(query\.|key\.|value\.|dense\.)?(weight|bias)", rest):
                return f"decoder.layers.{m[1]}.{rest}"
    if key == "tgt_word_prj.weight":
        return "vocab_proj.weight"
    raise ValueError(
        f"official key {key!r} has no counterpart in zoo's RSFD (the release's ARB network with "
        "with_layernorm=False, no pos_attention, one vocabulary projection): not convertible"
    )


def convert_state_dict(official: dict, modalities: str | None = None, token_counts=None) -> dict:
    """An official checkpoint (the saved dict, or its bare ``state_dict``) -> ``module.model`` keys, strict: every
    official key is mapped (or is a dropped DSS head) and every zoo key is produced. ``modalities``: the release's
    modality letters in zoo's branch order (default the release's own order); ``token_counts`` (|V|,): FAD's
    frequency table (zeros when not given)."""
    import torch

    state = _unwrap(official)
    letters = {m[1].lower() for k in state if (m := re.match(r"encoder\.Encoder_([A-Z])\.", k))}
    release_order = _settings_modality(official)
    if release_order is None:  # a bare state_dict: the release's default --modality mi, if those are its encoders
        if letters != {"m", "i"}:
            raise ValueError(
                f"the checkpoint encodes modalities {sorted(letters)} and names no settings['modality']: "
                "pass the saved checkpoint (with its settings), not its bare state_dict"
            )
        release_order = "mi"
    order = (modalities or release_order).lower()
    if sorted(order) != sorted(release_order):
        raise ValueError(
            f"modalities={modalities!r}: the checkpoint's modalities are {release_order!r} (letters of "
            "the release's --modality, in the order zoo's feature list will follow)"
        )
    branch = {c: j for j, c in enumerate(order)}
    out = {}
    for key, value in state.items():
        name = convert_key(key, branch, release_order)
        if name is not None:
            out[name] = value
    vocab = out["vocab_proj.weight"].shape[0]
    counts = torch.zeros(vocab) if token_counts is None else torch.as_tensor(token_counts, dtype=torch.float32)
    if counts.shape != (vocab,):
        raise ValueError(f"token_counts has shape {tuple(counts.shape)}, the checkpoint's vocabulary is {vocab}")
    out["decoder.fad.token_counts"] = counts
    return out


def init_args(official: dict, modalities: str | None = None) -> dict:
    """``RSFDModule`` init args that the checkpoint's tensors fix, as ``{"net": {...}}`` overrides of the network's
    arguments (feature sizes, vocabulary, position table, categories, width, FFN, layers; the head count from the
    release's ``settings`` when saved, else 8): every size-bound argument is given, so any ``size`` builds it."""
    state = convert_state_dict(official, modalities)
    n_in = len({k.split(".")[2] for k in state if k.startswith("encoder.branches.")})
    settings = official.get("settings")
    get = settings.get if isinstance(settings, dict) else (lambda k, d=None: getattr(settings, k, d))
    net = {
        "in_features": [int(state[f"encoder.branches.{j}.0.weight"].shape[1]) for j in range(n_in)],
        "vocab_size": int(state["vocab_proj.weight"].shape[0]),
        "max_len": int(state["decoder.position.weight"].shape[0]),
        "num_categories": int(state["decoder.category.weight"].shape[0]) if "decoder.category.weight" in state else 0,
        "d_model": int(state["vocab_proj.weight"].shape[1]),
        "ffn_dim": int(state["decoder.layers.0.ffn_in.weight"].shape[0]),
        "num_layers": len({k.split(".")[2] for k in state if k.startswith("decoder.layers.")}),
        "num_heads": int(get("num_attention_heads", 8) or 8),
    }
    return {"net": net}


def read_checkpoint(path: str | Path, modalities: str | None = None, token_counts=None) -> dict:
    """An official checkpoint file -> zoo keys, read through :func:`zoo.convert.read_release` (tensors, plain
    containers, ``argparse.Namespace`` and numpy values only; nothing in the file runs)."""
    return convert_state_dict(_convert.read_release(path, WHERE), modalities, token_counts)
