"""Few-shot commands under hostile use (issue 11, items 19 and 20), through the real CLI."""

from __future__ import annotations

import shlex
from pathlib import Path

from click.testing import CliRunner

from clusterqc.cli import cli
from clusterqc.ingest import demo_path, import_files
from clusterqc.model import Proposal, Verdict
from clusterqc.store import Store

A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE


def _reviewed(db: Path) -> None:
    """Demo clusters: 6 accepted proposals (usable: the model's reason) and 6 overrides with no note."""
    with Store(db) as store:
        import_files(store, [demo_path()])
        for i in range(12):
            cid = f"Cluster_{i}"
            model = A if i % 2 == 0 else U
            pid = store.add_proposal(Proposal(cid, "m", "p0", model, f"model reason for {cid}"))
            human = model if i < 6 else (U if model is A else A)  # i >= 6: overridden, no note
            store.decide(cid, "ann", human, proposal_id=pid)


def test_suggest_prints_a_prompt_create_command_that_runs(tmp_path: Path) -> None:
    db = tmp_path / "fs.db"
    _reviewed(db)
    runner = CliRunner()
    res = runner.invoke(cli, ["fewshot", "suggest", "--db", str(db), "--k", "6"])
    assert res.exit_code == 0, res.output
    (command,) = [line for line in res.output.splitlines() if line.startswith("clusterqc prompt create")]
    argv = shlex.split(command)[1:]
    argv[argv.index("NAME")] = "from-suggest"
    ids = argv[argv.index("--examples") + 1].split(",")
    assert len(ids) == 6
    overrides_without_reason = {f"Cluster_{i}" for i in range(6, 12)}
    assert not overrides_without_reason & set(ids)
    # The overrides the plain suggestion prefers are listed apart, with the command that fixes them.
    assert "need a reason first" in res.output
    listed = [line for line in res.output.splitlines() if line.strip().startswith("clusterqc fewshot mark")]
    assert listed and all(any(f" {cid} " in line for cid in overrides_without_reason) for line in listed)
    made = runner.invoke(cli, argv)
    assert made.exit_code == 0, made.output
    assert "with 6 example(s)" in made.output


def test_guideline_set_on_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    db = tmp_path / "fs.db"
    _reviewed(db)
    guideline = tmp_path / "guideline.txt"
    guideline.write_bytes("Be strict.\nNo watermarks — café\n".encode("cp1252"))
    before = db.read_bytes()
    res = CliRunner().invoke(cli, ["fewshot", "guideline", "--db", str(db), "--set", str(guideline)])
    assert res.exit_code == 1 and res.output.count("\n") == 1, res.output
    assert res.output.startswith(f"error: {guideline}: line 2") and "not UTF-8" in res.output, res.output
    assert db.read_bytes() == before
    # The same text as UTF-8 (with a BOM, as Notepad saves it) is taken.
    guideline.write_bytes("\ufeffBe strict.\nNo watermarks — café\n".encode("utf-8"))
    ok = CliRunner().invoke(cli, ["fewshot", "guideline", "--db", str(db), "--set", str(guideline)])
    assert ok.exit_code == 0 and "current guideline is now" in ok.output, ok.output
