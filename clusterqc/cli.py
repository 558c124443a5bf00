"""The `clusterqc` command: the same steps as the app, for an engineer with thousands of clusters.

User mistakes (bad files, unknown ids, wrong flags) print one line to stderr and exit 1; a
traceback means a bug in clusterqc, not in the user's input. An unusable database (not SQLite,
damaged, read-only, on a full disk, another application's, a newer clusterqc's) is reported the
same way, once for every command, by `_Commands.invoke`: one line naming the file and the problem.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from clusterqc.store import ENV_DB, DatasetError, Store, resolve_db_path
from clusterqc.store.connection import describe_error

F = TypeVar("F", bound=Callable[..., Any])


class UserError(click.ClickException):
    """A mistake in the user's input: shown as one line, exit status 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def user_errors(*types: type[BaseException]) -> Callable[[F], F]:
    """Turn the listed exception types into a one-line `error: ...` and exit status 1."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except types as exc:
                raise UserError(str(exc)) from exc

        return inner  # type: ignore[return-value]

    return wrap


db_option = click.option(
    "--db",
    type=click.Path(dir_okay=False),
    default=None,
    envvar=ENV_DB,
    show_envvar=True,
    help="SQLite database file (default: clusterqc.db in the working directory).",
)


_opened: list[Path] = []  # databases this command opened, newest last (for error messages)


def open_store(db: str | None) -> Store:
    """The command's database; a problem with it is reported once, centrally, by `_Commands`."""
    _opened.append(resolve_db_path(db))
    return Store(db)


dataset_option = click.option(
    "--dataset", "dataset", default=None, metavar="NAME",
    help="Only this dataset (default: every dataset; see `clusterqc datasets`).",
)
one_dataset_option = click.option(
    "--dataset", "dataset", default=None, metavar="NAME",
    help="The dataset to work on (needed when the database holds more than one).",
)


def dataset_errors(fn: F) -> F:
    """An unknown, invalid or missing --dataset is one line (the message lists the known names)."""
    return user_errors(DatasetError)(fn)



def _os_error_line(exc: OSError) -> str:
    """An OSError as `file: problem` (the file the user named, never a library's traceback)."""
    where = exc.filename if exc.filename is not None else (_opened[-1] if _opened else None)
    text = exc.strerror or str(exc)
    return f"{where}: {text}" if where is not None else text


class _Commands(click.Group):
    """The command group whose invoke turns database and file-system failures into one line.

    Why here and not per command: every command opens the database through `open_store`, and a
    damaged, read-only or full database can fail on any query of any command. Catching
    `sqlite3.Error` once, where every command runs, names the file of the store last opened.
    """

    def invoke(self, ctx: click.Context) -> Any:
        _opened.clear()
        try:
            return super().invoke(ctx)
        except sqlite3.Error as exc:
            where = _opened[-1] if _opened else resolve_db_path(None)
            raise UserError(describe_error(where, exc)) from exc
        except BrokenPipeError:
            # The reader went away (`clusterqc ... | head`): not a problem of any file of ours.
            # Point stdout at devnull so the interpreter's final flush cannot fail again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)  # 128 + SIGPIPE, what a shell reports for a command cut off by a pipe
        except OSError as exc:
            raise UserError(_os_error_line(exc)) from exc


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clusterqc")
def cli() -> None:
    """Review image-text clusters for CLIP training: import, propose, review, export."""


@cli.command()
@db_option
@dataset_option
@dataset_errors
def stats(db: str | None, dataset: str | None) -> None:
    """Counts of clusters, proposals, decisions and reviewers (all datasets, or --dataset)."""
    with open_store(db) as store:
        s = store.stats(dataset=dataset)
        judges = store.judges(dataset=dataset)
        names = store.dataset_names()
        click.echo(f"database:   {store.path}")
    shown = dataset or (f"{len(names)} ({', '.join(names)})" if names else "0")
    click.echo(f"datasets:   {shown}")
    click.echo(f"clusters:   {s.clusters}")
    click.echo(f"proposals:  {s.proposals} ({s.unparsed} unparsed)")
    for judge, version, n in judges:
        click.echo(f"  {judge} @ {version}: {n}")
    click.echo(f"decisions:  {s.decisions} ({s.reviewed_clusters} clusters reviewed)")
    click.echo(f"reviewers:  {len(s.reviewers)}" + (f" ({', '.join(s.reviewers)})" if s.reviewers else ""))


@cli.command("datasets")
@db_option
def datasets_cmd(db: str | None) -> None:
    """Each dataset: clusters, proposals, reviewed clusters, decisions, source files, created."""
    with _existing_store(db) as store:
        rows = store.datasets()
    if not rows:
        click.echo("no datasets yet: import a cluster file (clusterqc import FILE)")
        return
    width = max(7, *(len(r["name"]) for r in rows))
    click.echo(f"{'dataset':<{width}} {'clusters':>8} {'proposals':>9} {'reviewed':>8} {'decisions':>9}  {'created':<19}  sources")
    for r in rows:
        click.echo(
            f"{r['name']:<{width}} {r['clusters']:>8} {r['proposals']:>9} {r['reviewed']:>8} {r['decisions']:>9}"
            f"  {r['created_at'][:19].replace('T', ' '):<19}  {', '.join(r['sources']) or '-'}"
        )


@cli.command()
@db_option
@click.option(
    "--out", "out", required=True, type=click.Path(dir_okay=False), help="Snapshot file to write."
)
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def backup(db: str | None, out: str, force: bool) -> None:
    """Snapshot the database while the app keeps running (SQLite's online backup).

    The snapshot is written next to OUT under a temporary name, checked with
    `PRAGMA integrity_check`, and only then renamed onto OUT, so OUT is never half written
    and an existing good backup is not lost to a failed one.
    """
    from clusterqc.outputs import OutputError, check_outputs, creation_mode, temp_prefix

    source = resolve_db_path(db)
    target = Path(out)
    if not source.is_file():
        raise UserError(f"{source}: no such database")
    try:
        check_outputs([("--out", target)], db=source)
    except OutputError as exc:
        raise UserError(str(exc)) from exc
    if target.exists() and not force:
        raise UserError(f"{target}: already exists (use --force to overwrite it)")
    made = _make_parents(target)
    _clean_stale(target, BACKUP_SUFFIX)
    tmp = target.with_name(f"{temp_prefix(target)}{BACKUP_SUFFIX.lstrip('.')}")
    try:
        with open_store(db) as store:
            try:
                store.backup(tmp)
                with Store(tmp) as snapshot:
                    check = snapshot.integrity_check()
            except (sqlite3.Error, OSError) as exc:  # writing the snapshot failed, not the database
                raise UserError(f"{target}: {_write_problem(exc)}; nothing written") from exc
        if check != "ok":
            raise UserError(f"{target}: snapshot failed the integrity check ({check}); nothing written")
        os.chmod(tmp, creation_mode())
        os.replace(tmp, target)
    except OSError as exc:
        raise UserError(f"{target}: {_write_problem(exc)}; nothing written") from exc
    finally:
        for leftover in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm"), Path(f"{tmp}-journal")):
            try:
                leftover.unlink(missing_ok=True)
            except OSError:  # e.g. a read-only folder, where nothing was written either
                pass
        if not target.exists():  # a failed backup leaves no empty folders behind either
            for folder in made:
                folder.rmdir()
    click.echo(f"backed up {source} to {target} ({target.stat().st_size:,} bytes)")


BACKUP_SUFFIX = ".partial"  # backup's hidden snapshot beside OUT: .OUT.<pid>.partial


def _write_problem(exc: BaseException) -> str:
    """What went wrong writing an output, without the hidden temporary file's name."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith("SQLITE_FULL"):
        return "the disk is full (database or disk is full)"
    if name.startswith(("SQLITE_CANTOPEN", "SQLITE_READONLY", "SQLITE_PERM")):
        return f"cannot write there ({exc})"
    return str(exc)


def _clean_stale(target: Path, suffix: str) -> None:
    """Remove what killed earlier runs left of this output, and say so (on stderr)."""
    from clusterqc.outputs import clean_stale_partials

    removed = clean_stale_partials(target, suffix)
    if removed:
        click.echo(
            f"removed {_plural(len(removed), 'stale temporary file')} of {target} left by an interrupted run: "
            + ", ".join(p.name for p in removed),
            err=True,
        )


def _make_parents(target: Path) -> list[Path]:
    """Create OUT's missing folders (`--out backups/x.db` on a first run, from cron too);
    returns them deepest first so a failed backup can remove them again."""
    missing = [p for p in target.parents if not p.exists()]
    blocker = next((p for p in target.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UserError(f"{target}: {blocker} is a file, not a directory")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{target}: cannot create directory {target.parent}: {exc.strerror or exc}") from None
    return missing


# --------------------------------------------------------------------------- few-shot curation


def _fewshot() -> Any:
    """Imported on use: keeps `clusterqc --help` fast (scikit-learn loads slowly)."""
    from clusterqc import fewshot

    return fewshot


def _curation_errors() -> tuple[type[BaseException], ...]:
    from clusterqc.fewshot import FewShotError
    from clusterqc.prompt import TemplateError

    return (FewShotError, TemplateError)


def _curation(fn: F) -> F:
    """Few-shot commands: their FewShotError / TemplateError are user errors (one line, exit 1)."""

    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _curation_errors() as exc:
            raise UserError(str(exc)) from exc

    return inner  # type: ignore[return-value]


def _default_reviewer() -> str:
    import getpass

    return getpass.getuser()


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


@cli.group()
def fewshot() -> None:
    """Few-shot examples from reviewed clusters: suggest, mark, guidelines."""


@fewshot.command("suggest")
@db_option
@click.option("--k", "k", type=int, default=6, show_default=True, help="How many examples to suggest.")
@dataset_option
@_curation
@dataset_errors
def fewshot_suggest(db: str | None, k: int, dataset: str | None) -> None:
    """Suggest K examples: balanced across verdicts, overrides first, different kinds of clusters.

    From every dataset unless --dataset; with several, clusters are named DATASET:ID. Only
    examples usable as they are (with a reason) are suggested and go into the printed
    `prompt create` command; clusters that would be good examples but have no reason yet are
    listed apart, with the command that marks them.
    """
    import shlex

    with open_store(db) as store:
        picks, need_reason = _fewshot().suggest_usable(store, k, dataset=dataset)
    if not picks and not need_reason:
        click.echo("no reviewed clusters with an agreed verdict yet: review some first")
        return
    if picks:
        click.echo(f"{'cluster':<16} {'verdict':<13} {'override':<9} {'marked':<7} reason")
    for c in picks:
        click.echo(
            f"{c.ref or c.cluster_id:<16} {c.verdict.value:<13} {'yes' if c.overridden else 'no':<9}"
            f" {'yes' if c.marked else 'no':<7} {_clip(c.reason, 60)}"
        )
    db_arg = f" --db {shlex.quote(db)}" if db else ""
    if need_reason:
        click.echo(f"\n{_plural(len(need_reason), 'more cluster')} would make good examples but"
                   " need a reason first (left out of the command below):")
        for c in need_reason:
            click.echo(f"  clusterqc fewshot mark{db_arg} {shlex.quote(c.ref or c.cluster_id)} --reason \"...\""
                       f"   # {c.verdict.value}{', override' if c.overridden else ''}")
    if picks:
        ids = shlex.quote(",".join(c.ref or c.cluster_id for c in picks))
        click.echo(f"\nclusterqc prompt create{db_arg} --name NAME --examples {ids}")


@fewshot.command("mark")
@db_option
@click.argument("cluster_id")
@click.option("--reason", default=None, help="The example's reason (default: the one offered: the model's if accepted).")
@click.option("--reviewer", envvar="CLUSTERQC_REVIEWER", default=None, help="Who marks it (default: $USER).")
@click.option("--unmark", is_flag=True, help="Remove the cluster from the examples instead.")
@one_dataset_option
@_curation
@dataset_errors
def fewshot_mark(db: str | None, cluster_id: str, reason: str | None, reviewer: str | None, unmark: bool,
                 dataset: str | None) -> None:
    """Mark a decided cluster (an id, or DATASET:ID) as a few-shot example (or --unmark it)."""
    fs = _fewshot()
    with open_store(db) as store:
        if unmark:
            if not fs.unmark_example(store, cluster_id, dataset=dataset):
                raise UserError(f"cluster {cluster_id} is not marked as an example")
            click.echo(f"unmarked {cluster_id}")
            return
        reason = fs.offered_reason(store, cluster_id, dataset=dataset) if reason is None else reason
        row = fs.mark_example(store, cluster_id, reason, reviewer or _default_reviewer(), dataset=dataset)
    click.echo(f"marked {row['cluster_id']} as an example ({row['verdict']}): {row['reason']}")


@fewshot.command("guideline")
@db_option
@click.option("--set", "set_file", type=click.File("rb"), default=None,
              help="Make this file's text the current guideline ('-' for stdin).")
@click.option("--queue-stale", is_flag=True, help="Queue clusters decided under older guidelines for a second look.")
@_curation
def fewshot_guideline(db: str | None, set_file: Any, queue_stale: bool) -> None:
    """Show or set the guideline decisions are recorded under; queue older ones for a recheck."""
    fs = _fewshot()
    text = _read_utf8(set_file) if set_file is not None else None
    with open_store(db) as store:
        if text is not None:
            click.echo(f"current guideline is now {fs.set_guideline(store, text)}")
        if queue_stale:
            n = fs.queue_stale(store)
            click.echo(f"queued {n} cluster(s) for a second look")
        version = fs.current_guideline(store)
        click.echo(f"guideline:  {version or '(none set)'}")
        click.echo(f"stale:      {len(fs.stale_labels(store))} label(s) decided under another guideline")
        click.echo(f"rechecks:   {len(store.pending_rechecks())} cluster(s) waiting for a second look")


def _read_utf8(fh: Any) -> str:
    """A text file's contents as UTF-8 (a BOM dropped); a bad byte is one line naming file and place."""
    data = fh.read()
    name = getattr(fh, "name", "-")
    name = "<stdin>" if name in ("-", "<stdin>", 0) else name
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserError(
            f"{name}: line {line}, byte {exc.start}: not UTF-8 text ({exc.reason}); save the file as UTF-8"
        ) from None


@cli.group()
def prompt() -> None:
    """Prompt versions: create from examples, list, show, diff, activate."""


@prompt.command("create")
@db_option
@click.option("--name", required=True, help="Name of the new version.")
@click.option("--examples", "examples", required=True, help="Comma-separated cluster ids, e.g. Cluster_3,Cluster_9.")
@click.option("--mode", type=click.Choice(["replace", "append"]), default="replace", show_default=True,
              help="Replace the base's examples or add to them.")
@click.option("--base", default=None, help="Base template: a stored prompt name/version or a file (default: the active one).")
@click.option("--activate", "make_active", is_flag=True, help="Make the new version the active one.")
@click.option("--dataset", "dataset", default=None, metavar="NAME",
              help="Dataset of the plain ids in --examples (DATASET:ID names a cluster of any dataset).")
@_curation
@dataset_errors
def prompt_create(db: str | None, name: str, examples: str, mode: str, base: str | None, make_active: bool,
                  dataset: str | None) -> None:
    """Build a prompt version from a base template and reviewed clusters (of any dataset) as examples."""
    fs = _fewshot()
    with open_store(db) as store:
        row = fs.create_prompt(store, name, examples.split(","), mode=mode, base=base, dataset=dataset)
        if make_active:
            fs.activate(store, row["version"])
    click.echo(f"created prompt {row['name']} ({row['version']}) with {len(row['examples'])} example(s)"
               f"{', active' if make_active else ''}")


@prompt.command("list")
@db_option
@_curation
def prompt_list(db: str | None) -> None:
    """Stored prompt versions; * marks the active one."""
    with open_store(db) as store:
        rows = _fewshot().list_prompts(store)
    click.echo(f"  {'name':<20} {'version':<13} {'examples':>8}  parent")
    for r in rows:
        click.echo(f"{'*' if r['active'] else ' '} {r['name'] or '-':<20} {r['version']:<13} {r['examples']:>8}  {r['parent']}")


@prompt.command("show")
@db_option
@click.argument("name")
@click.option("--cluster", "cluster_id", default=None, help="Render the prompt for this cluster (an id, or DATASET:ID).")
@one_dataset_option
@_curation
@dataset_errors
def prompt_show(db: str | None, name: str, cluster_id: str | None, dataset: str | None) -> None:
    """Print a version's template, or the prompt it renders for --cluster."""
    fs = _fewshot()
    with open_store(db) as store:
        text = (fs.preview(store, name, cluster_id, dataset=dataset) if cluster_id
                else fs.get_prompt(store, name)["template"])
    click.echo(text, nl=not text.endswith("\n"))


@prompt.command("diff")
@db_option
@click.argument("a")
@click.argument("b")
@_curation
def prompt_diff(db: str | None, a: str, b: str) -> None:
    """Unified diff of two versions' templates."""
    with open_store(db) as store:
        text = _fewshot().diff_prompts(store, a, b)
    click.echo(text or "identical", nl=not text.endswith("\n"))


@prompt.command("activate")
@db_option
@click.argument("name")
@_curation
def prompt_activate(db: str | None, name: str) -> None:
    """Make a version the one proposals use."""
    with open_store(db) as store:
        row = _fewshot().activate(store, name)
    click.echo(f"active prompt: {row['name'] or '-'} ({row['version']})")


# --- import and cluster (issue 2)


def _progress() -> Any:
    """clusterqc.progress, imported on use (tqdm is not needed for `--help`)."""
    from clusterqc import progress

    return progress


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


@cli.command("import")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=True, path_type=str))
@db_option
@click.option("--dataset", default=None, metavar="NAME",
              help="Dataset for every cluster of the files (default: each cluster's own, else its file's stem).")
@click.option("--replace", is_flag=True, help="Overwrite clusters whose id exists with different content.")
@click.option("--demo", is_flag=True, help="Import the bundled demo clusters (data/demo_clusters.json).")
def import_(paths: tuple[str, ...], db: str | None, dataset: str | None, replace: bool, demo: bool) -> None:
    """Import cluster files (luvdatacomp JSON, JSON, JSONL, CSV, Parquet): all of them or none.

    Every file is read and checked before the database is touched; re-importing the same
    file changes nothing.
    """
    from clusterqc.ingest import IngestError, demo_path, read_files, write_clusters

    try:
        targets = [*paths, *([str(demo_path())] if demo else [])]
        if not targets:
            raise UserError("give one or more cluster files, or --demo")
        if demo and dataset is None and not paths:
            from clusterqc.bootstrap import DEMO_DATASET

            dataset = DEMO_DATASET
        with _progress().stage("import") as line, _progress().ticking(line):
            def reading(file: str, index: int) -> None:
                _progress().step(line, f"import: reading {file} ({index + 1} of {len(targets)})")

            files = read_files(targets, dataset, on_file=reading)
            _progress().step(line, f"import: writing {sum(len(c) for _, c in files):,} clusters to the database")
            with open_store(db) as store:
                result = write_clusters(store, files, replace=replace)
    except (IngestError, FileNotFoundError, DatasetError) as exc:
        raise UserError(str(exc)) from exc
    names = sorted({c.dataset for _, cs in files for c in cs if c.dataset})
    click.echo(
        f"imported {_plural(result.added, 'cluster')} from {_plural(len(files), 'file')}"
        f" into {'dataset' if len(names) == 1 else 'datasets'} {', '.join(names) or '-'}"
        f" ({result.unchanged} unchanged, {result.replaced} replaced)"
    )
    if result.unlabelled:
        click.echo(
            f"note: {_plural(result.unlabelled, 'reviewed cluster')} changed content and lost {'its' if result.unlabelled == 1 else 'their'}"
            " label (the decisions stay in the log); they are back in the review queue and propose will ask again"
        )


@cli.command("cluster")
@click.argument("input_path", metavar="INPUT")
@click.option("--k", type=int, default=None, help="Number of clusters (k-means k); not needed with --centroids-from.")
@click.option("--id-col", default="uid", show_default=True, help="Single file: column with the sample id.")
@click.option("--text-col", default="caption", show_default=True, help="Single file: column with the caption.")
@click.option("--emb-col", default="embedding", show_default=True, help="Single file: column with the embedding (list of floats).")
@click.option("--out", "out_json", required=True, type=click.Path(dir_okay=False), help="Cluster file to write (luvdatacomp JSON).")
@click.option(
    "--assignments",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also write sample id -> cluster. Pool: Parquet with uid, cluster_id, distance and the CLIP scores;"
    " single file: uid,data_points,cluster_label as .csv or .parquet.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="k-means and sampling seed (same seed, same clusters).")
@click.option("--embedding", default="l14_txt", show_default=True,
              help="Pool: npz array(s) to cluster: l14_txt, l14_img, b32_txt, b32_img, or two joined with + (concatenated).")
@click.option("--max-points-per-centroid", type=int, default=256, show_default=True,
              help="Pool: training sample size per centroid, drawn uniformly from every shard.")
@click.option("--niter", type=int, default=20, show_default=True, help="Pool: k-means iterations.")
@click.option("--init", "init", type=click.Choice(["k-means++", "random"]), default="k-means++", show_default=True,
              help="Pool: initialisation: greedy k-means++ on the sample, or faiss's random seeds (see --nredo).")
@click.option("--nredo", type=int, default=1, show_default=True, help="Pool, --init random: best of this many faiss runs.")
@click.option("--centroids", "centroids_out", type=click.Path(dir_okay=False), default=None,
              help="Pool: also save the k x d centroids as .npy.")
@click.option("--centroids-from", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Pool: assign with these centroids (.npy, k x d) instead of training.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Pool: run the passes in this process, or as Ray tasks (RAY_ADDRESS, else a local Ray).")
def cluster_cmd(
    input_path: str, k: int | None, id_col: str, text_col: str, emb_col: str, out_json: str, assignments: str | None,
    seed: int, embedding: str, max_points_per_centroid: int, niter: int, init: str, nredo: int,
    centroids_out: str | None, centroids_from: str | None, engine: str,
) -> None:
    """k-means over CLIP embeddings -> a cluster file to import.

    INPUT is a DataComp pool folder (local path or a pyarrow URI such as s3://bucket/pool) of
    <shard>.parquet + <shard>.npz, or one JSONL/Parquet file with an embedding column.
    """
    from clusterqc.ingest import IngestError
    from clusterqc.outputs import OutputError, check_outputs
    from clusterqc.pool import is_pool

    outputs = [("--out", out_json), ("--assignments", assignments), ("--centroids", centroids_out)]
    try:
        if is_pool(input_path):
            _cluster_pool_cmd(input_path, outputs, k, out_json, assignments, seed, embedding,
                              max_points_per_centroid, niter, init, nredo, centroids_out, centroids_from, engine)
            return
        if k is None:
            raise UserError("--k is required")
        check_outputs(outputs, [("INPUT", input_path)])
        from clusterqc.clustering import cluster_embeddings

        with _progress().stage("cluster") as line, _progress().ticking(line):
            result = cluster_embeddings(input_path, k, id_col, text_col, emb_col, out_json, assignments, seed=seed,
                                        on_stage=lambda what: _progress().step(line, f"cluster: {what}"))
    except (IngestError, OutputError) as exc:
        raise UserError(str(exc)) from exc
    sizes = [c["size"] for c in result.clusters.values()]
    click.echo(
        f"clustered {len(result.ids)} samples ({result.centroids.shape[1]}-d) into {len(sizes)} clusters"
        f" (sizes {min(sizes)}-{max(sizes)}); wrote {out_json}" + (f" and {assignments}" if assignments else "")
    )


def _engine(name: str) -> Any:
    """The named pool engine; a missing or unreachable Ray is one line, not a traceback."""
    from clusterqc.pool.engines import get_engine

    try:
        return get_engine(name)
    except ImportError as exc:
        raise UserError(f"--engine {name} needs Ray: pip install 'clusterqc[ray]' ({exc})") from exc
    except _ray_errors() as exc:
        raise UserError(str(exc)) from exc


def _ray_errors() -> tuple[type[BaseException], ...]:
    """RayEngineError when the Ray engine module can be imported (it imports ray lazily)."""
    from clusterqc.pool.engines.ray import RayEngineError

    return (RayEngineError,)


def _cluster_pool_cmd(
    root: str, outputs: list[tuple[str, str | None]], k: int | None, out_json: str, assignments: str | None,
    seed: int, embedding: str, max_points_per_centroid: int, niter: int, init: str, nredo: int,
    centroids_out: str | None, centroids_from: str | None, engine_name: str,
) -> None:
    """The pool branch of `cluster`: check outputs against the shards, run, report."""
    from clusterqc.outputs import OutputError, check_outputs
    from clusterqc.pool import Embedding, cluster_pool, open_pool

    pool = open_pool(root, Embedding.parse(embedding))
    inputs: list[tuple[str, str | None]] = [("--centroids-from", centroids_from)]
    if pool.local_root is not None:
        inputs += [(f"shard {s.stem}", s.parquet) for s in pool.shards]
        inputs += [(f"shard {s.stem}", s.npz) for s in pool.shards]
        for what, path in outputs:
            if path and Path(os.path.realpath(path)).parent == Path(os.path.realpath(pool.local_root)) \
                    and Path(path).suffix.lower() in (".parquet", ".npz"):
                raise OutputError(f"{what} {path}: inside the pool folder it would be read as a shard; choose another folder")
    check_outputs(outputs, inputs)
    engine = _engine(engine_name)
    try:
        result = cluster_pool(
            pool, out_json, k=k, embedding=embedding, assignments=assignments, seed=seed, niter=niter,
            max_points_per_centroid=max_points_per_centroid, centroids_out=centroids_out,
            centroids_from=centroids_from, engine=engine, init=init, nredo=nredo,
            say=lambda msg: click.echo(msg, err=True),
        )
    except _ray_errors() as exc:
        raise UserError(str(exc)) from exc
    finally:
        engine.close()
    sizes = [c["size"] for c in result.clusters.values()]
    wrote = [p for p in (out_json, assignments, centroids_out) if p]
    click.echo(
        f"clustered {result.rows:,} samples from {result.shards} shards ({embedding}, {result.dim}-d) into"
        f" {len(sizes)} clusters (sizes {min(sizes)}-{max(sizes)}), inertia {result.inertia:.6g}"
        f" [{engine_name}{': ' + engine.where if engine_name == 'ray' else ''}]; wrote {', '.join(wrote)}"
    )
    click.echo("seconds: " + ", ".join(f"{phase} {t:.2f}" for phase, t in result.seconds.items()), err=True)


def _default_against(store: Any, target: dict[str, Any]) -> str:
    """What a version is compared with by default: the active one, else its parent, else the seed."""
    from clusterqc import fewshot as fs

    active = fs.active_version(store)
    if active != target["version"]:
        return active
    if target.get("parent") and store.get_prompt(target["parent"]) is not None:
        return target["parent"]
    return fs.ensure_seed(store)


@cli.command("evaluate")
@db_option
@click.option("--prompt", "prompt_name", required=True, help="The prompt version to evaluate (name or hash).")
@click.option("--against", "against", multiple=True,
              help="Version(s) to compare with on the same clusters (default: the active one, else its parent).")
@click.option("--judge", "judge_kind", type=click.Choice(["offline", "llm"]), default=None,
              help="Who answers (default: llm when an endpoint is configured, else offline).")
@click.option("--model", default=None, help="Model name (default: $CLUSTERQC_MODEL or gpt-4o-mini).")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL).")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True,
              help="Name of the environment variable holding the API key (never the key itself).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Seconds per request attempt, from connecting to the last byte.")
@click.option("--concurrency", type=int, default=8, show_default=True, help="Requests in flight.")
@click.option("--no-run", is_flag=True, help="Only score answers already stored; ask nothing.")
@dataset_option
@_curation
@dataset_errors
def evaluate_cmd(
    db: str | None, prompt_name: str, against: tuple[str, ...], judge_kind: str | None, model: str | None,
    base_url: str | None, api_key_env: str, timeout: float | None, concurrency: int, no_run: bool,
    dataset: str | None,
) -> None:
    """Evaluate a prompt version on reviewed clusters outside its examples, next to other versions."""
    from clusterqc import evaluate as ev
    from clusterqc import fewshot as fs
    from clusterqc.propose import make_judge
    from clusterqc.settings import SettingsError, resolve_endpoint

    try:
        config = resolve_endpoint(model=model, base_url=base_url, api_key_env=api_key_env, timeout=timeout)
    except SettingsError as exc:
        raise UserError(str(exc)) from exc
    kind = judge_kind or ("llm" if config.configured else "offline")
    with open_store(db) as store:
        target = fs.get_prompt(store, prompt_name)
        others = list(against) or [_default_against(store, target)]
        names = [target["version"]] + [fs.get_prompt(store, a)["version"] for a in others]
        names = list(dict.fromkeys(names))
        bar = _progress().bar(total=0, desc="evaluate", unit="answer", disable=no_run)
        try:
            with _progress().ticking(bar):
                result = ev.evaluate(
                    store, names, lambda t: make_judge(kind, config, t), run_missing=not no_run,
                    concurrency=concurrency, progress=_batch_progress(bar), dataset=store.check_dataset(dataset),
                )
        except KeyboardInterrupt:
            bar.close()
            click.echo("interrupted: every answer received so far is stored; run again to finish", err=True)
            sys.exit(130)
        finally:
            bar.close()
    click.echo(ev.format_comparison(result))


def _batch_progress(bar: Any) -> Callable[[Any], None]:
    """The batch runner's callback (a `propose.Progress` after each answer) driving a tqdm bar."""

    def update(p: Any) -> None:
        bar.total = p.total
        retrying = {"retrying": p.retrying} if getattr(p, "retrying", 0) else {}
        bar.set_postfix(failed=p.failed, unparsed=p.unparsed, **retrying, refresh=False)
        bar.update(p.done - bar.n)

    return update


# --- propose and import-proposals (issue 3)


def _propose_errors() -> tuple[type[BaseException], ...]:
    from clusterqc.fewshot import FewShotError
    from clusterqc.prompt import TemplateError
    from clusterqc.settings import SettingsError

    return (SettingsError, TemplateError, FewShotError)


@cli.command()
@db_option
@click.option("--judge", "judge_kind", type=click.Choice(["offline", "llm", "learned"]), default=None,
              help="Who proposes (default: llm if an endpoint or key is configured, else offline);"
                   " learned: a classifier trained on the curators' agreed labels.")
@click.option("--model", default=None, help="Model name [env CLUSTERQC_MODEL; default gpt-4o-mini].")
@click.option("--base-url", default=None, help="OpenAI-compatible endpoint, e.g. http://localhost:11434/v1 [env OPENAI_BASE_URL].")
@click.option("--api-key-env", default="OPENAI_API_KEY", show_default=True, metavar="NAME",
              help="Environment variable holding the API key (keys are never taken on the command line).")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True, help="Requests in flight at once.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Propose for at most this many clusters.")
@click.option("--prompt", "prompt_ref", default=None, metavar="FILE|NAME",
              help="Prompt template file or stored prompt name/version (default: the active prompt).")
@click.option("--dry-run", is_flag=True, help="Print the prompt for one cluster and a token estimate; call nothing.")
@click.option("--rpm", type=click.FloatRange(min=0, min_open=True), default=None, help="Client-side requests-per-minute limit.")
@click.option("--tpm", type=click.FloatRange(min=0, min_open=True), default=None, help="Client-side tokens-per-minute limit.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Seconds per request attempt, from connecting to the last byte of the answer.")
@click.option("--max-tokens", type=click.IntRange(min=0), default=None,
              help="Cap on each answer's tokens [default: 2048; 0: no cap].")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.0, show_default=True)
@click.option("--max-retries", type=click.IntRange(min=0), default=4, show_default=True,
              help="Retries on 429, 5xx, timeouts (the openai client's own, honouring Retry-After).")
@dataset_option
@dataset_errors
def propose(db: str | None, judge_kind: str | None, model: str | None, base_url: str | None, api_key_env: str,
            concurrency: int, limit: int | None, prompt_ref: str | None, dry_run: bool, rpm: float | None,
            tpm: float | None, timeout: float, max_tokens: int | None, temperature: float, max_retries: int,
            dataset: str | None) -> None:
    """Propose a verdict for every cluster that has none yet from this judge and prompt.

    Each answer is stored as it arrives: stop it at any time (Ctrl-C) and run again to finish.
    """
    from clusterqc.settings import resolve_endpoint

    try:
        config = resolve_endpoint(model=model, base_url=base_url, api_key_env=api_key_env, timeout=timeout,
                                  max_tokens=max_tokens, temperature=temperature, max_retries=max_retries,
                                  rpm=rpm, tpm=tpm)
        kind = judge_kind or ("llm" if config.configured else "offline")
        if kind == "learned":
            _run_learned(db, dry_run, dataset)
            return
        with open_store(db) as store:
            dataset = store.check_dataset(dataset)
            judge = _make_cli_judge(store, kind, config, prompt_ref)
            if dry_run:
                _print_plan(store, judge, kind, config, limit, dataset)
            else:
                _run_propose(store, judge, kind, config, concurrency, limit, dataset)
    except _propose_errors() as exc:
        raise UserError(str(exc)) from exc


def _run_learned(db: str | None, dry_run: bool, dataset: str | None = None) -> None:
    """`propose --judge learned`: train on one dataset's agreed labels (printing the CV kappa),
    then propose for that dataset (None: the only one; with several, --dataset names it).

    Not the threaded per-cluster runner: the learned judge featurises and predicts a chunk of
    clusters at a time, which is what makes 100,000 clusters take seconds, not minutes.
    """
    from tqdm import tqdm

    from clusterqc.judges import learned

    try:
        with open_store(db) as store:
            dataset = store.resolve_dataset(dataset)
            model = learned.train_from_store(store, dataset=dataset)
            click.echo(model.summary(), err=True)
            if dry_run:
                pending = store.pending_cluster_ids(learned.NAME, model.version, dataset=dataset)
                click.echo(f"pending:  {_plural(len(pending), 'cluster')} (dry run: nothing stored)")
                return
            bar = tqdm(total=0, unit="cluster", disable=None, dynamic_ncols=True)

            def progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            run = learned.propose_all(store, model, progress=progress, dataset=dataset)
            bar.close()
    except learned.NotEnoughLabels as exc:
        raise UserError(str(exc)) from exc
    if run.proposed == 0:
        click.echo(f"nothing to do: every cluster has a proposal from learned @ {model.version}")
        return
    click.echo(f"proposed {run.proposed} clusters with learned @ {model.version} in {run.propose_seconds:.1f} s"
               f" (training {model.train_seconds:.1f} s)")


def _make_cli_judge(store: Store, kind: str, config: Any, prompt_ref: str | None) -> Any:
    from clusterqc.propose import make_judge, resolve_template

    if kind == "offline":
        if prompt_ref:
            click.echo("note: the offline judge uses no prompt; --prompt is ignored", err=True)
        return make_judge("offline")
    return make_judge("llm", config, resolve_template(store, prompt_ref))


def _judge_line(judge: Any, kind: str, config: Any) -> str:
    if kind == "offline":
        return f"judge:    offline ({judge.prompt_version}; no network)"
    name = judge.template.name or "custom"
    return f"judge:    {config.describe()}\nprompt:   {name} ({judge.prompt_version})"


def _print_plan(store: Store, judge: Any, kind: str, config: Any, limit: int | None, dataset: str | None) -> None:
    from clusterqc.propose import plan_run

    plan = plan_run(store, judge, limit, dataset=dataset)
    click.echo(_judge_line(judge, kind, config))
    click.echo(f"pending:  {_plural(plan.pending, 'cluster')}")
    if kind == "llm" and not config.api_key:
        click.echo("note:     no API key (see --api-key-env): fine for local servers, a 401 from OpenAI")
    if plan.example_prompt is None:
        click.echo("nothing would be called (dry run)" if kind == "offline" else "nothing to do")
        return
    click.echo(f"estimate: ~{plan.estimated_tokens:,} tokens for the whole run (about 4 characters a token)")
    click.echo(f"--- prompt for {plan.example_cluster} (nothing was sent) ---")
    click.echo(plan.example_prompt)


def _run_propose(store: Store, judge: Any, kind: str, config: Any, concurrency: int, limit: int | None,
                 dataset: str | None) -> None:
    from clusterqc.propose import run_batch

    click.echo(_judge_line(judge, kind, config), err=True)
    bar = _progress().bar(total=0, desc="propose", unit="cluster")
    try:
        with _progress().ticking(bar):
            result = run_batch(store, judge, concurrency=concurrency, limit=limit, progress=_batch_progress(bar),
                               dataset=dataset)
    except KeyboardInterrupt:
        bar.close()
        click.echo("interrupted: every answer received so far is stored; run again to finish", err=True)
        sys.exit(130)
    finally:
        close = getattr(judge, "close", None)
        if close is not None:
            close()
    bar.close()
    p = result.progress
    if p.total == 0:
        where = f" of dataset {dataset}" if dataset else ""
        click.echo(f"nothing to do: every cluster{where} has a proposal from {result.judge} @ {result.prompt_version}")
        return
    tokens = f"; {p.prompt_tokens:,} prompt + {p.completion_tokens:,} answer tokens" if p.prompt_tokens else ""
    click.echo(
        f"proposed {p.proposed} of {_plural(p.total, 'cluster')} ({p.unparsed} unparsed, {p.failed} failed)"
        f" with {result.judge} @ {result.prompt_version} in {result.elapsed_s:.1f} s{tokens}"
    )
    for cluster_id, error in result.errors[:5]:
        click.echo(f"  failed {cluster_id}: {error}", err=True)
    if len(result.errors) > 5:
        click.echo(f"  ... and {len(result.errors) - 5} more (see the Propose page)", err=True)
    if result.stopped:
        raise UserError(f"stopped: {result.stopped} ({result.remaining} left; run again to finish)")
    if p.failed:  # a script must see that the work is not finished
        raise UserError(f"{_plural(p.failed, 'cluster')} failed; run again to retry them")


@cli.command("import-proposals")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--judge", "judge_name", required=True, help="Judge name to store them under (e.g. the model that wrote them).")
@db_option
@one_dataset_option
@dataset_errors
def import_proposals_cmd(path: str, judge_name: str, db: str | None, dataset: str | None) -> None:
    """Import an earlier run: raw classifications JSON (cluster -> answer) or parsed CSV."""
    from clusterqc.propose import ProposalImportError, import_proposals

    try:
        with open_store(db) as store:
            summary = import_proposals(store, path, judge_name, dataset=dataset)
    except (ProposalImportError, ValueError, OSError) as exc:
        raise UserError(str(exc)) from exc
    click.echo(
        f"imported {summary.added} of {_plural(summary.read, 'proposal')} from {path} as judge {judge_name!r}"
        f" ({summary.unparsed} unparsed, {summary.read - summary.added} already there)"
    )


@cli.command("import-decisions")
@click.argument("path", metavar="FILE", type=click.Path(dir_okay=False))
@click.option("--reviewer", required=True, help="Who made these decisions (stored as their reviewer name).")
@db_option
@one_dataset_option
@dataset_errors
def import_decisions_cmd(path: str, reviewer: str, db: str | None, dataset: str | None) -> None:
    """Import labels made elsewhere: CSV or JSONL with cluster_id, label (Acceptable or
    Unacceptable) and an optional note, for the clusters of one dataset (--dataset when the
    database holds several). All rows or none; a row already standing is skipped."""
    from clusterqc.import_decisions import import_decisions
    from clusterqc.ingest import IngestError

    try:
        with _existing_store(db) as store:
            summary = import_decisions(store, path, reviewer, dataset)
    except (IngestError, ValueError) as exc:
        raise UserError(str(exc)) from exc
    click.echo(
        f"imported {_plural(summary.added, 'decision')} by {reviewer.strip()!r} from {path}"
        f" into dataset {summary.dataset} ({summary.unchanged} already standing)"
    )


# --- agreement and export (issue 5)


def _existing_store(db: str | None) -> Store:
    """Open a database that must already exist: exporting from a mistyped path is an error,
    not an empty file created on the spot."""
    path = resolve_db_path(db)
    if not path.is_file():
        raise UserError(f"{path}: no such database (pass --db or set {ENV_DB})")
    return open_store(db)


@cli.command("agreement")
@db_option
@dataset_option
@click.option("--by-dataset", is_flag=True, help="Also each judge's agreement in each dataset, side by side.")
@dataset_errors
def agreement_cmd(db: str | None, dataset: str | None, by_dataset: bool) -> None:
    """How often each judge agrees with the reviewers, and the reviewers with each other.

    Over every dataset (clusters named DATASET:ID) unless --dataset names one."""
    from clusterqc.metrics import agreement_by_dataset, agreement_report

    with _existing_store(db) as store:
        report = agreement_report(store, dataset=store.check_dataset(dataset))
        side = agreement_by_dataset(store) if by_dataset else None
    if report.n_reviewed == 0:
        click.echo("no reviewed clusters yet")
        return
    click.echo(f"reviewed clusters: {report.n_reviewed}")
    for m in report.judges:
        s, k = m.stats, m.stats.kappa
        kappa = "n/a" if k.value is None else f"{k.value:.2f}"
        if k.low is not None:
            kappa += f" [{k.low:.2f}, {k.high:.2f}]"
        rate = "n/a" if s.agreement is None else f"{s.agreement:.1%}"
        pr = " ".join(
            f"{name} {'n/a' if v is None else f'{v:.2f}'}" for name, v in (("precision", s.precision), ("recall", s.recall))
        )
        click.echo(
            f"  {m.name}: {s.n} compared ({m.n_unparsed} unparsed of {m.n_reviewed} reviewed), agreement {rate},"
            f" kappa {kappa}; Unacceptable {pr}" + (f" ({k.note})" if k.note else "")
        )
    ra = report.reviewers
    alpha = "n/a" if ra.alpha is None else f"{ra.alpha:.2f}"
    click.echo(f"between reviewers: {ra.n_clusters} clusters with 2+ reviews, Krippendorff's alpha {alpha}"
               + (f" ({ra.alpha_note})" if ra.alpha_note else ""))
    for row in ra.pairs.itertuples(index=False):
        kappa = "n/a" if row.kappa is None or row.kappa != row.kappa else f"{row.kappa:.2f}"
        click.echo(f"  {row.reviewer_a} / {row.reviewer_b}: {row.n} shared, kappa {kappa}")
    if side is not None:
        click.echo("by dataset:")
        for row in side.itertuples(index=False):
            kappa = "n/a" if row.kappa is None or row.kappa != row.kappa else f"{row.kappa:.2f}"
            rate = "n/a" if row.agreement is None or row.agreement != row.agreement else f"{row.agreement:.1%}"
            click.echo(f"  {row.dataset}: {row.judge} @ {row.prompt_version}: {row.compared} compared,"
                       f" agreement {rate}, kappa {kappa}")


@cli.command("export")
@db_option
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="File to write.")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "parquet"]), default=None,
              help="Output format (default: from the --out extension).")
@click.option("--include-unreviewed", is_flag=True,
              help="Also export clusters only the model labelled (label_source=model_only).")
@dataset_option
@dataset_errors
def export_cmd(db: str | None, out: str, fmt: str | None, include_unreviewed: bool, dataset: str | None) -> None:
    """One row per cluster (with its dataset): the label, who decided it, and what the model said."""
    from clusterqc.export import TEMP_SUFFIX, ExportError, export_labels
    from clusterqc.outputs import OutputError, check_outputs

    try:
        check_outputs([("--out", out)], db=resolve_db_path(db))
        with _existing_store(db) as store:
            _clean_stale(Path(out), TEMP_SUFFIX)
            n = export_labels(store, out, fmt, include_unreviewed, dataset=store.check_dataset(dataset))
    except (ExportError, OutputError) as exc:
        raise UserError(str(exc)) from exc
    skipped = n["clusters"] - n["rows"]
    click.echo(
        f"wrote {n['rows']} rows to {out} ({n['format']}): {n['reviewed']} reviewed, {n['model_only']} model_only;"
        f" {skipped} of {n['clusters']} clusters left out"
        + (" (no parsed model verdict)" if include_unreviewed else " (not reviewed; add --include-unreviewed)")
    )


@cli.command("export-uids")
@db_option
@click.option("--assignments", required=True, type=click.Path(dir_okay=False),
              help="uid -> cluster file (CSV or Parquet): columns uid and cluster_id, or uid and cluster_label n"
                   " for clusters named Cluster_<n>.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="The .npy subset to write; its manifest goes beside it (subset.npy -> subset.json).")
@click.option("--keep", multiple=True, type=click.Choice(["Acceptable", "Unacceptable"], case_sensitive=False),
              default=("Acceptable",), show_default=True, help="Label(s) whose clusters are kept (repeatable).")
@click.option("--include-unreviewed", is_flag=True,
              help="Use the model's verdict for clusters nobody reviewed (else they are dropped).")
@click.option("--clip-min", type=float, default=None, metavar="X",
              help="Keep only samples of kept clusters whose clip_l14_similarity_score >= X (a cosine, e.g. 0.28).")
@click.option("--clip-top", type=float, default=None, metavar="F",
              help="Keep only samples of kept clusters among the pool's top F by clip_l14_similarity_score"
                   " (cut: the score at rank ceil(F x pool size); ties kept). DataComp's baseline is 0.3.")
@click.option("--score-column", default=None, metavar="NAME",
              help="The score column a cut reads (default clip_l14_similarity_score).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Run the export in this process, or as Ray tasks (RAY_ADDRESS, else a local Ray); same file.")
@one_dataset_option
@dataset_errors
def export_uids_cmd(
    db: str | None, assignments: str, out: str, keep: tuple[str, ...], include_unreviewed: bool,
    clip_min: float | None, clip_top: float | None, score_column: str | None, engine: str = "local",
    dataset: str | None = None,
) -> None:
    """The uids of kept clusters as DataComp's sorted u8,u8 .npy (for its resharder and baselines).

    The assignments belong to one clustering: --dataset names it when the database holds several."""
    from clusterqc.export import TEMP_SUFFIX
    from clusterqc.manifest import manifest_bytes, manifest_path, subset_manifest, write_manifest
    from clusterqc.outputs import OutputError, check_outputs
    from clusterqc.subset import SCORE_COLUMN, ScoreCut, SubsetError, build_subset, save_uids

    try:
        cut = None
        if clip_min is not None or clip_top is not None:
            cut = ScoreCut(clip_min, clip_top, score_column or SCORE_COLUMN)
        elif score_column is not None:
            raise SubsetError("--score-column needs a cut: --clip-min X or --clip-top F")
        manifest = manifest_path(out)
        check_outputs([("--out", out), ("manifest", manifest)], [("--assignments", assignments)],
                      resolve_db_path(db))
        with _existing_store(db) as store:
            dataset = store.resolve_dataset(dataset)
            if engine == "ray":
                result = _subset_on_ray(store, assignments, keep, include_unreviewed, cut, dataset)
            else:
                result = build_subset(store, assignments, keep, include_unreviewed, cut=cut, dataset=dataset)
            info = manifest_bytes(subset_manifest(store, result, assignments, out, keep, include_unreviewed,
                                                  dataset=dataset))
        _clean_stale(Path(out), TEMP_SUFFIX)
        save_uids(result.uids, out)  # the manifest is already encoded: nothing can fail between the two
        write_manifest(info, manifest)
    except (SubsetError, OutputError) as exc:
        raise UserError(str(exc)) from exc
    r = result
    click.echo(
        f"clusters: kept {r.kept_clusters}, dropped {r.dropped_clusters}"
        f" ({r.unlabelled_clusters} without a label"
        + (f", {r.unknown_clusters} not in the database" if r.unknown_clusters else "")
        + ")"
    )
    click.echo(
        f"samples:  kept {r.kept_samples:,} of {r.total_samples:,} ({r.kept_fraction:.1%} of the pool),"
        f" dropped {r.total_samples - r.kept_samples:,}"
    )
    if r.cut is not None and r.cut_value is not None:
        click.echo(
            f"cut:      {r.cut.describe()}: score >= {r.cut_value:.6g}; that cut alone would keep"
            f" {r.cut_alone_samples or 0:,} ({r.cut_alone_fraction or 0:.1%} of the pool)"
        )
    click.echo(f"wrote {out} ({r.kept_samples:,} uids, dtype u8,u8, sorted) and its manifest {manifest}")
    if r.total_samples and r.unknown_clusters == r.kept_clusters + r.dropped_clusters:
        click.echo("warning: no cluster in the assignments is in the database; check the ids", err=True)


@cli.command("check-subset")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--assignments", type=click.Path(dir_okay=False), default=None,
              help="Check that every uid is in this uid -> cluster file (CSV or Parquet).")
@click.option("--pool", "pool_dir", type=click.Path(file_okay=False), default=None,
              help="Check that every uid is in this folder of DataComp parquet shards (reads their uid column).")
@click.option("--allow-duplicates", is_flag=True,
              help="Accept repeated uids (DataComp's resharder then upsamples those samples).")
def check_subset_cmd(file: str, assignments: str | None, pool_dir: str | None, allow_duplicates: bool) -> None:
    """Check a uid .npy before training: dtype u8,u8, sorted, no duplicates, every uid in the pool."""
    from clusterqc.subset import SubsetError
    from clusterqc.subset_check import check_subset

    if assignments is not None and pool_dir is not None:
        raise UserError("give --assignments FILE or --pool DIR, not both")
    try:
        result = check_subset(file, assignments, pool_dir, allow_duplicates)
    except SubsetError as exc:
        raise UserError(str(exc)) from exc
    if result.ok:
        where = f", all in {result.pool}" if result.pool else " (pool membership not checked: give --assignments or --pool)"
        click.echo(f"{file}: {result.count:,} uids, dtype u8,u8, sorted, no duplicates{where}")
        return
    for problem in result.problems:
        click.echo(f"{file}: {problem}", err=True)
    sys.exit(1)


@cli.command("pool-profile")
@db_option
@click.option("--assignments", required=True, type=click.Path(dir_okay=False),
              help="The DataComp-layout assignments (uid, cluster_id or cluster_label, clip_l14_similarity_score).")
@click.option("--score-column", default=None, metavar="NAME", help="Default clip_l14_similarity_score.")
@one_dataset_option
@dataset_errors
def pool_profile_cmd(db: str | None, assignments: str, score_column: str | None, dataset: str | None) -> None:
    """Store a dataset's pool CLIP-score profile: the cards' pool distribution and the sidebar's CLIP-30% baseline."""
    from clusterqc.pool_profile import record_pool_profile
    from clusterqc.subset import SCORE_COLUMN, SubsetError

    try:
        with _existing_store(db) as store:
            p = record_pool_profile(store, assignments, score_column or SCORE_COLUMN, dataset=dataset)
    except (SubsetError, OSError) as exc:
        raise UserError(str(exc)) from exc
    q = p["percentiles"]
    click.echo(
        f"pool: {p['samples']:,} samples in {p['clusters']:,} clusters; {p['column']} mean {p['mean']:.4f},"
        f" quartiles {q[25]:.4f} / {q[50]:.4f} / {q[75]:.4f}"
    )
    click.echo(
        f"CLIP-30% baseline: score >= {p['baseline_cut']:.6g} keeps {p['baseline_samples']:,}"
        f" ({p['baseline_samples'] / p['samples']:.1%} of the pool)"
    )


def _subset_on_ray(
    store: Store, assignments: str, keep: tuple[str, ...], include_unreviewed: bool, cut: Any = None,
    dataset: str | None = None,
) -> Any:
    """export-uids --engine ray: clusterqc.pool.subset over the Ray engine (the same bytes as local)."""
    from clusterqc.pool.subset import build_subset_on

    ray_engine = _engine("ray")
    try:
        return build_subset_on(ray_engine, store, assignments, keep, include_unreviewed, cut=cut, dataset=dataset)
    except _ray_errors() as exc:
        raise UserError(str(exc)) from exc
    finally:
        ray_engine.close()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="clusterqc")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
