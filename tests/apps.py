"""Third-party applications from the package registry, each release installed once into a venv of its own.

The venvs live outside the repository, under `~/.cache/replaydiff-apps` (or
`$REPLAYDIFF_APPS`), and are reused by every later test and benchmark run: an
install costs 5-30 s once. Two test processes may ask for the same release at
once, so an install holds a file lock; a marker written last tells a complete
install from one that was interrupted. Without a registry, `AppUnavailable`
says why, and a test skips with that reason.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

APPS = Path(os.environ.get("REPLAYDIFF_APPS", Path.home() / ".cache" / "replaydiff-apps"))


class AppUnavailable(Exception):
    """The application could not be installed (no package registry): a test skips with this reason."""


def installed(package: str, version: str, executable: str | None = None) -> Path:
    """The path of `executable` (the package's name by default) in the venv of `package==version`."""
    venv = APPS / f"{package}-{version}"
    path, complete = venv / "bin" / (executable or package), venv / ".replaydiff-complete"
    if complete.exists():
        return path
    if path.exists() and _runs(path):  # installed before the marker existed: kept, and marked
        complete.touch()
        return path
    APPS.mkdir(parents=True, exist_ok=True)
    with open(APPS / f".{package}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if complete.exists():
            return path
        shutil.rmtree(venv, ignore_errors=True)  # a venv's scripts name their interpreter by path: built in place
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", f"{package}=={version}"],
        ]
        for step in steps:
            try:
                result = subprocess.run(step, capture_output=True, text=True, timeout=600)
            except subprocess.TimeoutExpired:
                result = None
            if result is None or result.returncode != 0:
                shutil.rmtree(venv, ignore_errors=True)
                reason = result.stderr.strip()[-300:] if result is not None else "timed out"
                raise AppUnavailable(f"cannot install {package}=={version}: {reason}")
        complete.touch()
    return path


def _runs(executable: Path) -> bool:
    try:
        return subprocess.run([str(executable), "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False
