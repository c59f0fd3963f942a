"""The JUnit XML report as a CI system parses it: one test case per endpoint, failures with example diffs."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from replaydiff.diff.junit import render_junit
from tests.test_diff import planted_report


def test_one_test_case_per_endpoint_and_a_failure_per_divergent_endpoint() -> None:
    suite = ET.fromstring(render_junit(planted_report()))
    assert (suite.tag, suite.get("tests"), suite.get("failures")) == ("testsuite", "2", "2")
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert list(cases) == ["GET /fast", "GET /slow"]
    failure = cases["GET /fast"].find("failure")
    assert failure is not None and failure.text is not None
    assert failure.get("message") == "1 divergent: body $.price"
    assert "baseline:  9" in failure.text and 'candidate: "[9]"' in failure.text
    assert "fingerprint GET /fast|body|$.price" in failure.text
    assert "finding: `$.price` changed type (number → string) on GET /fast" in failure.text
    slow = cases["GET /slow"].find("failure")
    assert slow is not None and "latency p50" in (slow.get("message") or "")


def test_kinds_outside_fail_on_are_shown_but_do_not_fail() -> None:
    suite = ET.fromstring(render_junit(planted_report(), fail_on={"latency"}))
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    assert suite.get("failures") == "1"
    assert cases["GET /fast"].find("failure") is None
    out = cases["GET /fast"].find("system-out")
    assert out is not None and "body $.price" in (out.text or "")
    assert cases["GET /slow"].find("failure") is not None
