"""Installing replaydiff adds one import name, `replaydiff`, and a user's own `diff` or `corpora` module keeps working.

The wheel is built the way a user or a package index builds it (`pip wheel --no-deps .`) from a copy of the tracked
files, installed without dependencies into a fresh venv that borrows the third-party packages of this project's venv
(a `.pth` line; that directory's own `.pth` files, among them our editable install's finder, are not processed), and
imported from a working directory holding the user's `diff.py` and `corpora.py`.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.slow  # a wheel build: about ten seconds


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in tracked.decode().split("\0"):
        if name and (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes((ROOT / name).read_bytes())
    out = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", str(source), "-w", str(out)],
                           capture_output=True, text=True, timeout=300)
    if built.returncode != 0 and "setuptools" in built.stderr and "No matching distribution" in built.stderr:
        pytest.skip(f"the build backend could not be installed (no package registry?): {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr
    (found,) = out.glob("replaydiff-*.whl")
    return found


def test_the_wheel_holds_one_top_level_package_and_the_demo_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {"replaydiff", wheel.name.split("-py3")[0] + ".dist-info"}
    top_level = [name for name in names if name.endswith("top_level.txt")]
    assert [zipfile.ZipFile(wheel).read(name).decode().split() for name in top_level] in ([], [["replaydiff"]])
    for package in ("corpora", "recorder", "replayer", "diff"):
        assert f"replaydiff/{package}/__init__.py" in names
    assert "replaydiff/demo/demo-shop.jsonl.zst" in names
    assert "replaydiff/demo/demo-shop.upstream.jsonl.zst" in names  # what `demo --mock` answers from
    assert not any(name.startswith("replaydiff/corpora/samples") for name in names)


def test_a_users_own_diff_and_corpora_modules_do_not_clash(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "env"
    venv.create(env, with_pip=False)
    python = env / "bin" / "python"
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
                                str(wheel)], capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    (Path(site) / "third_party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "work"
    work.mkdir()
    (work / "diff.py").write_text("OWNER = 'user'\n")
    (work / "corpora.py").write_text("OWNER = 'user'\n")
    script = (
        "import diff, corpora, replaydiff, replaydiff.diff.compare, replaydiff.corpora, replaydiff.cli\n"
        "assert diff.OWNER == corpora.OWNER == 'user', (diff, corpora)\n"
        "assert replaydiff.__file__.startswith(%r), replaydiff.__file__\n"
        "from replaydiff.demo.samples import sample_path\n"
        "from replaydiff.corpora import CorpusReader\n"
        "print(CorpusReader(sample_path()).count())\n" % site
    )
    run = subprocess.run([python, "-c", script], cwd=work, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 3000
