"""Capture: turn live or recorded HTTP traffic into sanitized corpora."""
