"""The JSON report against its documentation: every field a report carries is described in docs/report-schema.md."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from replaydiff.diff.findings import SCHEMA
from tests.test_diff import planted_report

SCHEMA_DOC = Path(__file__).parent.parent / "docs" / "report-schema.md"


def keys(value: Any, skip: frozenset[str] = frozenset({"targets", "errors", "divergent_by_kind", "latency_ms", "counts"})) -> set[str]:
    """Every object key, except those of maps keyed by data (target names, kinds)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            found.add(key)
            if key not in skip:
                found |= keys(item, skip)
    elif isinstance(value, list):
        for item in value:
            found |= keys(item, skip)
    return found


def test_every_field_of_a_report_is_documented_under_its_schema_version() -> None:
    report = json.loads(json.dumps(planted_report().to_json(fail_on=frozenset({"body"}))))
    doc = SCHEMA_DOC.read_text(encoding="utf-8")
    documented = set(re.findall(r"`([a-z_0-9]+)`", doc))
    assert report["schema"] == SCHEMA and f"`{SCHEMA}`" in doc
    assert keys(report) - documented == set()
    assert (report["failed"], report["fail_on"]) == (True, ["body"])


def test_examples_carry_both_whole_answers() -> None:
    report = planted_report().to_json()
    [example, *_] = report["divergences"][0]["examples"]
    assert example["baseline_body"].startswith("200") and '"price": 9' in example["baseline_body"]
    assert '"price": "[9]"' in example["candidate_body"]
    assert "content-type: application/json" in example["candidate_body"].lower()
