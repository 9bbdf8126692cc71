"""Labels beyond the target masks: the interface through which a special dataset supplies them.

The official layout has one label per expression, its target masks. A dataset that knows more
(Ref-AVS Synth knows which objects sound in each second, how loud and how high) supplies it
through a :class:`LabelSource`, which the generic reader (:class:`refavs.data.dataset.RefAVSDataset`)
asks for each sample's extra targets, and which may add or leave out training rows for the
recipe's dataset options (:class:`RowOptions`). The reader imports no such dataset: label sources
are plug-ins, found through the ``refavs.label_sources`` entry points of the installed packages
(Ref-AVS Synth declares its own in ``pyproject.toml``) or registered at run time with
:func:`register_label_source`.

The names of the extra targets, and their shapes per sample (``T`` frames, ``s`` the side of the
source's maps):

- :data:`SOUNDING` ``float32 [T, s, s]``: 0/1, the union of the masks of the objects sounding in
  each second.
- :data:`TARGET_SECONDS` ``float32 [T]``: 0/1, whether the referred object sounds in each second.
- :data:`SOUND_RANKS` ``float32 [T, 2, s, s]``: the sounding objects' level and pitch ranks in
  [0, 1], -1 where no object sounds.
- :data:`SOUND_LEVELS` ``float32 [T, 2, s, s]``: the sounding objects' level and pitch on a fixed
  [0, 1] scale, -1 where no object sounds.

A model uses whichever of them a batch carries (``ClipBatch.targets``); on a dataset without a
label source a batch carries none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence

import numpy as np

from refavs.data.plugins import Plugins
from refavs.data.records import Expression

SOUNDING = "sounding"
"""Extra target: per second, the masks of the sounding objects (``float32 [T, s, s]``)."""
TARGET_SECONDS = "target_seconds"
"""Extra target: per second, whether the referred object sounds (``float32 [T]``)."""
SOUND_RANKS = "sound_ranks"
"""Extra target: per second, the sounding objects' level and pitch ranks (``float32 [T, 2, s, s]``)."""
SOUND_LEVELS = "sound_levels"
"""Extra target: per second, the sounding objects' level and pitch on a fixed scale (``float32 [T, 2, s, s]``)."""

ENTRY_POINT_GROUP = "refavs.label_sources"
"""Entry-point group of label-source factories: each loads to a callable ``(root) -> LabelSource | None``."""


@dataclass(frozen=True)
class RowOptions:
    """A training recipe's options about its rows, which only some label sources can honour.

    Attributes:
        null_negatives: share of extra training rows whose sentence refers to nothing in the clip
            (empty target masks), drawn by the source; 0 for none.
        null_negatives_present: such rows name an object that is in the clip (the sound, place or
            relation then fails), instead of any object.
        drop_twin_ambiguous: leave out rows that the source marks as undecidable from the clip
            (a look-alike of the target that the audio cannot tell apart).
        seed: seed of the source's draws.
    """

    null_negatives: float = 0.0
    null_negatives_present: bool = False
    drop_twin_ambiguous: bool = False
    seed: int = 0

    @property
    def any(self) -> bool:
        """Whether any option asks something of the source."""
        return bool(self.null_negatives or self.drop_twin_ambiguous)


class FeatureLookup(Protocol):
    """What a label source may read from the dataset's feature source (the feature cache)."""

    def cached(self, kind: str, key: str) -> np.ndarray | None:
        """The cached array of ``kind`` for ``key`` (a media folder), or None where it has none."""


class LabelSource(Protocol):
    """Extra labels of one dataset folder.

    Attributes:
        name: the kind of dataset, for messages (e.g. ``Ref-AVS Synth``).
    """

    name: str

    def targets(self, expression: Expression, folder: str, features: FeatureLookup) -> dict[str, np.ndarray]:
        """The extra targets of one sample (names above), as float32 arrays; those it lacks are left out."""

    def training_rows(self, rows: Sequence[Expression], options: RowOptions,
                      log: Callable[[str], None]) -> list[Expression]:
        """The training rows under ``options``: ``rows`` less those left out, plus those added."""


LabelSourceFactory = Callable[[Path], "LabelSource | None"]

FACTORIES: Plugins[LabelSourceFactory] = Plugins(ENTRY_POINT_GROUP)
"""The label-source factories: the installed packages' entry points, then those registered."""


def register_label_source(factory: LabelSourceFactory) -> None:
    """Add a factory ``(root) -> LabelSource | None`` to those asked by :func:`label_source_for`."""
    FACTORIES.register(factory)


def label_source_for(root: str | Path) -> LabelSource | None:
    """The label source of the dataset at ``root``: the first factory that recognises it, else None
    (the official layout alone, as the real benchmark)."""
    for factory in FACTORIES:
        source = factory(Path(root))
        if source is not None:
            return source
    return None


def apply_row_options(source: LabelSource | None, root: str | Path, rows: Sequence[Expression],
                      options: RowOptions, log: Callable[[str], None]) -> list[Expression]:
    """``rows`` as ``source`` adjusts them under ``options``; without a source, ``rows`` unchanged
    and one line in ``log`` saying which options are ignored."""
    if not options.any:
        return list(rows)
    if source is None:
        asked = [f"null_negatives={options.null_negatives}"] if options.null_negatives else []
        asked += ["drop_twin_ambiguous"] if options.drop_twin_ambiguous else []
        log(f"{', '.join(asked)} ignored: {root} has no label source that draws or marks rows "
            "(only Ref-AVS Synth has one)")
        return list(rows)
    return source.training_rows(rows, options, log)
