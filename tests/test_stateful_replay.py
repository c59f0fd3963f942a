"""A/A replay of a real stateful service (Kinto from PyPI) recorded through `replaydiff record`.

Fresh processes make their own ids, collection names, ETags and page tokens: the replay reproduces the
recorded statuses only if every client stays one session and carries what each target answered. Bounded:
3 clients x about 40 requests; `bench/stateful_replay.py` runs the full 10 x 80.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apps import AppUnavailable
from tests.kinto_app import kinto_command, kinto_server, record, replay_aa


@pytest.fixture(scope="module")
def kinto() -> None:
    try:
        kinto_command()
    except AppUnavailable as exc:
        pytest.skip(f"Kinto could not be installed (no package registry?): {exc}")


@pytest.mark.slow
def test_a_real_stateful_service_replays_a_a_with_the_recorded_statuses(kinto: None, tmp_path: Path) -> None:
    with kinto_server(tmp_path / "k0") as upstream:
        corpus = record(tmp_path, upstream, clients=3, records=6)
    result = replay_aa(tmp_path, corpus)
    assert result.sessions == 3, "one session per client, whatever its connections"
    for target in ("baseline", "baseline2", "candidate"):
        assert result.share(target) >= 0.99, (target, result.mismatches.most_common(5))
    # Latency is left out: on a shared 2-core machine one of four busy processes is sometimes slower.
    assert result.divergences == 0, "no status, header, body or error divergence in an A/A replay"
    assert result.endpoints <= 8, "server-made names are ids: one endpoint per route, not per collection"
    baseline = [by_target["baseline"] for by_target in result.carried.values() if "baseline" in by_target]
    assert sum(count["carried"] for count in baseline) > result.exchanges  # ids, names, ETags, page tokens
    assert sum(count["not_found"] for count in baseline) == 0
    assert result.reported_carried == sum(count["carried"] for count in baseline), "the report says what was carried"

    plain = replay_aa(tmp_path / "plain", corpus, extra=("--no-correlate",))
    assert plain.share() < 0.2, "without carrying the targets' own values the session breaks at once"
    assert not plain.carried
    assert plain.verdict != "same", "a broken session is never a green verdict"
