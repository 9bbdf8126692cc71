"""Plug-ins: objects that installed packages declare under an entry-point group, or that code registers.

A lower layer owns an interface (a label source, a cache kind) and asks a :class:`Plugins` for
its implementations; the packages that implement it declare them in their ``pyproject.toml``
(``[project.entry-points."<group>"]``), so the lower layer never imports them.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Generic, TypeVar

T = TypeVar("T")


class Plugins(Generic[T]):
    """The objects of one entry-point group: those the installed packages declare (loaded on first
    use, once per process, in the order of their entry-point names), then those registered at run time.

    Args:
        group: the entry-point group, e.g. ``refavs.label_sources``.
    """

    def __init__(self, group: str):
        self.group = group
        self._declared: list[T] | None = None
        self._registered: list[T] = []

    def register(self, item: T) -> None:
        """Add ``item`` after the declared ones (once)."""
        if item not in self._registered:
            self._registered.append(item)

    def declared(self) -> list[T]:
        """The objects the installed packages declare."""
        if self._declared is None:
            found = sorted(entry_points(group=self.group), key=lambda ep: ep.name)
            self._declared = [ep.load() for ep in found]
        return list(self._declared)

    def __iter__(self):
        declared = self.declared()
        return iter(declared + [item for item in self._registered if item not in declared])
