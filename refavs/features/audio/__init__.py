"""Audio features: the VGGish front end and network in torch, and a parameter-free log-mel encoder.

Import the pieces from their modules: :mod:`.io` (decoding, mono, length rule),
:mod:`.resample`, :mod:`.frontend`, :mod:`.vggish`, :mod:`.logmel`, :mod:`.encoder`
(:func:`~refavs.features.audio.encoder.build_audio_featurizer`).
"""
