"""Corpus curation: turn a day of recorded traffic into a small nightly corpus that still covers it.

One module per job: `shapes` (what a request or response looks like), `coverage` (the items a curated corpus
is measured against), `stats`, `sample`, `dedup`, `minimize`, `reshape` (merge, split, filter), and `streams`
(the reading and writing they share). Every job streams the corpus; what it keeps in memory grows with the
number of sessions or distinct requests, never with the number or size of exchanges.
"""
