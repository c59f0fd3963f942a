"""Verdict: compare what the targets answered, filter noise, report divergences."""
