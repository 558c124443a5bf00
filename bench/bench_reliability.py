"""The reliability figures for bench/RESULTS.md, from the reliability test suite itself.

Usage:
    python bench/bench_reliability.py            # every scenario, slow ones included
    python bench/bench_reliability.py --quick    # skip the @pytest.mark.slow ones

Why run the tests instead of separate benchmark code: the figures must describe exactly what
the suite proves (same scenarios, same seeds, same assertions), so this script runs the
reliability test files through pytest with a small plugin that records each test's outcome
and duration and Hypothesis' count of examples tried, then prints the table. The scenario
sizes (reviewers, decisions, kill trials) are read from the test modules, not repeated here.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
FILES = {
    "concurrency": "test_reliability_concurrency.py",
    "crash": "test_reliability_crash.py",
    "faults": "test_reliability_faults.py",
    "fuzz": "test_fuzz_parser.py",
    "hostile": "test_hostile_data.py",
    "backup": "test_backup.py",
    "security": "test_security.py",
}
_PASSING = re.compile(r"- (\d+) passing, (\d+) failing")


@dataclass
class Outcomes:
    """What the plugin saw, per test file."""

    passed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    failed: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    examples: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def pytest_runtest_logreport(self, report: Any) -> None:
        area = _area(report.nodeid)
        self.seconds[area] += report.duration
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            if report.outcome == "passed":
                self.passed[area].append(report.nodeid)
            elif report.outcome == "failed":
                self.failed[area].append(report.nodeid)

    @pytest.hookimpl(hookwrapper=True, trylast=True)
    def pytest_runtest_makereport(self, item: Any, call: Any) -> Any:
        yield
        stats = getattr(item, "hypothesis_statistics", None)
        if call.when == "teardown" and stats:
            self.examples[_area(item.nodeid)] += sum(int(a) + int(b) for a, b in _PASSING.findall(stats))


def _area(nodeid: str) -> str:
    name = nodeid.split("::")[0].rsplit("/", 1)[-1]
    return next((area for area, file in FILES.items() if file == name), name)


def run(quick: bool) -> tuple[Outcomes, float]:
    outcomes = Outcomes()
    args = [str(TESTS / f) for f in FILES.values()]
    args += ["-q", "-p", "no:cacheprovider", "--hypothesis-show-statistics", "-o", "console_output_style=classic"]
    if quick:
        args += ["-m", "not slow"]
    started = time.perf_counter()
    pytest.main(args, plugins=[outcomes])
    return outcomes, time.perf_counter() - started


def table(o: Outcomes, quick: bool) -> str:
    sys.path.insert(0, str(TESTS))
    import test_reliability_concurrency as conc
    import test_reliability_crash as crash

    def result(area: str) -> str:
        p, f = len(o.passed[area]), len(o.failed[area])
        return "all passed" if f == 0 and p else f"{f} of {p + f} FAILED: " + ", ".join(
            n.split("::", 1)[1] for n in o.failed[area]
        )

    crash_tests = len(o.passed["crash"]) + len(o.failed["crash"])
    rows = [
        ("Concurrent writers", f"{conc.REVIEWERS} processes x {conc.PER_REVIEWER} decisions + a proposal batch "
         f"({conc.CLUSTERS} clusters) + {conc.EXPORTS} exports, one SQLite file",
         f"{conc.REVIEWERS * conc.PER_REVIEWER:,} decisions, each exactly once" if o.passed["concurrency"] else "-",
         result("concurrency")),
        ("Crashes (SIGKILL)", "decision writes, `clusterqc import`, `clusterqc propose` (seeded random moments)",
         f"{crash.TRIALS * crash_tests} trials survived" if not o.failed["crash"] else "-", result("crash")),
        ("Flaky endpoints", "outage, long outage, stalls (2), cut-off bodies, context length, RPM and TPM limits",
         f"{len(o.passed['faults'])} of {len(o.passed['faults']) + len(o.failed['faults'])} scenarios passed",
         result("faults")),
        ("Fuzzing (hypothesis)", "parser answers, JSON answers; caption text through JSON/JSONL/CSV/Parquet",
         f"{o.examples['fuzz'] + o.examples['hostile']:,} examples tried", result("fuzz")),
        ("Hostile data", "1 MB captions, NUL, invalid UTF-8, 100,000-deep JSON, 10,000 samples, 100,000 clusters",
         f"{len(o.passed['hostile'])} of {len(o.passed['hostile']) + len(o.failed['hostile'])} cases passed",
         result("hostile")),
        ("Backups", "`clusterqc backup` snapshots while another process writes",
         f"{len(o.passed['backup'])} of {len(o.passed['backup']) + len(o.failed['backup'])} tests passed",
         result("backup")),
        ("Secrets and access", "planted key vs DB+WAL, logs, exports, messages, page; 127.0.0.1 bind; XSRF",
         f"{len(o.passed['security'])} of {len(o.passed['security']) + len(o.failed['security'])} tests passed",
         result("security")),
    ]
    lost = sum(len(v) for v in o.failed.values())
    lines = ["| promise | scenario | figure | result |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    lines.append("")
    lines.append(f"Nothing lost: {'yes' if lost == 0 else f'NO - {lost} test(s) failed'}"
                 + (" (quick run: slow scenarios skipped)" if quick else ""))
    lines.append("Seconds per area: " + ", ".join(f"{k} {o.seconds[k]:.0f}" for k in FILES))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the slow scenarios")
    args = parser.parse_args()
    outcomes, elapsed = run(args.quick)
    print()
    print(table(outcomes, args.quick))
    print(f"Total wall time: {elapsed:.0f} s")


if __name__ == "__main__":
    main()
