"""The `clusterqc` command: the same steps as the app, for an engineer with thousands of clusters.

User mistakes (bad files, unknown ids, wrong flags) print one line to stderr and exit 1; a
traceback means a bug in clusterqc, not in the user's input.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from clusterqc.store import ENV_DB, Store

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


def open_store(db: str | None) -> Store:
    return Store(db)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="clusterqc")
def cli() -> None:
    """Review image-text clusters for CLIP training: import, propose, review, export."""


@cli.command()
@db_option
def stats(db: str | None) -> None:
    """Counts of clusters, proposals, decisions and reviewers."""
    with open_store(db) as store:
        s = store.stats()
        click.echo(f"database:   {store.path}")
    click.echo(f"clusters:   {s.clusters}")
    click.echo(f"proposals:  {s.proposals} ({s.unparsed} unparsed)")
    for judge, version, n in _judges(db):
        click.echo(f"  {judge} @ {version}: {n}")
    click.echo(f"decisions:  {s.decisions} ({s.reviewed_clusters} clusters reviewed)")
    click.echo(f"reviewers:  {len(s.reviewers)}" + (f" ({', '.join(s.reviewers)})" if s.reviewers else ""))


def _judges(db: str | None) -> list[tuple[str, str, int]]:
    with open_store(db) as store:
        return store.judges()


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="clusterqc")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
