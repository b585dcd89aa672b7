"""A-CLIP's sizes, stated once (plain data: the registry reads them without importing torch; model.py and module.py
build from them).

``SIZES[name]`` are the keyword arguments of :class:`zoo.models.aclip.model.ACLIP` for the models of the official
``microsoft/A-CLIP:models.py`` (``ACLIP_VITB16``, ``ACLIP_VITL16``, ``ACLIP_VITS16``; Yang et al., "Attentive Mask
CLIP", ICCV 2023, arXiv 2212.08653, Table 1 for B/16 and L/16): every size shares the CLIP text transformer (width 512,
12 layers, 8 heads, context 77, CLIP BPE vocabulary 49,408), a 512-d joint space and SLIP's SimCLR / BYOL heads
(4096 hidden, 256 out) on 224² images in 16² patches; only the image tower changes. ViT-S/16 has **12 heads** in the
code (timm's has 6).
"""

_SHARED = dict(
    img_size=224,
    patch_size=16,
    embed_dim=512,
    context_length=77,
    vocab_size=49408,
    text_width=512,
    text_heads=8,
    text_layers=12,
    ssl_mlp_dim=4096,
    ssl_emb_dim=256,
    byol_hidden_dim=4096,
    byol_dim=256,
)
SIZES = {
    "b16": dict(_SHARED, vision_width=768, vision_depth=12, vision_heads=12),
    "l16": dict(_SHARED, vision_width=1024, vision_depth=24, vision_heads=16),
    "s16": dict(_SHARED, vision_width=384, vision_depth=12, vision_heads=12),
}
DEFAULT = "b16"
