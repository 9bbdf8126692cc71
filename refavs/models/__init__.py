"""The EEMC model (Ref-AVS, section 4 of the reference page) on transformers' Mask2Former.

- :mod:`refavs.models.config_base`      what every model config answers (``ModelConfig``), feature checks
- :mod:`refavs.models.eemc_config`      EEMC's typed settings and named configs (``paper``, ``tiny``, ...)
- :mod:`refavs.models.registry`         every named config (EEMC's and ``lite``), configs from saved dicts
- :mod:`refavs.models.overrides`        dotted ``key=value`` overrides and dict parsing of any config
- :mod:`refavs.models.segmenter`        building the Mask2Former (pretrained or from the config)
- :mod:`refavs.models.fusion`           projections, bi-modal blocks, cached memory, integration, prompt
- :mod:`refavs.models.prompt`           the gated query cross-attention before the decoder
- :mod:`refavs.models.adapters`         adapters in the pixel decoder's deformable-attention layers
- :mod:`refavs.models.readout`          queries -> one mask per frame, the loss, probabilities
- :mod:`refavs.models.eemc`             the model: forward, trainable groups
- :mod:`refavs.models.checkpoint`       save_pretrained / from_pretrained (safetensors)
- :mod:`refavs.models.reference_import` checkpoints of the reference implementation

Importing this package loads neither torch nor transformers; use the submodules.
"""
