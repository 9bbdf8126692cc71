"""Pictures of data and results, drawn with Pillow (``refavs.viz.predictions``: true vs predicted masks)."""
