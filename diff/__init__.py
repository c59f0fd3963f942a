"""Verdict: compare what the targets answered, filter noise, report divergences."""

from diff.analysis import analyze
from diff.findings import SCHEMA, DiffOptions, DiffReport
from diff.html import render_html
from diff.junit import render_junit
from diff.latency import LatencyThresholds
from diff.noise import NoiseThresholds
from diff.openapi import load_openapi
from diff.report import render_text
from diff.rules import Rules, RulesError, load_rules, parse_rules

__all__ = [
    "SCHEMA",
    "DiffOptions",
    "DiffReport",
    "LatencyThresholds",
    "NoiseThresholds",
    "Rules",
    "RulesError",
    "analyze",
    "load_openapi",
    "load_rules",
    "parse_rules",
    "render_html",
    "render_junit",
    "render_text",
]
