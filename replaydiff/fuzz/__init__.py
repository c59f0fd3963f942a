"""Property-based fuzz sessions: hypothesis explores around the recorded traffic and shrinks what diverges.

The pipeline, one module each: `infer` (per-endpoint shapes from a corpus),
`strategies` (hypothesis strategies from those shapes), `sender` (one request
to baseline, baseline#2 and candidate at once), `verdict` (the property:
equivalent modulo learned noise and rules), `session` (hypothesis rounds under
a budget), `report`/`curl` (what the user reads), `regressions` (the
regression corpus), `workflow` (all of it, for the CLI and `testing`).
"""
