"""Training and evaluation of EEMC: recipes, the loop (one process or many with
``torch.distributed``), checkpoints that resume exactly, and evaluation with the official metrics.

- :mod:`refavs.training.config`       ``TrainConfig`` and the named recipes (``paper``, ``tiny``)
- :mod:`refavs.training.distributed`  process group set-up from ``torchrun`` / ``accelerate launch``
- :mod:`refavs.training.sampling`     the deterministic, resumable order of training clips
- :mod:`refavs.training.checkpoint`   atomic run checkpoints (``RUN/last``, ``RUN/best``)
- :mod:`refavs.training.trainer`      ``train(...)``
- :mod:`refavs.training.evaluate`     ``evaluate(...)``: J, F, S per split, per cue, ablations
"""
