"""SimVTP networks: the unified video-text encoder with its pre-training heads, and the fine-tuning dual encoder.

Ma, Yang, Shan, Li, "SimVTP: Simple Video Text Pre-training with Masked Autoencoders", arXiv 2212.03490. Layout and
facts from the official code release (commit "mayuema release code", carried by github.com/wufeim/SimVTP @4b54321;
files ``modeling_pretrain.py``, ``modeling_finetune.py``), which is the VideoMAE code base + BERT text embeddings.
Parameter names follow that release, so the official and VideoMAE checkpoints load after a light renaming
(``convert.py``). The published size (ViT-B, 16 x 224²) is stated in ``sizes.py``.

:class:`SimVTPPretrainModel` (``PretrainVisionTransformer``, ``pretrain_simvtp_base_patch16_224``)
    ``encoder``: a ViT-B over tubelet tokens (Conv3d 2x16x16 -> 8x14x14 = 1568 tokens of 768 at 16x224², fixed
    sinusoid positions), 12 pre-LN blocks (q/v biases, no k bias; LayerNorm eps 1e-6), final LayerNorm. The same
    blocks read ``[visible video tokens ; text tokens]`` (video first) with an additive padding bias (0 for video,
    -10000 for text padding). ``text_embeddings``: the BERT-base embeddings module (transformers ``BertEmbeddings``:
    word + learned position + token type 0 + LayerNorm + dropout). ``decoder``: Linear 768->384 (no bias), sinusoid
    positions, a learned mask token at the masked positions, 4 blocks (384, 6 heads), LayerNorm, Linear 384->1536 on
    the masked tokens (normalised tubelet pixels). ``text_cls``: Linear 768->30522 on the text positions (the released
    "text decoder"; ``text_decoder_depth`` > 0 puts that many transformer blocks before it, the paper's figure).
    ``vtm_head``: Linear 768->2 on the mean over the tokens of a joint pass.

:class:`SimVTPDualEncoder` (``DualVideoTextEncoder``)
    Two copies of the pre-trained encoder: ``video_encoder`` (tubelets, no masking) and ``text_encoder`` (BERT
    embeddings); each ends with ``fc_norm`` = LayerNorm(mean over tokens) -> 768-d, no projection. The released file
    carries an unused text-embedding module in the video copy and an unused tubelet embedding in the text copy; they
    are left out here (``convert.py`` drops them).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from zoo.nn.video import TubeletEmbed, sinusoid_table

PAD_BIAS = -10000.0  # the released additive mask value for text padding


def vit_blocks(
    dim: int,
    depth: int,
    num_heads: int,
    mlp_ratio: float = 4.0,
    drop_path_rate: float = 0.0,
    init_values: float | None = None,
) -> nn.ModuleList:
    """VideoMAE/BEiT blocks (timm ``EvaBlock``: ``norm1``, ``attn.qkv`` with ``q_bias``/``v_bias`` and a zero k bias,
    ``attn.proj``, ``norm2``, ``mlp.fc1``/``fc2``; LayerNorm eps 1e-6), drop path rising linearly to the rate; it
    takes an additive ``attn_mask`` (B, 1, 1, N)."""
    from timm.models.eva import EvaBlock

    norm = partial(nn.LayerNorm, eps=1e-6)
    rates = [drop_path_rate * i / max(1, depth - 1) for i in range(depth)]
    return nn.ModuleList(
        [
            EvaBlock(
                dim,
                num_heads,
                qkv_bias=True,
                mlp_ratio=mlp_ratio,
                drop_path=r,
                norm_layer=norm,
                init_values=init_values,
            )
            for r in rates
        ]
    )


def bert_embeddings(
    dim: int, vocab_size: int, max_text_len: int, type_vocab_size: int, dropout: float = 0.1, pad_token_id: int = 0
) -> nn.Module:
    """transformers' ``BertEmbeddings`` at width ``dim`` (BERT-base: 768, vocab 30522, 512 positions, 2 types)."""
    from transformers import BertConfig
    from transformers.models.bert.modeling_bert import BertEmbeddings

    cfg = BertConfig(
        vocab_size=vocab_size,
        hidden_size=dim,
        max_position_embeddings=max_text_len,
        type_vocab_size=type_vocab_size,
        hidden_dropout_prob=dropout,
        pad_token_id=pad_token_id,
        layer_norm_eps=1e-12,
    )
    emb = BertEmbeddings(cfg)
    for e in (emb.word_embeddings, emb.position_embeddings, emb.token_type_embeddings):
        nn.init.normal_(e.weight, std=0.02)  # BERT's initializer_range
    with torch.no_grad():
        emb.word_embeddings.weight[pad_token_id].zero_()
    return emb


def padding_bias(attention_mask: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, L) 1/0 text mask -> (B, L) additive bias: 0 for tokens, -10000 for padding (as released)."""
    return (1.0 - attention_mask.to(dtype)) * PAD_BIAS


def mean_tokens(x: Tensor, keep: Tensor | None = None) -> Tensor:
    """(B, N, D) -> (B, D): the plain mean over all tokens (``keep`` None: as released, padding included), or the
    mean over the tokens where ``keep`` (B, N) is 1."""
    if keep is None:
        return x.mean(1)
    w = keep.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp_min(1.0)


def _run_blocks(blocks: nn.ModuleList, x: Tensor, bias: Tensor | None) -> Tensor:
    mask = None if bias is None else bias[:, None, None, :].to(x.dtype)
    for blk in blocks:
        x = blk(x, attn_mask=mask)
    return x


def _init_linear(module: nn.Module, xavier: bool = False) -> None:
    for m in module.modules():
        if isinstance(m, nn.Linear):
            (nn.init.xavier_uniform_ if xavier else partial(nn.init.trunc_normal_, std=0.02))(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class VideoEncoder(nn.Module):
    """The VideoMAE encoder (``patch_embed``, fixed ``pos_embed``, ``blocks``, ``norm``): tokens in, tokens out.

    ``embed(video, mask)``: (B, C, T, H, W) -> (B, N_visible, D) visible tubelet tokens with positions;
    ``forward(x, bias)``: blocks + final norm over any token sequence (video, text or both) with an additive
    per-key bias (B, N) or None. ``pooled=True`` is the fine-tuning layout: no final norm, ``fc_norm`` after the
    mean (``pool``)."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        pooled: bool = False,
        video: bool = True,
    ):
        super().__init__()
        self.embed_dim = embed_dim
        if video:
            self.patch_embed = TubeletEmbed(img_size, patch_size, num_frames, tubelet_size, in_chans, embed_dim)
            self.register_buffer("pos_embed", sinusoid_table(self.patch_embed.num_patches, embed_dim), persistent=False)
        self.blocks = vit_blocks(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate)
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm = nn.Identity() if pooled else norm(embed_dim)
        self.fc_norm = norm(embed_dim) if pooled else None
        _init_linear(self, xavier=not pooled)  # VideoMAE: xavier in pre-training, trunc-normal .02 in fine-tuning

    def embed(self, video: Tensor, mask: Tensor | None = None) -> Tensor:
        x = self.patch_embed(video)
        x = x + self.pos_embed.to(x.device, x.dtype)
        if mask is not None:
            B, _, D = x.shape
            x = x[~mask].reshape(B, -1, D)
        return x

    def forward(self, x: Tensor, bias: Tensor | None = None) -> Tensor:
        return self.norm(_run_blocks(self.blocks, x, bias))

    def pool(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        return self.fc_norm(mean_tokens(x, keep))


class VideoDecoder(nn.Module):
    """VideoMAE's pre-training decoder: ``blocks``, ``norm``, ``head`` (the last ``return_token_num`` tokens)."""

    def __init__(self, dim: int, depth: int, num_heads: int, out_dim: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.blocks = vit_blocks(dim, depth, num_heads, mlp_ratio)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, out_dim)
        _init_linear(self, xavier=True)

    def forward(self, x: Tensor, return_token_num: int) -> Tensor:
        x = _run_blocks(self.blocks, x, None)
        return self.head(self.norm(x[:, -return_token_num:]))


class SimVTPPretrainModel(nn.Module):
    """The SimVTP pre-training network (see the module docstring). Shapes: video (B, 3, T, H, W) normalised;
    input_ids / attention_mask (B, L); mask (B, N) bool, True = masked tubelet (every sample the same count)."""

    fsdp_blocks = ("EvaBlock",)  # zoo_fsdp: one FSDP unit per transformer block (encoder and decoder)

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        decoder_dim: int = 384,
        decoder_depth: int = 4,
        decoder_heads: int = 6,
        vocab_size: int = 30522,
        max_text_len: int = 512,
        type_vocab_size: int = 2,
        text_dropout: float = 0.1,
        text_decoder_depth: int = 0,
        drop_path_rate: float = 0.0,
        pad_token_id: int = 0,
    ):
        super().__init__()
        self.encoder = VideoEncoder(
            img_size,
            patch_size,
            num_frames,
            tubelet_size,
            in_chans,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio,
            drop_path_rate,
        )
        self.tubelet_size, self.patch_size = tubelet_size, patch_size
        self.grid = self.encoder.patch_embed.grid
        n = self.encoder.patch_embed.num_patches
        self.encoder_to_decoder = nn.Linear(embed_dim, decoder_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos_embed", sinusoid_table(n, decoder_dim), persistent=False)
        self.decoder = VideoDecoder(
            decoder_dim, decoder_depth, decoder_heads, in_chans * tubelet_size * patch_size**2, mlp_ratio
        )
        self.text_embeddings = bert_embeddings(
            embed_dim, vocab_size, max_text_len, type_vocab_size, text_dropout, pad_token_id
        )
        self.text_decoder = (
            vit_blocks(embed_dim, text_decoder_depth, num_heads, mlp_ratio) if text_decoder_depth else None
        )
        self.text_cls = nn.Linear(embed_dim, vocab_size)
        self.vtm_head = nn.Linear(embed_dim, 2)
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.xavier_uniform_(self.encoder_to_decoder.weight)
        _init_linear(self.text_cls, xavier=True)
        _init_linear(self.vtm_head, xavier=True)

    # ------------------------------------------------------------------------------------------- encoder passes
    def encode_joint(self, video: Tensor, mask: Tensor | None, input_ids: Tensor, attention_mask: Tensor):
        """One pass over ``[visible video ; text]`` -> (video tokens (B, N_vis, D), text tokens (B, L, D))."""
        v = self.encoder.embed(video, mask)
        t = self.text_embeddings(input_ids=input_ids)
        bias = torch.cat([v.new_zeros(v.shape[:2]), padding_bias(attention_mask, v.dtype)], dim=1)
        x = self.encoder(torch.cat([v, t], dim=1), bias)
        return x[:, : v.shape[1]], x[:, v.shape[1] :]

    def encode_video(self, video: Tensor, mask: Tensor | None = None) -> Tensor:
        """Video-only pass -> (B, N_vis, D) tokens."""
        return self.encoder(self.encoder.embed(video, mask), None)

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Text-only pass -> (B, L, D) tokens."""
        t = self.text_embeddings(input_ids=input_ids)
        return self.encoder(t, padding_bias(attention_mask, t.dtype))

    # ------------------------------------------------------------------------------------------- heads
    def text_hidden(self, text_tokens: Tensor, attention_mask: Tensor) -> Tensor:
        """Encoder text outputs -> the hidden states ``text_cls`` reads (through the optional text decoder)."""
        if self.text_decoder is None:
            return text_tokens
        return _run_blocks(self.text_decoder, text_tokens, padding_bias(attention_mask, text_tokens.dtype))

    def reconstruct(self, video_tokens: Tensor, mask: Tensor) -> Tensor:
        """Encoder outputs at the visible tubelets (B, N_vis, D) -> predicted pixels of the masked tubelets
        (B, N_mask, 3·t·p²), in the order of ``mask``'s True positions."""
        x = self.encoder_to_decoder(video_tokens)
        B, _, C = x.shape
        pos = self.decoder_pos_embed.to(x.device, x.dtype).expand(B, -1, -1)
        pos_vis = pos[~mask].reshape(B, -1, C)
        pos_mask = pos[mask].reshape(B, -1, C)
        full = torch.cat([x + pos_vis, self.mask_token.to(x.dtype) + pos_mask], dim=1)
        return self.decoder(full, pos_mask.shape[1])

    def forward(
        self,
        video: Tensor,
        input_ids: Tensor | None = None,
        attention_mask: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> dict:
        """Inference: ``video_features`` / ``text_features`` (B, D) mean-pooled single-modality passes,
        ``vtm_logits`` (B, 2) and ``mlm_logits`` (B, L, V) of the joint pass; with a tube ``mask`` the encoder sees the
        visible tubelets only and ``reconstruction`` (B, N_mask, 3·t·p²) predicts the masked ones. Without text only
        ``video_features`` (and ``reconstruction`` from the video-only pass)."""
        if input_ids is None:
            v_tok = self.encode_video(video, mask)
            out = {"video_features": mean_tokens(v_tok)}
            if mask is not None:
                out["reconstruction"] = self.reconstruct(v_tok, mask)
            return out
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        v_tok, t_tok = self.encode_joint(video, mask, input_ids, attention_mask)
        out = {
            "video_features": mean_tokens(self.encode_video(video, mask)),
            "text_features": mean_tokens(self.encode_text(input_ids, attention_mask)),
            "vtm_logits": self.vtm_head(mean_tokens(torch.cat([v_tok, t_tok], 1))),
            "mlm_logits": self.text_cls(self.text_hidden(t_tok, attention_mask)),
        }
        if mask is not None:
            out["reconstruction"] = self.reconstruct(v_tok, mask)
        return out


class SimVTPDualEncoder(nn.Module):
    """Fine-tuning network: ``video_encoder`` and ``text_encoder``, two copies of the pre-trained encoder, each
    LayerNorm(mean of its tokens) -> (B, D). ``pool_padding`` (released: True) includes text padding in the mean."""

    fsdp_blocks = ("EvaBlock",)

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        num_frames: int = 16,
        tubelet_size: int = 2,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        vocab_size: int = 30522,
        max_text_len: int = 512,
        type_vocab_size: int = 2,
        text_dropout: float = 0.1,
        drop_path_rate: float = 0.1,
        pool_padding: bool = True,
        pad_token_id: int = 0,
    ):
        super().__init__()
        args = (
            img_size,
            patch_size,
            num_frames,
            tubelet_size,
            in_chans,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio,
            drop_path_rate,
        )
        self.video_encoder = VideoEncoder(*args, pooled=True, video=True)
        self.text_encoder = VideoEncoder(*args, pooled=True, video=False)
        self.text_encoder.text_embeddings = bert_embeddings(
            embed_dim, vocab_size, max_text_len, type_vocab_size, text_dropout, pad_token_id
        )
        self.pool_padding = pool_padding
        self.depth = depth

    def encode_video(self, video: Tensor) -> Tensor:
        """(B, C, T, H, W) -> (B, D)."""
        enc = self.video_encoder
        return enc.pool(enc(enc.embed(video), None))

    def encode_text(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, L) ids and mask -> (B, D)."""
        enc = self.text_encoder
        t = enc.text_embeddings(input_ids=input_ids)
        x = enc(t, padding_bias(attention_mask, t.dtype))
        return enc.pool(x, None if self.pool_padding else attention_mask)

    def forward(self, video: Tensor, input_ids: Tensor | None = None, attention_mask: Tensor | None = None):
        """-> (video embeddings, text embeddings), each (B, D); the video embeddings alone without text."""
        if input_ids is None:
            return self.encode_video(video)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return self.encode_video(video), self.encode_text(input_ids, attention_mask)
