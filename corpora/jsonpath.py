"""The one JSON path dialect of replaydiff: sanitize policies, diff rules and correlation rules all parse with it.

    $                 the whole document
    .name             a member; `*` in a name is a glob (`.*token*`, `.*` any member)
    ['any name']      a member whose name is not a plain word, taken literally (`["a.b"]` too,
                      with JSON escapes inside double quotes)
    [3]               the item at index 3 of an array
    [*]               any item of an array, or any member of an object
    ..name  ..[*]     the step after `..` at any depth below (`$..password`)

A path that does not parse is a `JsonPathError` whose one-line message names
the path and the place it stops making sense. Each use says what it supports:
diff rules see every item of an array alike (`[n]` is refused, write `[*]`),
correlation rules name exact places (no `..` or globs). Matching is exact for
names, unless the user asks for case-insensitive matching (sanitize policies
do: a secret named `Password` is still a password).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import Literal

ROOT = "$"
DIALECT = "write $ then .name, ..name, [n], [*] or ['quoted name']"

StepKind = Literal["member", "index", "any"]

_SEGMENT = re.compile(
    r"""(?P<dots>\.\.?)(?P<name>[^.\[\]'"]+)"""
    r"""|(?P<descend>\.\.)?\[(?:(?P<index>\d+)|(?P<any>\*)|'(?P<single>[^']*)'|(?P<double>"(?:[^"\\]|\\.)*"))\]"""
)
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class JsonPathError(ValueError):
    """A JSON path that is not in the dialect, or not one its use supports; the message is one line."""


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    name: str = ""
    """A member's name (a glob when `glob`)."""
    index: int = 0
    descend: bool = False
    """Preceded by `..`: matches at any depth below the previous step."""
    glob: bool = False
    """An unquoted name holding `*`."""

    def matches(self, key: str | int | None, *, ignore_case: bool = False) -> bool:
        """`key`: a member name, an array index, or None for "some array item" (a generalized location)."""
        if self.kind == "any":
            return True
        if self.kind == "index":
            return isinstance(key, int) and key == self.index
        if not isinstance(key, str):
            return False
        name, key = (self.name.lower(), key.lower()) if ignore_case else (self.name, key)
        return fnmatchcase(key, name) if self.glob else key == name


@dataclass(frozen=True, slots=True)
class JsonPath:
    text: str
    steps: tuple[Step, ...]

    @property
    def exact(self) -> bool:
        """Names one place (or, with `[*]`, every item of the arrays on the way): no `..`, no globs."""
        return not any(step.descend or step.glob for step in self.steps)

    def matches(self, location: Sequence[str | int | None], *, ignore_case: bool = False) -> bool:
        """`location`: the keys from the root down (names, indices, None for "any item" of an array)."""
        return _match(self.steps, tuple(location), ignore_case)

    def rendered(self) -> str:
        """The canonical text: `.name` for plain words, `["…"]` for other names (as the differ prints paths)."""
        parts = [ROOT]
        for step in self.steps:
            if step.descend:
                parts.append("..")
            if step.kind == "any":
                parts.append("[*]")
            elif step.kind == "index":
                parts.append(f"[{step.index}]")
            elif step.glob or _IDENTIFIER.fullmatch(step.name):
                parts.append(("" if step.descend else ".") + step.name)
            else:
                parts.append(f"[{json.dumps(step.name, ensure_ascii=False)}]")
        return "".join(parts)


@lru_cache(maxsize=4096)
def parse_json_path(text: str) -> JsonPath:
    if not text.startswith(ROOT):
        raise JsonPathError(f"JSON path {text!r} must start with $; {DIALECT}")
    steps: list[Step] = []
    position = len(ROOT)
    while position < len(text):
        segment = _SEGMENT.match(text, position)
        if segment is None:
            raise JsonPathError(f"JSON path {text!r} is not understood at {text[position:]!r}; {DIALECT}")
        steps.append(_step(segment))
        position = segment.end()
    return JsonPath(text, tuple(steps))


def _step(segment: re.Match[str]) -> Step:
    descend = segment["dots"] == ".." or segment["descend"] is not None
    if segment["name"] is not None:
        name = segment["name"]
        return Step("member", name=name, descend=descend, glob="*" in name)
    if segment["index"] is not None:
        return Step("index", index=int(segment["index"]), descend=descend)
    if segment["any"] is not None:
        return Step("any", descend=descend)
    if segment["single"] is not None:
        return Step("member", name=segment["single"], descend=descend)
    return Step("member", name=json.loads(segment["double"]), descend=descend)


def _match(steps: tuple[Step, ...], location: tuple[str | int | None, ...], ignore_case: bool) -> bool:
    if not steps:
        return not location
    step, rest = steps[0], steps[1:]
    if not step.descend:
        return bool(location) and step.matches(location[0], ignore_case=ignore_case) and _match(
            rest, location[1:], ignore_case
        )
    return any(
        step.matches(location[at], ignore_case=ignore_case) and _match(rest, location[at + 1 :], ignore_case)
        for at in range(len(location))
    )
