"""Replay: drive a corpus through baseline, second baseline and candidate at once."""
