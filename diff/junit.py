"""The JUnit XML report: one test case per endpoint, so CI systems list and track endpoints natively.

An endpoint fails when it has a divergence of a kind that fails the run
(`--fail-on`); its failure text carries each divergence with an example
side by side and the title of the finding it belongs to (one cause may
span several endpoints, so several test cases). Divergences of other kinds
go to the test case's `system-out`, visible but not failing, as the exit
code treats them.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Collection

from replaydiff.diff.findings import DiffReport, DivergenceGroup


def render_junit(report: DiffReport, *, fail_on: Collection[str] | None = None) -> str:
    by_endpoint: defaultdict[str, list[DivergenceGroup]] = defaultdict(list)
    for group in report.divergences:
        by_endpoint[group.endpoint].append(group)
    failing = {id(group) for group in report.failing(fail_on)}
    titles = {group.fingerprint: finding.title for finding in report.findings for group in finding.members}
    suite = ET.Element(
        "testsuite",
        name="replaydiff",
        tests=str(len(report.endpoints)),
        failures=str(len({g.endpoint for g in report.failing(fail_on)} | _untested(report, fail_on, fails=True))),
        errors="0",
        skipped=str(len(_untested(report, fail_on, fails=False))),
    )
    for stats in report.endpoints:
        case = ET.SubElement(suite, "testcase", classname="replaydiff.endpoints", name=stats.endpoint)
        ET.SubElement(case, "properties").extend(
            ET.Element("property", name=name, value=value)
            for name, value in (("exchanges", str(stats.exchanges)), ("divergent", str(stats.divergent)),
                                *_fidelity_properties(report, stats.endpoint))
        )
        _untested_case(case, report, stats.endpoint, fail_on)
        groups = by_endpoint.get(stats.endpoint, [])
        if failed := [g for g in groups if id(g) in failing]:
            summary = "; ".join(f"{g.kind} {g.location}".strip() for g in failed)
            failure = ET.SubElement(case, "failure", message=f"{len(failed)} divergent: {summary}", type="divergence")
            failure.text = "\n\n".join(_described(g, titles.get(g.fingerprint)) for g in failed)
        if passed := [g for g in groups if id(g) not in failing]:
            ET.SubElement(case, "system-out").text = "\n\n".join(_described(g, titles.get(g.fingerprint)) for g in passed)
    ET.indent(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def _fidelity_properties(report: DiffReport, endpoint: str) -> list[tuple[str, str]]:
    fidelity = report.fidelity.of(endpoint)
    return [] if fidelity is None or not fidelity.exchanges else [("fidelity", f"{fidelity.share:.4f}")]


def _untested(report: DiffReport, fail_on: Collection[str] | None, *, fails: bool) -> set[str]:
    """Endpoints the baselines could not reproduce: failures when `inconclusive` fails the run, else skipped."""
    if report.inconclusive_fails(fail_on) != fails:
        return set()
    return {e.endpoint for e in report.fidelity.untested}


def _untested_case(case: ET.Element, report: DiffReport, endpoint: str, fail_on: Collection[str] | None) -> None:
    fidelity = report.fidelity.of(endpoint)
    if fidelity is None or not fidelity.untested or case.find("failure") is not None:
        return
    if report.inconclusive_fails(fail_on):
        ET.SubElement(case, "failure", message=f"not tested: {fidelity.reason}", type="inconclusive")
    else:
        ET.SubElement(case, "skipped", message=f"not tested: {fidelity.reason}")


def _described(group: DivergenceGroup, finding: str | None) -> str:
    example = group.examples[0].divergence
    lines = [
        f"{group.kind} {group.location}".strip() + f": {group.count}/{group.total} exchanges",
        *([f"  finding: {finding}"] if finding else []),
        f"  baseline:  {_shown(example.baseline)}",
        f"  candidate: {_shown(example.candidate)}",
    ]
    if group.detail:
        lines.append(f"  {group.detail}")
    if example.exchange_id:
        lines.append(f"  e.g. exchange {example.exchange_id}")
    lines.append(f"  fingerprint {group.fingerprint}")
    return "\n".join(lines)


def _shown(value: object) -> str:
    return "(absent)" if value is None else str(value)
