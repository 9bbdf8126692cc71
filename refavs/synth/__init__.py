"""Ref-AVS Synth: a generator of Ref-AVS datasets that can only be solved by listening.

Its datasets are ordinary Ref-AVS datasets (official layout, uids and null folders), with two
extra metadata columns (``cue``, ``needs_audio``), the scene of every clip in ``scenes.jsonl``,
its sounding-object masks in ``gt_sounding/`` and the options in ``synth.json``. Modules, by what they do:

- :mod:`~refavs.synth.categories`  the category table: look and sound of each category
- :mod:`~refavs.synth.presets`     typed presets (small, medium, large) and scene sampling settings
- :mod:`~refavs.synth.scene`       sampling a clip's scene: objects, placement, motion, sound intervals
- :mod:`~refavs.synth.render`      frames and exact masks of a scene
- :mod:`~refavs.synth.audio`       its 16 kHz soundtrack, aligned with the 0.96 s log-mel windows
- :mod:`~refavs.synth.expressions` meanings, their resolution, needs_audio, cue tags and wordings
- :mod:`~refavs.synth.generate`    the API: ``generate(out_dir, seed, preset, size, workers)``
- :mod:`~refavs.synth.files`       a clip's files (the official writer's bytes), staged and moved into place
- :mod:`~refavs.synth.layout`      the names of Synth's own files and their readers; ``is_synth(root)``
- :mod:`~refavs.synth.sounding`    sounding-object masks (``gt_sounding/``, Synth only) and their reader
- :mod:`~refavs.synth.sound_ranks` the sounding objects' level and pitch ranks, as maps
- :mod:`~refavs.synth.labels`      Synth's labels as a plug-in of the reader and the feature cache
- :mod:`~refavs.synth.negatives`   null training rows drawn from the scenes
- :mod:`~refavs.synth.stats`       distributions per split (``refavs synth --stats``)
- :mod:`~refavs.synth.figure`      the overview picture (``refavs synth --figure``)
- :mod:`~refavs.synth.cli`         the ``refavs synth`` command

Importing the package does nothing but define names.
"""
