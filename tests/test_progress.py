"""Progress on long CLI runs when stderr is a log file or a pipe: plain lines every few seconds.

The runs here are real subprocesses with stderr on a pipe (not a terminal), as under cron or
`2>run.log`; `CLUSTERQC_PROGRESS_INTERVAL` shortens the interval so a run of a second or two
shows its lines.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

from clusterqc import progress

ROOT = Path(__file__).resolve().parent.parent
EMBEDDINGS = ROOT / "tests" / "fixtures" / "datacomp_small_sample_tsne.jsonl"


def _run(tmp: Path, *args: str, interval: str | None = "0.05") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "CLUSTERQC_"))}
    env.update(PYTHONPATH=str(ROOT), CLUSTERQC_DB=str(tmp / "p.db"))
    if interval is not None:
        env[progress.ENV_INTERVAL] = interval
    return subprocess.run([sys.executable, "-m", "clusterqc", *args], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL)


def _plain_lines(stderr: str, prefix: str) -> list[str]:
    assert "\r" not in stderr, "carriage returns in a log"
    lines = [line for line in stderr.splitlines() if line.startswith(prefix)]
    assert lines, f"no {prefix!r} progress line in: {stderr!r}"
    return lines


def test_not_a_terminal_gets_whole_lines_while_one_call_blocks() -> None:
    out = io.StringIO()
    with progress.stage("cluster", stream=out, delay=0) as line, progress.ticking(line, every=0.02):
        progress.step(line, "cluster: k-means")
        time.sleep(0.3)  # one long call that cannot update the bar
    lines = out.getvalue().splitlines()
    assert sum(line == "cluster: k-means (00:00 elapsed)" for line in lines) >= 3, lines
    assert out.getvalue().endswith("\n") and "\r" not in out.getvalue()


def test_a_quick_run_prints_no_progress() -> None:
    out = io.StringIO()
    with progress.bar(total=3, desc="propose", stream=out, delay=5) as bar, progress.ticking(bar, every=0.01):
        bar.update(3)
        time.sleep(0.05)
    assert out.getvalue() == ""


def test_cluster_says_which_step_it_is_on(tmp_path: Path) -> None:
    result = _run(tmp_path, "cluster", str(EMBEDDINGS), "--k", "60", "--id-col", "key", "--text-col", "caption",
                  "--emb-col", "clip_tsne", "--out", "c.json")
    assert result.returncode == 0, result.stderr
    lines = _plain_lines(result.stderr, "cluster: ")
    assert any(line.startswith("cluster: k-means, 60 clusters over 5,868 samples of 2 dimensions (") for line in lines)
    assert result.stdout.startswith("clustered 5868 samples")


def test_import_propose_and_evaluate_show_progress_lines(tmp_path: Path) -> None:
    # An interval of 1 ms: on a quiet machine `import --demo` takes only tens of milliseconds,
    # which a 50 ms first line could miss (it did, in CI).
    result = _run(tmp_path, "import", "--demo", interval="0.001")
    assert result.returncode == 0, result.stderr
    assert _plain_lines(result.stderr, "import: ")
    with_labels = [(f"Cluster_{n}", "Acceptable" if n % 3 else "Unacceptable") for n in range(12)]
    script = (
        "from clusterqc.store import Store; from clusterqc.model import Verdict\n"
        "with Store() as s:\n"
        + "".join(f"    s.decide({c!r}, 'ann', Verdict({v!r}))\n" for c, v in with_labels)
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "CLUSTERQC_DB": str(tmp_path / "p.db")})
    result = _run(tmp_path, "evaluate", "--prompt", "seed", "--judge", "offline", interval="0.001")
    assert result.returncode == 0, result.stderr
    assert _plain_lines(result.stderr, "evaluate: ")[-1].startswith("evaluate: 100% 12/12 [")
    result = _run(tmp_path, "propose", "--judge", "offline", interval="0.001")
    assert result.returncode == 0, result.stderr
    assert _plain_lines(result.stderr, "propose: ")[-1].startswith("propose: 100% 48/48 [")


def test_without_the_override_a_short_run_prints_only_its_result(tmp_path: Path) -> None:
    result = _run(tmp_path, "import", "--demo", interval=None)
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "imported 60 clusters from 1 file into dataset demo (0 unchanged, 0 replaced)\n"
