"""Run the reliability suite and write its figures to `RELIABILITY.md`.

    .venv/bin/python -m tests.reliability_report

It runs `pytest tests/test_reliability.py tests/test_trust.py` (as CI does, both crash loops
included) in a child process, reads the outcome of every test from a JUnit XML report and the
figure lines the tests print (`crash loop:`, `fault matrix:`, `full disk:`, `flood:`, `load:`,
`trust:`), and writes the table: kills survived, fault scenarios passed, bad inputs tried,
duplicate submits found, and the trust scenarios' figures. Nothing is
hard-coded: a figure that no test printed is reported as missing.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET = REPO / "RELIABILITY.md"
SUITE = "tests/test_reliability.py tests/test_trust.py tests/test_entry_point_checks.py"
FIGURE_PREFIXES = (
    "crash loop:", "fault matrix:", "full disk:", "flood:", "load:", "trust:",
    "entry-point checks:",
)  # fmt: skip
#: Test names (before any `[param]`) of the matrix of mistakes over every entry point.
ENTRY_POINT_TESTS = ("test_a_client_mistake", "test_a_command_line_mistake")
#: Test names (before any `[param]`) that feed bad input through the Python API.
BAD_INPUT_TESTS = (
    "test_bad_input_is_refused_before_any_call",
    "test_dates_of_the_wrong_type_are_refused_clearly",
    "test_an_output_folder_that_cannot_be_written_is_refused",
    "test_an_unknown_account_type_is_refused_when_configuring",
    "test_an_unknown_report_is_refused_with_at_most_one_call",
    "test_without_the_catalog_an_unknown_report_costs_one_submit",
    "test_a_corrupt_or_newer_ledger_is_refused_and_left_alone",
    "test_a_newer_ledger_is_not_modified_at_all",
)
GROUPS = {
    "crash loop": ("test_crash_loop",),
    "fault matrix": ("test_fault_matrix", "test_disk_that_fills", "test_after_a_full_disk"),
    "bad input": BAD_INPUT_TESTS,
    "security": (
        "test_a_full_run_leaks",
        "test_tls_verification",
        "test_postback_receiver",
        "test_a_flood_of_forged",
    ),
    "load": ("test_two_thousand_chunks",),
    "trust under mistakes": (
        "test_wrong_token",
        "test_a_port_nobody",
        "test_a_server_stopped",
        "test_a_daily_429",
        "test_a_non_utc",
        "test_failed_jobs_end",
        "test_deferred_chunks",
        "test_a_job_the_server",
        "test_a_job_in_flight",
        "test_an_outage",
        "test_jobs_in_flight",
        "test_a_wait_for",
        "test_one_export_whose_job",
        "test_quota_stores",
    ),
    "entry points": (
        *ENTRY_POINT_TESTS,
        "test_a_missing_folder",
        "test_the_command_line_makes",
        "test_the_client_matrix",
        "test_the_command_line_matrix",
    ),
}


def run_suite(junit: Path) -> tuple[int, str, float]:
    env = dict(os.environ)
    started = datetime.now(UTC)
    done = subprocess.run(
        # `-m ""`: the slow tests too (the crash loops), which pyproject's addopts leaves out.
        [sys.executable, "-m", "pytest", *SUITE.split(), "-q", "-s", "-rA", "-m", "",
         "-p", "no:cacheprovider", f"--junitxml={junit}"],
        cwd=REPO, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode, done.stdout + done.stderr, (datetime.now(UTC) - started).total_seconds()


def outcomes(junit: Path) -> dict[str, str]:
    """Test id -> passed, failed, error or skipped."""
    found: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                outcome = "failed" if child.tag == "error" else child.tag
        found[case.get("name", "?")] = outcome
    return found


def group_of(test: str) -> str:
    base = test.partition("[")[0]
    for group, prefixes in GROUPS.items():
        if any(base.startswith(prefix) for prefix in prefixes):
            return group
    return "other"


def figures(output: str) -> list[str]:
    return [
        line.strip() for line in output.splitlines() if line.strip().startswith(FIGURE_PREFIXES)
    ]


def duplicates(lines: list[str]) -> int | None:
    """Jobs created beyond one per chunk, from the crash and fault lines (None if none)."""
    total: int | None = None
    for line in lines:
        match = re.search(r"jobs created (\d+) for (\d+) chunks", line)
        if match:
            total = (total or 0) + max(0, int(match.group(1)) - int(match.group(2)))
    return total


def report(code: int, seconds: float, results: dict[str, str], lines: list[str]) -> str:
    by_group: dict[str, Counter[str]] = {}
    for test, outcome in results.items():
        by_group.setdefault(group_of(test), Counter())[outcome] += 1
    kills = sum(
        int(m.group(1)) for m in (re.search(r"(\d+) kills survived", x) for x in lines) if m
    )
    faults = [x for x in results if x.startswith("test_fault_matrix")]
    faults_passed = sum(1 for x in faults if results[x] == "passed")
    bad = [x for x in results if x.partition("[")[0] in BAD_INPUT_TESTS]
    bad_passed = sum(1 for x in bad if results[x] == "passed")
    entry = [x for x in results if x.startswith(ENTRY_POINT_TESTS)]
    entry_passed = sum(1 for x in entry if results[x] == "passed")
    dupes = duplicates(lines)
    command = ".venv/bin/python -m tests.reliability_report"
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    out = [
        "# Reliability figures",
        "",
        f"Measured {when} on {os.cpu_count()} CPUs (`uname -m` {platform.machine()}), Python "
        f"{platform.python_version()}; the suite took {seconds:.0f} s and exited {code}.",
        "",
        "```sh",
        command,
        "```",
        "",
        f"It runs `pytest {SUITE}`; the tests say what must happen (see the module docstring). "
        "CI runs the same tests through the README's test command, both crash loops (5 kills "
        "on 60 chunks, 20 kills on 730 chunks) included.",
        "",
        "| Figure | Value |",
        "|---|---:|",
        f"| SIGKILLs survived (every run then completed, files intact) | {kills} |",
        f"| Fault scenarios passed | {faults_passed} of {len(faults)} |",
        f"| Bad inputs tried through the Python API (each a clear error, nothing half-written; "
        f"all before any ReportExport call: an unknown report id costs one catalog call, no "
        f"quota; one probe submit only with the catalog check off) | "
        f"{bad_passed} of {len(bad)} passed |",
        "| Mistakes tried at every entry point, `Client` and command line (the same error class, "
        "zero ReportExport calls, nothing written; tests/test_entry_point_checks.py) | "
        f"{entry_passed} of {len(entry)} passed |",
        "| Duplicate submits found (jobs beyond one per chunk) | "
        + ("missing" if dupes is None else str(dupes))
        + " |",
        "",
        "| Group | Passed | Failed | Skipped |",
        "|---|---:|---:|---:|",
    ]
    for group in (*GROUPS, "other"):
        counts = by_group.get(group)
        if counts:
            out.append(
                f"| {group} | {counts['passed']} | {counts['failed']} | {counts['skipped']} |"
            )
    out += ["", "What the tests printed:", ""]
    out += [f"- {line}" for line in lines] or ["- (nothing: see the exit code)"]
    not_passed = sorted(t for t, o in results.items() if o != "passed")
    if not_passed:
        out += ["", "Not passed:", ""] + [f"- `{t}`: {results[t]}" for t in not_passed]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        junit = Path(scratch) / "junit.xml"
        code, output, seconds = run_suite(junit)
        if not junit.exists():
            sys.stderr.write(output[-4000:])
            return 1
        results = outcomes(junit)
    TARGET.write_text(report(code, seconds, results, figures(output)), encoding="utf-8")
    print(f"wrote {TARGET} (pytest exited {code})")
    return code


if __name__ == "__main__":
    sys.exit(main())
