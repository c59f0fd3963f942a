"""One place where two targets' answers or behaviour differ: the differ's unit of evidence."""

from __future__ import annotations

from dataclasses import dataclass

from replaydiff.corpora.model import DivergenceKind

Key = tuple[DivergenceKind, str]
"""(kind, location): where two answers differ, the same in every exchange of an endpoint."""


@dataclass(frozen=True, slots=True)
class Difference:
    """One place where two answers differ; `None` as a value means absent on that side."""

    kind: DivergenceKind
    location: str
    left: str | None
    right: str | None
    note: str = ""
    """How the values were read, when a reader must know (gRPC messages decoded without a schema)."""

    @property
    def key(self) -> Key:
        return (self.kind, self.location)
