"""Verdict: compare what the targets answered, filter noise, report divergences."""

from diff.analysis import analyze
from diff.findings import SCHEMA, DiffOptions, DiffReport
from diff.latency import LatencyThresholds
from diff.noise import NoiseThresholds
from diff.report import render_text

__all__ = ["SCHEMA", "DiffOptions", "DiffReport", "LatencyThresholds", "NoiseThresholds", "analyze", "render_text"]
