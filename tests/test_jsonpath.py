"""The one JSON path dialect (`corpora.jsonpath`) that sanitize policies, diff rules and correlation rules share."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replaydiff.corpora.jsonpath import JsonPath, JsonPathError, Step, parse_json_path

names = st.text(st.characters(codec="utf-8", exclude_characters="*"), min_size=1, max_size=8)
steps = st.one_of(
    st.builds(Step, st.just("member"), name=names, descend=st.booleans()),
    st.builds(Step, st.just("index"), index=st.integers(0, 10_000), descend=st.booleans()),
    st.builds(Step, st.just("any"), descend=st.booleans()),
)


@given(st.lists(steps, max_size=6))
def test_a_rendered_path_parses_back_to_the_same_steps(path_steps: list[Step]) -> None:
    rendered = JsonPath("", tuple(path_steps)).rendered()
    assert parse_json_path(rendered).steps == tuple(path_steps)


@pytest.mark.parametrize(
    ("path", "location", "matches"),
    [
        ("$", [], True),
        ("$.a.b", ["a", "b"], True),
        ("$.a.b", ["a", "b", "c"], False),
        ("$.users[*].email", ["users", 3, "email"], True),
        ("$.users[*].email", ["users", None, "email"], True),  # the differ's generalized "some item"
        ("$.users[2].email", ["users", 3, "email"], False),
        ("$..password", ["a", 0, "b", "password"], True),
        ("$..password", ["password", "x"], False),
        ("$.*token*", ["access_token_v2"], True),
        ("$['trace id']", ["trace id"], True),
        ('$["a.b"]', ["a.b"], True),
        ("$['*']", ["anything"], False),  # quoted names are literal
        ("$[*]", ["key"], True),  # any member of an object too
    ],
)
def test_what_a_path_matches(path: str, location: list[str | int | None], matches: bool) -> None:
    assert parse_json_path(path).matches(location) is matches


def test_names_match_case_insensitively_only_when_asked() -> None:
    assert not parse_json_path("$.Password").matches(["password"])
    assert parse_json_path("$.Password").matches(["password"], ignore_case=True)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("a.b", "JSON path 'a.b' must start with $"),
        ("$.a[x].b", "JSON path '$.a[x].b' is not understood at '[x].b'"),
        ("$.a[", "is not understood at '['"),
        ("$.", "is not understood at '.'"),
        ("$.a[1", "is not understood at '[1'"),
    ],
)
def test_a_path_outside_the_dialect_is_a_one_line_error(path: str, message: str) -> None:
    with pytest.raises(JsonPathError) as caught:
        parse_json_path(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)
