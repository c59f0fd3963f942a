"""Endpoint templates: the fixed per-segment rule, the rule learned from traffic, and the user's patterns above both."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora import CorpusWriter, Exchange, Request, Response
from replaydiff.corpora.endpoints import EndpointPatterns, learn_endpoints, path_template

REPLAYDIFF = [sys.executable, "-m", "replaydiff.cli"]


def test_ids_inside_a_segment_are_parameters_and_words_are_not() -> None:
    assert path_template("/library/books/1101.json") == "/library/books/{id}.json"
    assert path_template("/items/item-42") == "/items/item-{id}"
    assert path_template("/export/42.csv") == "/export/{id}.csv"
    assert path_template("/v2-42/x") == "/v2-{id}/x"
    assert path_template("/a/9f1c2d3e4b5a6978.json") == "/a/{id}.json"
    for literal in ("/api/v2", "/reports/2024-report", "/index.html", "/books.json", "/python3.11"):
        assert path_template(literal) == literal


def _slugs(count: int) -> list[str]:
    return [f"{a}-{b}" for a in ("war", "sea", "iron", "night", "city") for b in ("tales", "maps", "songs", "notes")][
        :count
    ]


def test_many_rarely_seen_values_at_one_position_are_learned_and_frequent_literals_stay() -> None:
    paths = Counter({"/users/me": 300, "/api/search": 120, "/api/products": 120, "/api/cart": 80})
    for slug in _slugs(20):
        paths[f"/users/{slug}"] += 1
        paths[f"/users/{slug}.json"] += 1
        paths[f"/users/{slug}/books"] += 2
    learned = learn_endpoints(paths)
    assert [p.template for p in learned.positions] == ["/users/{name}"]
    assert learned.path("/users/me") == "/users/me"  # hit over and over: an endpoint of its own
    assert learned.path("/users/never-seen/books") == "/users/{name}/books"
    assert learned.path("/users/sea-maps.json") == "/users/{name}.json"  # the extension stays: JSON and HTML apart
    assert learned.path("/api/search") == "/api/search"  # four literals, each frequent: a table of contents


def test_few_distinct_values_stay_literal_however_rare() -> None:
    paths = Counter({f"/db/{table}.json": 1 for table in ("books", "authors", "subjects", "tags", "shelves")})
    assert not learn_endpoints(paths)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,12}", fullmatch=True), min_size=1, max_size=4),
                min_size=1, max_size=80))  # fmt: skip
def test_learning_from_templated_paths_learns_nothing_more(segment_lists: list[list[str]]) -> None:
    """What the replayer stamped can be learned again at diff time without changing a name."""
    paths = Counter("/" + "/".join(segments) for segments in segment_lists)
    learned = learn_endpoints(paths)
    templated = Counter()
    for path, count in paths.items():
        templated[learned.path(path)] += count
    again = learn_endpoints(templated)
    assert {again.path(path) for path in templated} == set(templated)
    assert sum(templated.values()) == sum(paths.values())


def test_user_patterns_win_over_learned_templates() -> None:
    paths = Counter({f"/users/{slug}": 1 for slug in _slugs(20)})
    patterns = EndpointPatterns([("/users/{userName}", None)]).with_learned(learn_endpoints(paths))
    assert patterns.endpoint("GET", "/users/war-maps") == "GET /users/{userName}"
    assert patterns.retemplate("GET /users/{name}") == "GET /users/{userName}"
    assert EndpointPatterns().with_learned(learn_endpoints(paths)).retemplate("GET /users/sea-tales") == (
        "GET /users/{name}"
    )


def _corpus(path: Path, paths: list[str]) -> Path:
    with CorpusWriter(path, source="test") as writer:
        for number, target in enumerate(paths):
            request = Request("GET", "http", "shop", 80, target)
            writer.write(Exchange(f"e{number}", "s", number * 1000, request, Response(200), 1000))
    return path


def test_inspect_endpoints_shows_what_was_learned(tmp_path: Path) -> None:
    paths = [f"/library/books/{1000 + n}.json" for n in range(30)] + [f"/tags/{slug}" for slug in _slugs(20)]
    corpus = _corpus(tmp_path / "c.jsonl.zst", paths + ["/library/books.json"] * 5)
    shown = subprocess.run([*REPLAYDIFF, "inspect", "--endpoints", str(corpus)], capture_output=True, text=True,
                           env={"COLUMNS": "160", "PATH": ""})  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "learned    /tags/{name}  20 values over 20 exchanges" in shown.stdout
    lines = {line.split()[1]: line.split()[2:] for line in shown.stdout.splitlines() if line.startswith("GET ")}
    assert lines == {"/library/books/{id}.json": ["30", "30"], "/tags/{name}": ["20", "20"],
                     "/library/books.json": ["5", "1"]}  # fmt: skip


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=30)), min_size=1, max_size=20))
def test_stamped_endpoints_are_read_as_a_json_parser_reads_them(records: list[tuple[str, str]]) -> None:
    """The diff's learning pass finds endpoints without parsing records, whatever the ids hold (quotes, keys)."""
    import tempfile

    from replaydiff.corpora import Attempt, ReplayRecord, ResultsReader, ResultsWriter
    from replaydiff.diff.analysis import stamped_paths

    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "r.jsonl.zst"
        with ResultsWriter(path) as writer:
            for exchange_id, path_part in records:
                attempt = Attempt(0, None, 1000, 200)
                writer.write(ReplayRecord(f'"endpoint": "{exchange_id}', "baseline", f"GET /{path_part}", [attempt], None))
        assert stamped_paths(ResultsReader(path)) == Counter(f"/{path_part}" for _, path_part in records)
