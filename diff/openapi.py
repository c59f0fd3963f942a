"""Endpoint templates from an OpenAPI document: its `paths` (`/users/{userId}`) with their methods.

JSON always; YAML through ruamel.yaml, which mitmproxy already brings, so no
dependency is added for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from replaydiff.corpora.endpoints import EndpointPatterns
from replaydiff.diff.rules import RulesError, read_text

_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def load_openapi(path: Path) -> EndpointPatterns:
    return openapi_patterns(_parse(read_text(path, "OpenAPI file"), path), source=str(path))


def _parse(text: str, path: Path) -> Any:
    if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise RulesError(f"{path}: not valid JSON: {exc}") from None
    from ruamel.yaml import YAML, YAMLError  # only when a YAML document is given

    try:
        return YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise RulesError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from None


def openapi_patterns(document: Any, *, source: str = "openapi") -> EndpointPatterns:
    paths = document.get("paths") if isinstance(document, dict) else None
    if not isinstance(paths, dict) or not paths:
        raise RulesError(f"{source}: no `paths` object: is this an OpenAPI (Swagger) document?")
    patterns: list[tuple[str, list[str] | None]] = []
    for template, item in paths.items():
        if not isinstance(template, str) or not template.startswith("/"):
            raise RulesError(f"{source}: path {template!r} must start with /")
        methods = [m for m in item if m in _METHODS] if isinstance(item, dict) else []
        patterns.append((template, methods or None))
    return EndpointPatterns(patterns)
