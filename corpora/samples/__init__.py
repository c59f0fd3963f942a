"""Bundled sample corpora, shipped as package data."""

from pathlib import Path

SAMPLES_DIR = Path(__file__).parent


def sample_path(name: str) -> Path:
    return SAMPLES_DIR / f"{name}.jsonl.zst"
