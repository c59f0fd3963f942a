"""Endpoint templates: `/users/123` and `/users/9f1c…` are one endpoint, `/users/{id}`.

Shared by `inspect`, the replayer (which stamps each result with its endpoint)
and the differ (which counts noise per endpoint), so all three group alike.
"""

from __future__ import annotations

import re
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


@lru_cache(maxsize=65536)
def path_template(path: str) -> str:
    return "/".join("{id}" if _ID_SEGMENT.match(segment) else segment for segment in path.split("/"))


def endpoint_of(method: str, path: str) -> str:
    return f"{method.upper()} {path_template(path)}"
