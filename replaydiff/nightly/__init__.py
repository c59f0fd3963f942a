"""Nightly regression runs: a suite of corpora and targets, a history in SQLite, accepted divergences."""
