"""Accepted divergences: intended changes that no longer fail a night but stay visible in every report.

Two sources, merged: `replaydiff accept` (in the history database, for one
machine's runs) and a file the suite names, kept in the team's repository
so an acceptance is reviewed like code:

    [[accepted]]
    fingerprint = "GET /api/products|header|cache-control"
    reason = "cache headers added on purpose (SHOP-412)"
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from replaydiff.corpora import DIVERGENCE_KINDS
from replaydiff.corpora.tomlfile import read_toml
from replaydiff.errors import UserError


def checked_fingerprint(fingerprint: str, where: str) -> str:
    """`ENDPOINT|KIND|LOCATION`, as reports print it: a typo would accept nothing, silently."""
    parts = fingerprint.split("|", 2)
    if len(parts) != 3 or not parts[0].strip() or parts[1] not in DIVERGENCE_KINDS:
        raise UserError(
            f"{where}: {fingerprint!r} is not a fingerprint; expected ENDPOINT|KIND|LOCATION with KIND one of "
            f"{', '.join(DIVERGENCE_KINDS)}, e.g. 'GET /api/products|header|cache-control' (copy it from a report)"
        )
    return fingerprint


def finding_fingerprints(report: Path, finding_id: str) -> list[str]:
    """The member fingerprints of the finding `finding_id` in a JSON report (`diff --json`, or a nightly run.json,
    whose entries each carry one): accepting a finding accepts each of its divergences."""
    try:
        document = json.loads(report.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UserError(f"{report}: cannot read the report: {exc.strerror}") from None
    except ValueError:
        raise UserError(f"{report}: not a JSON report; write one with --json") from None
    for finding in _findings(document):
        if finding.get("id") == finding_id:
            return [checked_fingerprint(str(f), str(report)) for f in finding.get("fingerprints", [])]
    raise UserError(f"{report}: no finding {finding_id!r}; the ids are the reports' findings[].id")


def _findings(document: Any) -> Iterator[dict[str, Any]]:
    if isinstance(document, dict):
        for finding in document.get("findings") or []:
            if isinstance(finding, dict):
                yield finding
        for entry in document.get("entries") or []:
            if isinstance(entry, dict):
                yield from _findings(entry.get("report"))


def load_accepted(path: Path) -> dict[str, str]:
    """Fingerprint → reason."""
    document = read_toml(path, UserError, "accepted divergences")
    items = document.get("accepted", [])
    if set(document) - {"accepted"} or not isinstance(items, list):
        raise UserError(f"{path}: expected only [[accepted]] tables with `fingerprint` and `reason`")
    accepted: dict[str, str] = {}
    for number, item in enumerate(items, 1):
        where = f"{path}: accepted {number}"
        if not isinstance(item, dict) or set(item) != {"fingerprint", "reason"}:
            raise UserError(f"{where}: needs exactly `fingerprint` and `reason`, got {item!r}")
        if not isinstance(item["reason"], str) or not item["reason"].strip():
            raise UserError(f"{where}: `reason` must say why the change is intended")
        accepted[checked_fingerprint(str(item["fingerprint"]), where)] = item["reason"]
    return accepted
