"""refavs: a toolkit for Referring Audio-Visual Segmentation (Ref-AVS, ECCV 2024).

Sub-packages, by life cycle:

- :mod:`refavs.data`     the Ref-AVS Bench layout: metadata reader, masks, writer, checker
- :mod:`refavs.metrics`  the official J, F, S metrics as accumulators
- :mod:`refavs.scoring`  scoring any method's predictions stored as PNGs, cue breakdown

Importing the package does nothing but define names.
"""

__version__ = "0.1.0"
