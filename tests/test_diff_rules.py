"""User rules, endpoint templates and the structural walker: unit cases, and properties checked with hypothesis."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from deepdiff import DeepDiff
from hypothesis import given, settings
from hypothesis import strategies as st

from replaydiff.corpora.endpoints import EndpointPatterns
from replaydiff.diff import DiffOptions, analyze
from replaydiff.diff.compare import compare
from replaydiff.diff.openapi import openapi_patterns
from replaydiff.diff.rules import EndpointRules, Rules, RulesError, ValueRule, parse_rules
from replaydiff.diff.structure import json_changes
from tests.test_diff import ENDPOINT, doc, exchange

json_scalars = st.none() | st.booleans() | st.integers(-1000, 1000) | st.floats(-1e6, 1e6) | st.text(max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4),
    max_leaves=14,
)


def changes(left: Any, right: Any, rules: Rules | None = None, endpoint: str = ENDPOINT) -> list[tuple[str, ...]]:
    endpoint_rules = (rules or Rules()).for_endpoint(endpoint)
    return [(d.kind, d.location) for d in compare(doc(left), doc(right), endpoint_rules)]


def rules(text: str) -> Rules:
    return parse_rules(text, source="rules.toml")


# --- the rules file --------------------------------------------------------------------------


def test_ignore_a_json_path_and_everything_below_it() -> None:
    ignoring = rules('[[rule]]\npath = "$.debug"\nignore = true\n')
    left, right = {"a": 1, "debug": {"t": 1}}, {"a": 2, "debug": {"t": 2, "x": 0}}
    assert changes(left, right) == [("body", "$.a"), ("body", "$.debug.t"), ("body", "$.debug.x")]
    assert changes(left, right, ignoring) == [("body", "$.a")]
    assert changes({"a": 1}, {"a": 1, "debug": 5}, ignoring) == []  # an added member under an ignored path


def test_paths_in_the_one_dialect_descendants_globs_and_quoted_names() -> None:
    """Diff rules take the JSON paths sanitize policies take (`corpora.jsonpath`)."""
    left = {"id": 1, "items": [{"id": 2, "created_at": "a", "price": 1}], "meta": {"trace id": "x", "id": 3}}
    right = {"id": 9, "items": [{"id": 8, "created_at": "b", "price": 1}], "meta": {"trace id": "y", "id": 7}}
    assert changes(left, right, rules('[[rule]]\npath = "$..id"\nignore = true\n')) == [
        ("body", "$.items[*].created_at"), ("body", '$.meta["trace id"]')]
    assert changes(left, right, rules('[[rule]]\npath = "$.items[*].*_at"\nignore = true\n'
                                      '[[rule]]\npath = "$.meta[\'trace id\']"\nignore = true\n')) == [
        ("body", "$.id"), ("body", "$.items[*].id"), ("body", "$.meta.id")]


def test_a_rule_holds_only_on_the_endpoints_its_glob_matches() -> None:
    scoped = rules('[[rule]]\nendpoint = "GET /items/*"\npath = "$.at"\nignore = true\n')
    assert changes({"at": 1}, {"at": 2}, scoped, endpoint="GET /items/{id}") == []
    assert changes({"at": 1}, {"at": 2}, scoped, endpoint="GET /orders/{id}") == [("body", "$.at")]


def test_numeric_tolerance_absolute_and_relative() -> None:
    absolute = rules('[[rule]]\npath = "$.items[*].price"\ntolerance = 0.01\n')
    assert changes({"items": [{"price": 1.0}]}, {"items": [{"price": 1.009}]}, absolute) == []
    assert changes({"items": [{"price": 1.0}]}, {"items": [{"price": 1.02}]}, absolute) == [
        ("body", "$.items[*].price")
    ]
    relative = rules('[[rule]]\npath = "$"\nrelative_tolerance = 0.01\n')  # the root: every number below
    assert changes({"a": 1000, "b": [200]}, {"a": 1009, "b": [201]}, relative) == []
    assert changes({"a": 1000}, {"a": "1000"}, relative) == [("body", "$.a")]  # a type change is never tolerated


def test_order_insensitive_arrays() -> None:
    unordered = rules('[[rule]]\npath = "$.tags"\nunordered = true\n')
    assert changes({"tags": ["a", "b", "c"]}, {"tags": ["c", "a", "b"]}) == [("body", "$.tags")]
    assert changes({"tags": ["a", "b", "c"]}, {"tags": ["c", "a", "b"]}, unordered) == []
    assert changes({"tags": ["a", "b"]}, {"tags": ["a", "x"]}, unordered) == [("body", "$.tags[*]")]


def test_a_reordered_array_of_objects_is_one_difference_at_the_array() -> None:
    left = {"reviews": [{"by": "ana", "rating": 2}, {"by": "bo", "rating": 5}]}
    right = {"reviews": [{"by": "bo", "rating": 5}, {"by": "ana", "rating": 2}]}
    assert changes(left, right) == [("body", "$.reviews")]


def test_regex_replacement_on_json_strings_and_headers() -> None:
    normalizing = rules(
        '[[rule]]\npath = "$.build"\npattern = "[0-9a-f]{7}"\nreplacement = "<sha>"\n'
        '[[rule]]\nheader = "X-Served-By"\npattern = "node-\\\\d+"\nreplacement = "node"\n'
        '[[rule]]\nheader = "x-cache"\nignore = true\n'
    )
    left = doc({"build": "v1-abc1234"}, headers=[("X-Served-By", "node-1"), ("X-Cache", "HIT")])
    right = doc({"build": "v1-9f8e7d6"}, headers=[("x-served-by", "node-22"), ("X-Cache", "MISS")])
    assert [d.location for d in compare(left, right)] == ["x-cache", "x-served-by", "$.build"]
    assert compare(left, right, normalizing.for_endpoint(ENDPOINT)) == []


def test_later_rules_refine_earlier_ones() -> None:
    merged = rules(
        '[[rule]]\npath = "$.n"\ntolerance = 1\n[[rule]]\nendpoint = "GET /items/*"\npath = "$.n"\nunordered = true\n'
    ).for_endpoint(ENDPOINT)
    assert merged.paths["$.n"] == ValueRule(tolerance=1.0, unordered=True)


def test_rules_apply_to_the_noise_comparison_too() -> None:
    tolerant = rules('[[rule]]\npath = "$.v"\ntolerance = 0.5\n')
    records = [r for n in range(40) for r in exchange(n, baseline2={"v": 1.1}, candidate={"v": 1.2})]
    report = analyze(records, options=DiffOptions(rules=tolerant))
    assert report.verdict == "same" and report.suppressed == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[rule]\n", "rules.toml: not valid TOML"),
        ("colour = 1\n", "rules.toml: unknown key 'colour'"),
        ('[[rule]]\npath = "$.a"\ntolernce = 1\n', "rules.toml: rule 1: unknown key 'tolernce'"),
        ('[[rule]]\npath = "$.a"\n', "rules.toml: rule 1: no action"),
        ('[[rule]]\nignore = true\n', "rules.toml: rule 1: give exactly one of `header` or `path`"),
        ('[[rule]]\npath = "items.price"\nignore = true\n', "rule 1: `path`: JSON path 'items.price' must start with $"),
        ('[[rule]]\npath = "$.a[x].b"\nignore = true\n', "JSON path '$.a[x].b' is not understood at '[x].b'"),
        ('[[rule]]\npath = "$.items[0].id"\nignore = true\n', "every item of an array alike; write [*]"),
        ('[[rule]]\npath = "$.a"\ntolerance = -1\n', "`tolerance` must be a non-negative number"),
        ('[[rule]]\npath = "$.a"\npattern = "("\n', "`pattern` '(' is not a valid regular expression"),
        ('[[rule]]\nheader = "x"\nunordered = true\n', "apply to JSON paths, not to header 'x'"),
        ('[[rule]]\npath = "$.a"\nignore = "yes"\n', "`ignore` must be a bool"),
        ('[[rule]]\npath = "$.a"\nreplacement = "x"\n', "`replacement` needs a `pattern`"),
        ('endpoints = ["users/{id}"]\n', "`endpoints` must be a list of path templates"),
        ('endpoints = ["/users/{userId"]\n', "endpoints[1] '/users/{userId': segment '{userId' is not a parameter"),
        ('endpoints = ["/a", "/x{id}y"]\n', "endpoints[2] '/x{id}y': segment 'x{id}y' is not a parameter"),
    ],
)
def test_a_bad_rules_file_is_one_precise_error(text: str, message: str) -> None:
    with pytest.raises(RulesError) as caught:
        rules(text)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


# --- endpoint templates ----------------------------------------------------------------------


def test_patterns_rename_and_merge_endpoints_and_literal_segments_win() -> None:
    patterns = EndpointPatterns([("/users/{userId}", None), ("/users/me", None), ("/users/{userId}/avatar", ["GET"])])
    assert patterns.retemplate("GET /users/{id}") == "GET /users/{userId}"
    assert patterns.retemplate("GET /users/me") == "GET /users/me"
    assert patterns.retemplate("GET /users/{id}/avatar") == "GET /users/{userId}/avatar"
    assert patterns.retemplate("PUT /users/{id}/avatar") == "PUT /users/{id}/avatar"  # not for PUT
    assert EndpointPatterns().retemplate("GET /users/{id}") == "GET /users/{id}"


def test_openapi_paths_become_endpoint_patterns() -> None:
    document = {"openapi": "3.0.0", "paths": {"/pets/{petId}": {"get": {}, "parameters": []}, "/pets": {"post": {}}}}
    patterns = openapi_patterns(document)
    assert patterns.retemplate("GET /pets/{id}") == "GET /pets/{petId}"
    assert patterns.retemplate("DELETE /pets/{id}") == "DELETE /pets/{id}"
    with pytest.raises(RulesError, match="no `paths` object"):
        openapi_patterns({"swagger": "2.0"})


def test_the_differ_groups_by_the_users_endpoint_patterns() -> None:
    named = rules('endpoints = ["/items/{itemId}"]\n[[rule]]\nendpoint = "GET /items/{itemId}"\npath = "$.t"\nignore = true\n')
    records = [r for n in range(5) for r in exchange(n, baseline2={"v": 1}, candidate={"v": 1, "t": n})]
    report = analyze(records, options=DiffOptions(rules=named))
    assert [s.endpoint for s in report.endpoints] == ["GET /items/{itemId}"]
    assert report.verdict == "same"


# --- properties ------------------------------------------------------------------------------


def deepdiff_paths(left: Any, right: Any) -> set[str]:
    """What deepdiff finds, generalized the way our walker reports it."""
    found = DeepDiff(left, right, view="tree", ignore_type_in_groups=[(int, float)], zip_ordered_iterables=True,
                     threshold_to_diff_deeper=0, ignore_nan_inequality=True)  # fmt: skip
    return {
        "$" + "".join("[*]" if isinstance(step, int) else f".{step}" for step in level.path(output_format="list"))
        for levels in found.values()
        for level in levels
    }


identifier_keys = st.from_regex(r"[a-z]{1,4}", fullmatch=True)
plain_values = st.recursive(
    st.none() | st.integers(-5, 5) | st.text("ab", max_size=2),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(identifier_keys, children, max_size=3),
    max_leaves=10,
)


@settings(max_examples=300)
@given(plain_values, plain_values)
def test_the_walker_finds_a_difference_exactly_where_deepdiff_does(left: Any, right: Any) -> None:
    """Up to our one documented refinement: a reordered array is one difference at the array, not per item."""
    ours = {change.path for change in json_changes(left, right, {})}
    assert bool(ours) == bool(deepdiff_paths(left, right))
    for path in ours:
        assert any(found.startswith(path) or path.startswith(found) for found in deepdiff_paths(left, right))


@given(json_values)
def test_rules_never_invent_a_difference(value: Any) -> None:
    everything = {"$": ValueRule(tolerance=1.0, unordered=True, pattern=re.compile("x"), replacement="y")}
    assert list(json_changes(value, json.loads(json.dumps(value)), everything)) == []


@given(st.lists(json_values, max_size=6), st.randoms(use_true_random=False))
def test_unordered_arrays_equal_any_permutation(items: list[Any], rng: Any) -> None:
    shuffled = list(items)
    rng.shuffle(shuffled)
    assert list(json_changes({"a": items}, {"a": shuffled}, {"$.a": ValueRule(unordered=True)})) == []


@given(
    st.floats(-1e6, 1e6),
    st.floats(0, 10),
    st.floats(-20, 20),
)
def test_a_tolerance_hides_exactly_the_drifts_within_it(base: float, tolerance: float, drift: float) -> None:
    rule = {"$.n": ValueRule(tolerance=tolerance)}
    reported = list(json_changes({"n": base}, {"n": base + drift}, rule))
    assert (reported == []) == (abs((base + drift) - base) <= tolerance)


@given(st.text(max_size=12), st.text(max_size=12))
def test_a_replacement_that_erases_digits_makes_strings_that_differ_only_in_digits_equal(a: str, b: str) -> None:
    rule = EndpointRules(paths={"$.s": ValueRule(pattern=re.compile(r"\d"), replacement="")})
    equal_without_digits = re.sub(r"\d", "", a) == re.sub(r"\d", "", b)
    assert (compare(doc({"s": a}), doc({"s": b}), rule) == []) == equal_without_digits
