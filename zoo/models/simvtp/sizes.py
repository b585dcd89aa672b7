"""SimVTP's sizes, stated once (plain data, no torch: the registry and configs name a size, the modules build from it).

Ma, Yang, Shan, Li, arXiv 2212.03490 §4.1 ("ViT-B ... 16 frames ... 224 x 224"); official code (mayuelala/SimVTP,
carried by wufeim/SimVTP @4b54321): ``modeling_pretrain.py`` ``pretrain_simvtp_base_patch16_224`` (patch 16, encoder
768 / 12 blocks / 12 heads, decoder 384 / 4 blocks / 6 heads, as VideoMAE's ViT-B), ``scripts/*.sh`` (``--num_frames
16``, ``--input_size 224``, tubelet 2) and the bert-base-uncased text embeddings (vocabulary 30,522, 512 positions, 2
token types). The only published size is ``base``.

``SIZES`` holds :class:`~zoo.models.simvtp.model.SimVTPPretrainModel`'s arguments; the fine-tuning dual encoder
(:class:`~zoo.models.simvtp.model.SimVTPDualEncoder`, two copies of the pre-trained encoder) takes the same ones
without the pixel decoder's (``RETRIEVAL_SIZES``).
"""

SIZES = {
    "base": dict(
        img_size=224,
        patch_size=16,
        num_frames=16,
        tubelet_size=2,
        embed_dim=768,
        depth=12,
        num_heads=12,
        vocab_size=30522,
        max_text_len=512,
        type_vocab_size=2,
        decoder_dim=384,
        decoder_depth=4,
        decoder_heads=6,
    ),
}
DEFAULT = "base"

DECODER_ARGS = ("decoder_dim", "decoder_depth", "decoder_heads")  # the pre-training pixel decoder only
RETRIEVAL_SIZES = {name: {k: v for k, v in s.items() if k not in DECODER_ARGS} for name, s in SIZES.items()}
