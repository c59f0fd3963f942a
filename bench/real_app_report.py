"""The report on a real upgrade: Datasette 0.64.8 → 1.0a41 from PyPI, 500 requests recorded through the recorder.

Prints what issue #12 set as goals: divergences, findings, endpoints (and
whether any names a single record), terminal lines (default and --verbose),
HTML and JSON bytes, for an A/A run (old vs old) and the upgrade (old vs
new), then which entry of Datasette's changelog maps to which finding.

    .venv/bin/python bench/real_app_report.py [--requests 500] [--new 1.0a41] [--keep DIR]

The applications are installed once into ~/.cache/replaydiff-apps (see tests/realapp.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/realapp.py: the fixture the test uses too

from tests import realapp  # noqa: E402
from tests.test_real_app import RECORD_NAME  # noqa: E402

Finding = dict[str, Any]
CHANGELOG: list[tuple[str, Callable[[Finding], bool]]] = [
    (
        "1.0a3 (#782): new default JSON for table pages: ok, rows as objects, truncated, next",
        lambda f: f["kind"] == "body" and "GET /library/books.json" in f["endpoints"],
    ),
    (
        "1.0a3 (#782) / 1.0a33: row JSON in the same minimal shape, the rest behind ?_extra=",
        lambda f: f["kind"] == "body" and "GET /library/books/{id}.json" in f["endpoints"],
    ),
    (
        "1.0a14 (#2360): /database?sql= moved to /database/-/query?sql=, old URLs redirect",
        lambda f: f["kind"] == "status" and "GET /library.json" in f["endpoints"],
    ),
    (
        "every release: /-/versions.json reports the new version",
        lambda f: f["kind"] == "body" and "GET /-/versions.json" in f["endpoints"],
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--old", default=realapp.OLD)
    parser.add_argument("--new", default=realapp.NEW)
    parser.add_argument("--keep", type=Path, help="Keep corpus, results and reports in this directory.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replaydiff-realapp-") as scratch_name:
        scratch = args.keep or Path(scratch_name)
        scratch.mkdir(parents=True, exist_ok=True)
        db = realapp.library_db(scratch / "library.db")
        corpus = scratch / "library.jsonl.zst"
        with realapp.serving(args.old, db) as recorded:
            realapp.record(recorded, corpus, realapp.traffic(args.requests))
        with realapp.serving(args.old, db) as old, realapp.serving(args.old, db) as old2, \
                realapp.serving(args.old, db) as old3, realapp.serving(args.new, db) as new:  # fmt: skip
            runs = {  # A/A: three processes of the old version, as the upgrade compares three processes
                "A/A": realapp.run(corpus, old, old2, old3, scratch / "aa"),
                "upgrade": realapp.run(corpus, old, old2, new, scratch / "ab"),
            }
        print(f"Datasette {args.old} → {args.new}, {args.requests} requests recorded through `replaydiff record`\n")
        reports = {}
        for name, run in runs.items():
            stem = "aa" if name == "A/A" else "ab"
            reports[name] = report = json.loads((scratch / f"{stem}.json").read_text())
            verbose = subprocess.run([*realapp.REPLAYDIFF, "diff", str(scratch / f"{stem}.jsonl.zst"), "--verbose"],
                                     capture_output=True, text=True, env={"COLUMNS": "100", "PATH": ""})  # fmt: skip
            endpoints = [e["endpoint"] for e in report["endpoints"]]
            single = [e for e in endpoints if RECORD_NAME.search(e)]
            print(f"{name:8} exit {run.returncode}  divergences {len(report['divergences'])}  "
                  f"findings {len(report['findings'])}  endpoints {len(endpoints)} (single-record: {len(single)})  "
                  f"terminal lines {len(run.stdout.splitlines())} (--verbose {len(verbose.stdout.splitlines())})  "
                  f"HTML {(scratch / f'{stem}.html').stat().st_size:,} B  "
                  f"JSON {(scratch / f'{stem}.json').stat().st_size:,} B")  # fmt: skip
        findings = reports["upgrade"]["findings"]
        print("\nupgrade findings:")
        for number, finding in enumerate(findings, start=1):
            confirmed = f" [{finding['confirmation']}]" if finding["confirmation"] else ""
            print(f"  {number:2}. {finding['severity']:8} {finding['title']}{confirmed}  "
                  f"({len(finding['fingerprints'])} divergences)")  # fmt: skip
        print("\nchangelog → finding:")
        mapped: set[int] = set()
        for entry, matches in CHANGELOG:
            numbers = [n for n, finding in enumerate(findings, start=1) if matches(finding)]
            mapped.update(numbers)
            verdict = "exactly one" if len(numbers) == 1 else f"{len(numbers)} findings"
            print(f"  {entry}\n      → finding {', '.join(map(str, numbers)) or '(none)'} ({verdict})")
        unmapped = [n for n in range(1, len(findings) + 1) if n not in mapped]
        print(f"\nfindings with no changelog entry located: {', '.join(map(str, unmapped)) or 'none'}")
        print("\nupgrade, terminal report as printed:\n")
        print(runs["upgrade"].stdout)


if __name__ == "__main__":
    main()
