"""open_clip's CLIP tokenizer (see :mod:`zoo.text`); open_clip (the A-CLIP extra) is imported inside the function."""

from __future__ import annotations

import functools

__all__ = ["clip_tokenizer"]


@functools.lru_cache(maxsize=4)
def clip_tokenizer(context_length: int):
    """open_clip's CLIP BPE tokenizer (its vocabulary ships with the package: offline) at ``context_length``."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)
