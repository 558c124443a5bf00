"""The README's console examples, run as written and compared with the output it shows.

How to write a checked block (the same rules are in README.md, "Layout"):

- Fence it as ```console. Only `console` blocks are run; ```bash, ```text, ```python and
  the rest are prose for people and are never executed.
- A line starting with `$ ` is a command, run by bash in the block's directory; every line
  after it, up to the next `$ ` line, is the output it must print (stdout and stderr
  together, in order). A command with nothing after it must print nothing.
- `...` in an expected line matches any run of characters on that line (times, durations,
  temporary paths, file sizes). A line that is only `...` matches any number of lines.
  Nothing else is masked: every other character must be exactly what the command prints.
- Each block starts in a fresh temporary directory holding copies of `examples/` and
  `data/` (and `tests/` linked, for generators such as `tests/evidence_pool.py`), with an empty database (`CLUSTERQC_DB=clusterqc.db` there), no endpoint settings
  and no network. Progress lines are off (`CLUSTERQC_PROGRESS_INTERVAL=3600`), so a slow
  machine prints what a fast one does. `clusterqc` and `python` on PATH are this checkout's (`python -m
  clusterqc`). To continue where the previous block stopped (same directory, same
  exported variables), put `<!-- readme-test: continue -->` on the line before the fence.
- Exit statuses are not compared; the output says what happened (`error: ...`).

A block that needs the network or an API key cannot be checked: write it as ```bash.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONTINUE = "<!-- readme-test: continue -->"
WILDCARD = "..."
COPIED = ("examples", "data")
MARK = "\x1e@@readme-test {}@@\x1e"


@dataclass
class Command:
    line: int  # 1-based line of the `$ ` line in README.md
    command: str
    expected: list[str] = field(default_factory=list)


@dataclass
class Block:
    line: int
    continues: bool
    commands: list[Command] = field(default_factory=list)


def console_blocks(text: str) -> list[Block]:
    """Every ```console block of `text`, split into commands and their expected output."""
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        fence = lines[i].strip()
        if not fence.startswith("```"):
            i += 1
            continue
        lang = fence[3:].strip().split()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        if lang[:1] == ["console"]:
            continues = i > 0 and lines[i - 1].strip() == CONTINUE
            block = Block(i + 1, continues)
            for n in range(i + 1, end):
                if lines[n].startswith("$ "):
                    block.commands.append(Command(n + 1, lines[n][2:]))
                elif block.commands:
                    block.commands[-1].expected.append(lines[n])
                elif lines[n].strip():
                    raise AssertionError(f"README.md line {n + 1}: console output before any `$ ` command")
            blocks.append(block)
        i = end + 1
    return blocks


def chains(blocks: list[Block]) -> list[list[Block]]:
    """Blocks grouped into runs that share a directory (a block marked `continue` joins the one before)."""
    out: list[list[Block]] = []
    for b in blocks:
        if b.continues and out:
            out[-1].append(b)
        else:
            out.append([b])
    return out


def _pattern(line: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in line.split(WILDCARD)) + r"\Z", re.DOTALL)


def matches(expected: list[str], actual: list[str]) -> bool:
    """Whether `actual` lines fit `expected`, where `...` is a wildcard (see the module docstring)."""
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head.strip() == WILDCARD:
        return any(matches(rest, actual[k:]) for k in range(len(actual) + 1))
    return bool(actual) and bool(_pattern(head.rstrip()).match(actual[0].rstrip())) and matches(rest, actual[1:])


def _bin_dir(tmp: Path) -> Path:
    """`clusterqc` and `python` that run this checkout with the test's interpreter."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    for name, target in (("clusterqc", f'"{sys.executable}" -m clusterqc'), ("python", f'"{sys.executable}"')):
        script = bin_dir / name
        script.write_text(f'#!/bin/sh\nexec {target} "$@"\n')
        script.chmod(0o755)
    return bin_dir


def _environment(work: Path, bin_dir: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("OPENAI_", "CLUSTERQC_", "PYTHON")) and k not in ("COLUMNS", "LINES")}
    return {
        **keep,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "CLUSTERQC_DB": "clusterqc.db",  # in the block's directory: what a user gets by default
        "CLUSTERQC_DEMO": "0",
        "CLUSTERQC_PROGRESS_INTERVAL": "3600",  # a slow machine's progress lines are not the README's output
        "NO_PROXY": "*",
        "LC_ALL": "C.UTF-8",
        "TZ": "UTC",
    }


def run_chain(chain: list[Block], work: Path, bin_dir: Path) -> list[tuple[Command, list[str]]]:
    """Run a chain's commands in one bash process, so `export` and `cd` carry on as in a terminal."""
    commands = [c for b in chain for c in b.commands]
    script = "exec 2>&1\n" + "".join(f"printf '%s\\n' '{MARK.format(n)}'\n{c.command}\n" for n, c in enumerate(commands))
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=_environment(work, bin_dir),
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    out = proc.stdout
    results = []
    for n, c in enumerate(commands):
        start = out.index(MARK.format(n)) + len(MARK.format(n)) + 1
        stop = out.find(MARK.format(n + 1))
        text = out[start: stop if stop >= 0 else len(out)]
        results.append((c, text.splitlines()))
    return results


def _copy_examples(work: Path) -> None:
    for name in COPIED:
        shutil.copytree(ROOT / name, work / name)
    (work / "tests").symlink_to(ROOT / "tests", target_is_directory=True)  # read-only helpers, e.g. evidence_pool.py


BLOCKS = console_blocks(README.read_text(encoding="utf-8"))
CHAINS = chains(BLOCKS)


@pytest.fixture(scope="module")
def readme_runs(tmp_path_factory: pytest.TempPathFactory) -> list[list[tuple[Command, list[str]]]]:
    """Every chain run once, side by side (each in its own directory): the README's ~50
    commands start ~50 Python processes, too slow one after another on a small machine."""
    base = tmp_path_factory.mktemp("readme")
    bin_dir = _bin_dir(base)

    def run(index: int) -> list[tuple[Command, list[str]]]:
        work = base / f"block{index}"
        work.mkdir()
        _copy_examples(work)
        return run_chain(CHAINS[index], work, bin_dir)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        return list(pool.map(run, range(len(CHAINS))))


@pytest.mark.parametrize("index", range(len(CHAINS)), ids=[f"README.md:{c[0].line}" for c in CHAINS])
def test_readme_console_block(index: int, readme_runs: list[list[tuple[Command, list[str]]]]) -> None:
    failures = []
    for command, actual in readme_runs[index]:
        if not matches(command.expected, actual):
            failures.append(
                f"README.md line {command.line}: $ {command.command}\n--- README shows\n"
                + "\n".join(command.expected) + "\n--- the command printed\n" + "\n".join(actual)
            )
    assert not failures, "\n\n".join(failures)


def test_readme_has_console_blocks() -> None:
    """The README's examples are checked only while they are written as console blocks."""
    assert len(BLOCKS) >= 8
    assert sum(len(b.commands) for b in BLOCKS) >= 40


def test_files_readme_commands_name_are_shipped() -> None:
    """A fresh clone has every examples/ and data/ file a README command names."""
    text = README.read_text(encoding="utf-8")
    named = set(re.findall(r"\b((?:examples|data)/[\w./-]+\.\w+)", text))
    assert named, "the README names no example file"
    missing = sorted(p for p in named if not (ROOT / p).is_file())
    assert not missing, f"README names files a clone does not have: {missing}"


def test_review_script_in_readme_is_the_shipped_one() -> None:
    """The review.py the README prints is the examples/review.py its commands run."""
    text = README.read_text(encoding="utf-8")
    shown = re.search(r"```python\n(# examples/review\.py.*?)```", text, re.DOTALL)
    assert shown, "README shows no examples/review.py"
    assert shown.group(1) == (ROOT / "examples" / "review.py").read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (["a ... c"], ["a bb c"], True),
        (["a ... c"], ["a bb d"], False),
        (["x", "...", "y"], ["x", "1", "2", "y"], True),
        (["x", "...", "y"], ["x", "y"], True),
        (["x"], ["x", "extra"], False),
        ([], ["something"], False),
        (["a.b"], ["axb"], False),
    ],
)
def test_wildcard_matching(expected: list[str], actual: list[str], ok: bool) -> None:
    assert matches(expected, actual) is ok


def test_only_console_blocks_are_run() -> None:
    text = "```bash\n$ rm -rf /\n```\n\n<!-- readme-test: continue -->\n```console\n$ echo hi\nhi\n```\n"
    blocks = console_blocks(text)
    assert [(b.continues, [(c.command, c.expected) for c in b.commands]) for b in blocks] == [
        (True, [("echo hi", ["hi"])])
    ]
