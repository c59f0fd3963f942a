"""Verdict: compare what the targets answered, filter noise, report divergences."""

from replaydiff.diff.analysis import analyze, analyze_results
from replaydiff.diff.findings import SCHEMA, DiffOptions, DiffReport
from replaydiff.diff.html import render_html
from replaydiff.diff.junit import render_junit
from replaydiff.diff.latency import LatencyThresholds
from replaydiff.diff.noise import NoiseThresholds
from replaydiff.diff.openapi import load_openapi
from replaydiff.diff.report import render_text
from replaydiff.diff.rules import Rules, RulesError, load_rules, parse_rules

__all__ = [
    "SCHEMA",
    "DiffOptions",
    "DiffReport",
    "LatencyThresholds",
    "NoiseThresholds",
    "Rules",
    "RulesError",
    "analyze",
    "analyze_results",
    "load_openapi",
    "load_rules",
    "parse_rules",
    "render_html",
    "render_junit",
    "render_text",
]
