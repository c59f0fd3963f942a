"""The suite file: which corpora to replay against which targets, with which options, every night.

    accepted = "accepted-divergences.toml"   # optional: intended changes, kept in the repository

    [replay]                      # options of `replaydiff replay`, for every entry
    concurrency = 8
    limit = 2000

    [diff]                        # options of `replaydiff diff`, for every entry
    rules = "rules.toml"
    fail-on = ["status", "header", "body", "error"]

    [targets.shop]                # a baseline and a candidate, and how requests reach them
    baseline = "http://shop.staging:8000"
    candidate = "http://shop-candidate.staging:8000"
    routing-key = "nightly"       # also: baseline2, baseline-header, candidate-header, host-header, allow-host
    header = "Authorization: Bearer ${SHOP_NIGHTLY_TOKEN}"   # secrets only from the environment
    identities = "accounts.toml"  # test accounts (their passwords as ${ENV} too); also jwt-key = "sandbox.pem"

    [[entry]]
    corpus = "corpora/*.jsonl.zst"   # a file or a glob, or a list of them; relative to this file
    target = "shop"
    replay = { limit = 500 }         # optional: overrides [replay] for this entry (also `diff = {…}`)
    minimize = 20000                 # optional: replay `corpus minimize --max-exchanges 20000` of the corpus

Every corpus file an entry matches becomes one entry of the run, named
`TARGET/CORPUS`: the name is the key of its history, so it must be stable.
The whole suite is validated before anything is replayed: a mistake is one
line naming the file and the key, and no target has been touched.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from replaydiff.commands.diffing import DiffSettings
from replaydiff.errors import UserError
from replaydiff.corpora.tomlfile import read_toml
from replaydiff.nightly.accepted import load_accepted
from replaydiff.nightly.options import (
    DIFF_KEYS,
    REPLAY_KEYS,
    TARGET_KEYS,
    SuiteError,
    checked,
    diff_settings,
    replay_job,
)
from replaydiff.replayer.accounts import ENV_REFERENCE, CredentialsError, expand_environment
from replaydiff.replaying import ReplayJob

_TOP_KEYS = frozenset({"accepted", "replay", "diff", "targets", "entry"})
_ENTRY_KEYS = frozenset({"corpus", "target", "replay", "diff", "minimize"})
_CORPUS_SUFFIXES = (".zst", ".jsonl")


@dataclass(frozen=True)
class Entry:
    name: str
    """`TARGET/CORPUS`: stable across nights, the key of the entry's history."""
    corpus: Path
    target: str
    job: ReplayJob
    """Validated; its `output` is a placeholder until the run places it in its directory."""
    diff: DiffSettings
    minimize: int | None = None
    """Curate on the fly: replay the corpus minimized to at most this many exchanges (`corpus minimize`)."""

    @property
    def slug(self) -> str:
        """The name as a file name."""
        return self.name.replace("/", "__")


@dataclass(frozen=True)
class Suite:
    path: Path
    entries: list[Entry]
    accepted: dict[str, str]
    """From the suite's accepted-divergences file: fingerprint → reason."""


def load_suite(path: Path) -> Suite:
    document = checked(read_toml(path, SuiteError, "suite"), _TOP_KEYS, str(path))
    base = path.parent
    targets = _targets(document.get("targets", {}), path)
    defaults = (
        checked(document.get("replay", {}), REPLAY_KEYS, f"{path}: [replay]"),
        checked(document.get("diff", {}), DIFF_KEYS, f"{path}: [diff]"),
    )
    tables = document.get("entry", [])
    if not isinstance(tables, list) or not tables:
        raise SuiteError(f"{path}: no [[entry]]: a suite lists at least one corpus and target to replay")
    entries: list[Entry] = []
    for number, table in enumerate(tables, 1):
        for entry in _expanded(table, f"{path}: entry {number}", base, targets, defaults):
            if any(entry.name == other.name for other in entries):
                raise SuiteError(
                    f"{path}: entry {number}: a second entry named {entry.name!r}; corpus file names must differ "
                    "per target"
                )
            entries.append(entry)
    accepted = document.get("accepted")
    if accepted is not None and not isinstance(accepted, str):
        raise SuiteError(f"{path}: `accepted` must be the path of an accepted-divergences file, got {accepted!r}")
    try:
        return Suite(path, entries, load_accepted(base / accepted) if accepted else {})
    except UserError as exc:
        raise SuiteError(f"{path}: `accepted`: {exc}") from None


def _expanded(
    table: Any, where: str, base: Path, targets: dict[str, dict[str, Any]], defaults: tuple[dict[str, Any], ...]
) -> list[Entry]:
    """One `[[entry]]`: an entry per corpus file it matches, with the suite's options under its own."""
    checked(table, _ENTRY_KEYS, where)
    target = _target_name(table, targets, where)
    replay_defaults, diff_defaults = defaults
    replay = {**replay_defaults, **checked(table.get("replay", {}), REPLAY_KEYS, f"{where} replay"), **targets[target]}
    diff = {**diff_defaults, **checked(table.get("diff", {}), DIFF_KEYS, f"{where} diff")}
    settings = diff_settings(diff, base=base, where=where)
    minimize = table.get("minimize")
    if minimize is not None and (not isinstance(minimize, int) or isinstance(minimize, bool) or minimize < 1):
        raise SuiteError(f"{where}: `minimize` must be a positive number of exchanges, got {minimize!r}")
    entries = []
    for corpus in _corpora(table, base, where):
        name = f"{target}/{_stem(corpus)}"
        job = replay_job(corpus, Path(f"{name}.results.jsonl.zst"), replay, base=base, where=where)
        # the diff's resends and reflection trust https targets as the replay does (`ca-cert`, `insecure`)
        entries.append(Entry(name, corpus, target, job, replace(settings, tls=job.options.tls), minimize))
    return entries


def _targets(tables: Any, path: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(tables, dict):
        raise SuiteError(f"{path}: `targets` must be tables, one [targets.NAME] per baseline and candidate pair")
    targets = {name: checked(table, TARGET_KEYS, f"{path}: [targets.{name}]") for name, table in tables.items()}
    for name, table in targets.items():
        for key in ("baseline", "candidate"):
            if key not in table:
                raise SuiteError(f"{path}: [targets.{name}]: `{key}` is missing (the URL of the {key})")
        if "header" in table:
            table["header"] = _secret_headers(table["header"], f"{path}: [targets.{name}] header")
    return targets


def _secret_headers(value: Any, where: str) -> list[str]:
    """`header` values hold credentials: the suite file names environment variables, never the secrets."""
    headers = value if isinstance(value, list) else [value]
    if not all(isinstance(header, str) for header in headers):
        raise SuiteError(f"{where}: must be 'Name: value' or a list of them")
    for header in headers:
        if not ENV_REFERENCE.search(header):
            raise SuiteError(
                f"{where}: {header.partition(':')[0]!r} has no ${{VARIABLE}}; a suite file holds no secret: write "
                "e.g. \"Authorization: Bearer ${SHOP_TOKEN}\" and set SHOP_TOKEN in the environment"
            )
    try:
        return [str(expand_environment(header, where)) for header in headers]
    except CredentialsError as exc:
        raise SuiteError(str(exc)) from None


def _target_name(table: dict[str, Any], targets: dict[str, Any], where: str) -> str:
    name = table.get("target")
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none: add a [targets.NAME] table"
        raise SuiteError(f"{where}: `target` {name!r} is not one of the suite's targets ({known})")
    return str(name)


def _corpora(table: dict[str, Any], base: Path, where: str) -> list[Path]:
    patterns = table.get("corpus")
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if not patterns or not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise SuiteError(f"{where}: `corpus` must be a file or glob, or a list of them, got {table.get('corpus')!r}")
    found: list[Path] = []
    for pattern in patterns:
        matched = sorted(Path(match) for match in glob.glob(str(base / pattern), recursive=True))
        if not matched:
            raise SuiteError(f"{where}: `corpus` {pattern!r} matches no file in {base}")
        found += [corpus for corpus in matched if corpus not in found]
    return found


def _stem(corpus: Path) -> str:
    name = corpus.name
    for suffix in _CORPUS_SUFFIXES:
        name = name.removesuffix(suffix)
    return name
