"""Endpoint templates: `/users/123` and `/users/9f1c…` are one endpoint, `/users/{id}`.

Shared by `inspect`, the replayer (which stamps each result with its endpoint)
and the differ (which counts noise per endpoint), so all three group alike.
Where the default guess is wrong, `EndpointPatterns` holds the user's own
templates (from a rules file or an OpenAPI document) and re-templates an
endpoint string the replayer stamped, so results diff without the corpus.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

_ID_SEGMENT = re.compile(
    r"""^(
        \d+                                   # numbers
      | [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}  # UUIDs
      | [0-9a-fA-F]{12,}                      # long hex ids and digests
      | (?=[A-Za-z0-9_-]*\d)[A-Za-z0-9_-]{20,}  # long base64-like tokens with a digit
    )$""",
    re.VERBOSE,
)
_PARAMETER = re.compile(r"^\{[^{}/]+\}$")
"""A whole path segment like `{userId}`, as OpenAPI writes path parameters."""


@lru_cache(maxsize=65536)
def path_template(path: str) -> str:
    return "/".join("{id}" if _ID_SEGMENT.match(segment) else segment for segment in path.split("/"))


def endpoint_of(method: str, path: str) -> str:
    return f"{method.upper()} {path_template(path)}"


@dataclass(frozen=True, slots=True)
class _Pattern:
    segments: tuple[str | None, ...]
    """Literal segments, `None` where the pattern has a parameter."""
    template: str
    methods: frozenset[str] | None
    """Upper-case methods it applies to; `None` for every method."""

    @property
    def literals(self) -> int:
        return sum(segment is not None for segment in self.segments)

    def matches(self, method: str, segments: list[str]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        return len(segments) == len(self.segments) and all(
            want is None or want == got for want, got in zip(self.segments, segments, strict=True)
        )


class EndpointPatterns:
    """User templates such as `/users/{userId}`; a path none of them matches keeps the default template.

    As in OpenAPI, a literal segment beats a parameter: `/users/me` wins over
    `/users/{userId}` for the path `/users/me`, whatever the order given.
    """

    def __init__(self, patterns: Iterable[tuple[str, Iterable[str] | None]] = ()) -> None:
        """`patterns`: (path template, methods or `None` for any method)."""
        self._given = [(template, None if methods is None else tuple(methods)) for template, methods in patterns]
        compiled = [
            _Pattern(
                tuple(None if _PARAMETER.match(s) else s for s in template.split("/")),
                template,
                None if methods is None else frozenset(m.upper() for m in methods),
            )
            for template, methods in self._given
        ]
        self._patterns = sorted(compiled, key=lambda p: -p.literals)  # stable: ties keep the given order

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def __add__(self, other: EndpointPatterns) -> EndpointPatterns:
        """Both sets; among equally specific patterns, this one's come first."""
        return EndpointPatterns([*self._given, *other._given])

    def __len__(self) -> int:
        return len(self._patterns)

    def endpoint(self, method: str, path: str) -> str:
        method = method.upper()
        segments = path.split("/")
        for pattern in self._patterns:
            if pattern.matches(method, segments):
                return f"{method} {pattern.template}"
        return endpoint_of(method, path)

    def retemplate(self, endpoint: str) -> str:
        """An endpoint string as the replayer stamped it (`GET /users/{id}`), re-templated with these patterns.

        Works because a default `{id}` segment still matches a pattern's
        parameter; a segment the default already replaced cannot be told
        apart again, so patterns can merge or rename endpoints but not split
        one the default templating merged.
        """
        method, _, path = endpoint.partition(" ")
        return self.endpoint(method, path) if self._patterns else endpoint
