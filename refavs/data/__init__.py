"""The Ref-AVS Bench on disk: layout, metadata reader, masks, writer and checker."""

from refavs.data.layout import MASK_SIZE, NUM_FRAMES, SPLITS, DatasetLayout, folder_from_uid
from refavs.data.masks import MediaError, load_clip_masks, load_mask
from refavs.data.metadata import MetadataError, Problem, read_metadata, scan_metadata, split_counts
from refavs.data.records import Expression

__all__ = [
    "MASK_SIZE", "NUM_FRAMES", "SPLITS", "DatasetLayout", "Expression", "MediaError", "MetadataError",
    "Problem", "folder_from_uid", "load_clip_masks", "load_mask", "read_metadata", "scan_metadata",
    "split_counts",
]
