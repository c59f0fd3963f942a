"""The HTML report: self-contained, escaped, with a plot per endpoint, and rendered by a real headless browser."""

from __future__ import annotations

import re
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

import pytest

from replaydiff.diff import analyze
from replaydiff.diff.html import render_html
from tests.test_diff import doc, planted_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed: run `make chromium` (Debian package)"
)


def test_the_report_needs_no_network_and_no_script() -> None:
    html = render_html(planted_report())
    assert "<script" not in html.lower()
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", html, re.IGNORECASE)
    assert html.count("<svg") == 2  # one latency plot per endpoint
    assert "Suppressed as noise" in html and "x-request-id" in html


def test_values_from_the_replay_are_escaped() -> None:
    hostile = "<script>alert(1)</script>"
    records = [
        r
        for n in range(5)
        for r in (
            doc({"v": 1}, "baseline", exchange=f"e{n}"),
            doc({"v": 1}, "baseline2", exchange=f"e{n}"),
            doc({"v": hostile}, "candidate", exchange=f"e{n}"),
        )
    ]
    html = render_html(analyze(records))
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip


@needs_chromium
def test_a_real_browser_renders_the_report(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(planted_report()), encoding="utf-8")
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    assert "DIVERGENT" in dom.stdout and dom.stdout.count("<polyline") == 6  # 2 plots × 3 targets
    screenshot = tmp_path / "report.png"
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1280,2000", page.as_uri())
    assert shot.returncode == 0, shot.stderr
    header = screenshot.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", header[16:24]) == (1280, 2000)
    assert screenshot.stat().st_size > 20_000  # a blank page compresses to a few KB


@needs_chromium
def test_a_real_browser_renders_the_findings_first(tmp_path: Path) -> None:
    from tests.test_findings import redesign

    report = analyze(redesign())
    page = tmp_path / "findings.html"
    page.write_text(render_html(report), encoding="utf-8")
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    text = dom.stdout
    assert text.index("Findings") < text.index("Endpoints") < text.index("Latency distributions")
    assert "JSON lost 4 keys, gained 2 keys and retyped 1 value on 4 endpoints" in text
    assert text.count("<details class=\"finding") == len(report.findings) == 4
    screenshot = tmp_path / "findings.png"
    shot = chromium(f"--screenshot={screenshot}", "--window-size=1280,1600", page.as_uri())
    assert shot.returncode == 0, shot.stderr
    assert screenshot.stat().st_size > 20_000
