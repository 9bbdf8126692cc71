"""refavs: a toolkit for Referring Audio-Visual Segmentation (Ref-AVS, ECCV 2024).

Sub-packages, by life cycle:

- :mod:`refavs.data`     the Ref-AVS Bench layout: metadata reader, masks, writer, checker
- :mod:`refavs.metrics`  the official J, F, S metrics as accumulators
- :mod:`refavs.scoring`  scoring any method's predictions stored as PNGs, cue breakdown
- :mod:`refavs.inference` running a checkpoint on your own videos (``refavs.RefAVSPipeline``)

Importing the package does nothing but define names (``RefAVSPipeline`` is imported on first use).
"""

from refavs.version import __version__

__all__ = ["RefAVSPipeline", "__version__"]


def __getattr__(name: str):
    if name == "RefAVSPipeline":
        from refavs.inference.pipeline import RefAVSPipeline  # pulls in torch

        return RefAVSPipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
