"""The demo's bundled sample corpus, shipped as package data beside the services that made it."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent


def sample_path(name: str = "demo-shop") -> Path:
    return SAMPLES_DIR / f"{name}.jsonl.zst"
