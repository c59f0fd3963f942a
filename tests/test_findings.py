"""Findings: divergences grouped by cause, ranked, bounded; and the reports built on them (terminal, HTML)."""

from __future__ import annotations

import io
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from replaydiff.corpora import ReplayRecord
from replaydiff.diff import analyze, render_html, render_text
from replaydiff.diff.causes import EXAMPLE_CHARS, MAX_EXAMPLES, change_class, find_causes
from replaydiff.diff.report import distinct_middles, endpoint_tail, middle
from tests.test_diff import doc, record

OLD_TABLE = {"database": "lib", "table": "t", "columns": ["id"], "rows": [[1]], "query_ms": 1.5, "truncated": False}
NEW_TABLE = {"ok": True, "rows": [{"id": 1}], "truncated": False, "next": None}


def exchanges(endpoint: str, old: Any, new: Any, count: int = 10, **kwargs: Any) -> list[ReplayRecord]:
    """`count` exchanges where both baselines answer `old` and the candidate `new`."""
    return [
        r
        for n in range(count)
        for r in (
            doc(old, "baseline", exchange=f"{endpoint}#{n}", endpoint=endpoint, **kwargs),
            doc(old, "baseline2", exchange=f"{endpoint}#{n}", endpoint=endpoint, **kwargs),
            doc(new, "candidate", exchange=f"{endpoint}#{n}", endpoint=endpoint, **kwargs),
        )
    ]


def statuses(endpoint: str, old: int, new: int, count: int = 10) -> list[ReplayRecord]:
    return [
        r
        for n in range(count)
        for r in (
            record("baseline", exchange=f"{endpoint}#{n}", endpoint=endpoint, status=old),
            record("baseline2", exchange=f"{endpoint}#{n}", endpoint=endpoint, status=old),
            record("candidate", exchange=f"{endpoint}#{n}", endpoint=endpoint, status=new),
        )
    ]


def redesign() -> list[ReplayRecord]:
    """One JSON redesign on four table endpoints, a redirect on two, a 5xx on one, a field added on another."""
    records = [r for table in ("books", "authors", "tags", "shelves") for r in exchanges(f"GET /db/{table}.json",
                                                                                         OLD_TABLE, NEW_TABLE)]
    records += statuses("GET /db.json", 200, 302) + statuses("GET /db/query", 200, 302)
    records += statuses("POST /db/insert", 200, 500)
    records += exchanges("GET /version", {"v": 1}, {"v": 1, "extra": True})
    return records  # fmt: skip


def test_one_redesign_on_four_endpoints_is_one_finding_listing_its_keys() -> None:
    report = analyze(redesign())
    assert len(report.divergences) == 4 * 7 + 2 + 1 + 1
    assert [f.title for f in report.findings] == [
        "status 200 → 500 on POST /db/insert",
        "status 200 → 302 on 2 endpoints",
        "JSON lost 4 keys, gained 2 keys and retyped 1 value on 4 endpoints",
        "`$.extra` added on GET /version",
    ]
    table = report.findings[2]
    assert (table.severity, table.kind, table.exchanges, table.total) == ("high", "body", 40, 40)
    assert table.changes == {
        "removed": ["$.columns", "$.database", "$.query_ms", "$.table"],
        "added": ["$.next", "$.ok"],
        "retyped": ["$.rows[*]"],
    }
    assert len(table.fingerprints) == 4 * 7 and "GET /db/books.json|body|$.rows[*]" in table.fingerprints
    assert len(table.examples) == MAX_EXAMPLES  # one per endpoint, three at most
    assert [f.severity for f in report.findings] == ["critical", "high", "high", "medium"]


def test_change_classes() -> None:
    assert change_class(None, "1") == "added" and change_class("1", None) == "removed"
    assert change_class("1", '"1"') == "retyped" and change_class('"a"', '"b"') == "changed"
    assert change_class("[1]", "{}") == "retyped" and change_class("true", "false") == "changed"


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["GET /a", "GET /b", "GET /c", "POST /d"]),
            st.sampled_from(["status", "body", "header"]),
            st.sampled_from(["$.x", "$.y", "$.z", "etag", "x-a"]),
            st.sampled_from([None, "1", '"s"', "[1]", "200", "302", "500"]),
            st.sampled_from([None, "2", '"t"', "{}", "404", "503"]),
        ),
        max_size=25,
        unique_by=lambda d: d[:3],
    )
)
def test_every_divergence_is_in_exactly_one_finding(divergences: list[tuple[str, str, str, Any, Any]]) -> None:
    from replaydiff.corpora import Divergence
    from replaydiff.diff.findings import DivergenceGroup, Example

    groups = [
        DivergenceGroup(endpoint, kind, location, 3, 10, [Example(Divergence("e", endpoint, kind, location, b, c), "", "")])  # type: ignore[arg-type]
        for endpoint, kind, location, b, c in divergences
    ]
    findings = find_causes(groups)
    members = [group.fingerprint for finding in findings for group in finding.members]
    assert sorted(members) == sorted(group.fingerprint for group in groups)
    ranks = [finding.rank for finding in findings]
    assert ranks == sorted(ranks)


def test_examples_are_bounded_whatever_the_answers() -> None:
    """Thousands of headers and a huge body: a finding's example is an excerpt, and so is the HTML report."""
    headers = [(f"X-H{n}", "v" * 40) for n in range(3000)]
    big = {"text": "y" * 500_000}
    records = exchanges("GET /big", {"a": 1, **big}, {"a": "1", **big}, headers=headers)
    report = analyze(records)
    [finding] = report.findings
    for example in finding.examples:
        assert len(example.baseline_body) < EXAMPLE_CHARS + 100 and "more characters" in example.baseline_body
    assert len(render_html(report)) < 60_000
    assert len(str(report.to_json())) < 60_000


def text_report(report: Any, width: int, *, verbose: bool = False) -> str:
    output = io.StringIO()
    render_text(report, Console(file=output, width=width), verbose=verbose)
    return output.getvalue()


def many_endpoints() -> Any:
    """Forty endpoints with long names, each with its own change: more findings than one screen shows."""
    records = []
    for n in range(40):
        name = f"GET /api/v1/organisations/{{org}}/projects/{{project}}/long-collection-name-{n:02d}/items"
        records += exchanges(name, {f"k{n}": 1}, {f"k{n}": 2}, count=4)
    return analyze(records)


def test_the_terminal_report_is_one_screen_and_fits_the_width_without_breaking_names() -> None:
    report = many_endpoints()
    for width in (80, 100, 140):
        text = text_report(report, width)
        lines = text.splitlines()
        assert len(lines) <= 60, len(lines)
        assert max(len(line) for line in lines) <= width
        assert "and 25 more: --verbose" in text
        # an endpoint name is shortened in the middle, never wrapped: its start and its end stay on one line
        table = [line for line in lines if line.lstrip().startswith("GET /api/v1/")]
        assert table and all(re.search(r"items\s+4\s", line) for line in table), table
    verbose = text_report(report, 100, verbose=True)
    assert len(verbose.splitlines()) > 200 and verbose.count("|body|$.k") == 40


def test_the_html_report_leads_with_collapsible_findings_and_grows_with_findings_not_exchanges() -> None:
    small = analyze(redesign())
    html = render_html(small)
    assert html.index("<h2>Findings</h2>") < html.index("<h2>Endpoints</h2>")
    assert html.count("<details class='finding") == len(small.findings)
    assert html.count(" open>") == 1  # the first finding expanded, the others one line each
    more = analyze([r for n in range(10) for r in _tagged(redesign(), n)])  # ten times the exchanges
    assert len(more.findings) == len(small.findings)
    assert len(render_html(more)) < 1.2 * len(html)


def _tagged(records: list[ReplayRecord], n: int) -> list[ReplayRecord]:
    for r in records:
        r.exchange_id = f"{r.exchange_id}~{n}"
    return records


segments = st.text("abcdefgh-{}0123456789", min_size=1, max_size=12)


@given(st.lists(st.lists(segments, min_size=1, max_size=6), min_size=1, max_size=8), st.integers(8, 60))
def test_shortened_endpoint_names_fit_and_names_cut_alike_keep_where_they_differ(paths, width) -> None:
    names = [f"GET /{'/'.join(path)}" for path in paths]
    shown = distinct_middles(names, width)
    assert all(len(name) <= width for name in shown)
    assert [name for name in shown if "…" not in name] == [name for name in names if len(name) <= width]


def test_sibling_endpoints_that_differ_inside_stay_apart_in_the_latency_table() -> None:
    names = [f"GET /v1/buckets/client-{n}/collections/{{id}}/records/{{id}}" for n in range(3)]
    assert len(set(distinct_middles(names, 24))) == 3
    assert len({middle(name, 24) for name in names}) == 1  # the plain cut made them one


@given(st.sampled_from(["GET", "grpc", "DELETE"]), st.lists(segments, min_size=1, max_size=6), st.integers(1, 60))
def test_an_endpoint_cut_for_a_title_keeps_its_method_and_its_end(method, path, width) -> None:
    endpoint = f"{method} /{'/'.join(path)}" if method != "grpc" else f"grpc {'.'.join(path)}/Method"
    shown = endpoint_tail(endpoint, width)
    assert len(shown) <= width
    if len(endpoint) <= width:
        assert shown == endpoint
    elif width >= len(method) + 10:
        assert shown.startswith(f"{method} …") and endpoint.endswith(shown.removeprefix(f"{method} …"))
