"""JUnit XML for CI servers: one test case per model@target, failing on its regressions."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

from ran_edge.atomic import write_atomic
from ran_edge.regress.compare import Delta


def write_junit(path: Path, deltas: list[Delta]) -> None:
    by_entry: dict[str, list[Delta]] = defaultdict(list)
    for d in deltas:
        by_entry[d.entry].append(d)
    failures = sum(any(d.regression for d in ds) for ds in by_entry.values())
    suite = ET.Element(
        "testsuite", name="ran-edge regress", tests=str(len(by_entry)), failures=str(failures)
    )
    for entry, ds in sorted(by_entry.items()):
        case = ET.SubElement(suite, "testcase", classname="ran-edge.vela", name=entry)
        worse = [d for d in ds if d.regression]
        if worse:
            failure = ET.SubElement(
                case,
                "failure",
                message=", ".join(f"{d.metric} {d.change_pct:+.2f}%" for d in worse),
            )
            failure.text = "\n".join(
                f"{d.metric}: {d.baseline} -> {d.current} ({d.change_pct:+.2f}%, tolerance {d.tolerance_pct}%)"
                for d in worse
            )
        elif all(d.verdict == "missing" for d in ds):
            ET.SubElement(case, "skipped", message="in the baseline but not measured")
    ET.indent(suite)
    write_atomic(path, ET.tostring(suite, encoding="unicode").encode() + b"\n")
