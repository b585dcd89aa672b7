"""RSFD's sizes, stated once (plain data, no torch: the registry and configs name a size, the module builds from it).

Zhong et al., AAAI 2023 (arXiv 2211.15076) §4.1; the release's ``opts.py`` (``--dim_hidden 512``,
``--num_attention_heads 8``, ``--intermediate_size 2048``, ``--num_hidden_layers_decoder 1``, two 2048-d feature
modalities: ResNet-101 appearance, 3D ResNeXt-101 motion) and its corpora (``misc/utils_corpora.py`` with
``--max_len`` 30 / 20): both datasets use the same network; the vocabulary (6 specials included), the maximum
caption length (= the position table) and MSR-VTT's 20-category embedding differ. One size per dataset of the
paper's table; the keys are the arguments of :class:`zoo.models.rsfd.model.RSFD`.
"""

_COMMON = dict(in_features=[2048, 2048], d_model=512, num_heads=8, ffn_dim=2048, num_layers=1)
SIZES = {
    "msrvtt": dict(_COMMON, vocab_size=10547, max_len=30, num_categories=20),
    "msvd": dict(_COMMON, vocab_size=9468, max_len=20, num_categories=0),
}
DEFAULT = "msrvtt"
