"""Frozen features of the Ref-AVS inputs, extracted once and cached.

- :mod:`refavs.features.config`  typed settings and the named presets (``paper``, ``tiny``)
- :mod:`refavs.features.audio`   VGGish in torch and the log-mel summary encoder
- :mod:`refavs.features.text`    any Hugging Face text encoder, 25 tokens with a mask
- :mod:`refavs.features.cache`   ``refavs features``: extraction into a keyed, memory-mapped cache

Importing this package loads neither torch nor transformers.
"""
