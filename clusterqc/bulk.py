"""Bulk review without a screen: a page of N clusters, each row its own decision.

A page lists the next N clusters of the reviewer's queue that have a parsed proposal (held for
the reviewer, so colleagues get other ones), with the verdict each row would record. The
curator flips the rows they disagree with and records the page: every row becomes one
decision exactly as single review's Accept (or Override, for a flipped row) records it, with
the proposal id the page showed. A page is recorded at most once (its token is spent), so a
double press cannot write it twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from dataclasses import dataclass

from clusterqc.model import Decision, Verdict
from clusterqc.review import QueueSettings, load_view
from clusterqc.store import Store

DEFAULT_PAGE = 10
CAPTIONS_PER_ROW = 3


@dataclass(frozen=True)
class BulkRow:
    """One cluster on a bulk page: what Accept would record and a glimpse of its captions."""

    cluster_id: str
    proposal_id: int
    dataset: str
    verdict: Verdict  # the proposal's verdict, recorded unless the row is flipped
    judge: str
    reason: str
    captions: tuple[str, ...]


@dataclass(frozen=True)
class BulkPage:
    token: str
    rows: tuple[BulkRow, ...]
    left_out: tuple[str, ...] = ()  # clusters of the page without a parsed proposal (single review)


def load_page(store: Store, reviewer: str, settings: QueueSettings, n: int = DEFAULT_PAGE, serial: int = 0) -> BulkPage:
    """The next `n` clusters of the reviewer's queue, held for them, as bulk rows."""
    ids = store.next_clusters(
        reviewer, n, settings.filter, settings.sort, settings.wanted, settings.search, dataset=settings.dataset
    )
    rows, left_out = [], []
    for cid in ids:
        view = load_view(store, cid, reviewer, dataset=settings.dataset)
        if view is None or view.primary is None or view.primary.verdict is None or view.primary.id is None:
            left_out.append(cid)
            continue
        captions = tuple(s.text for s in view.cluster.samples[:CAPTIONS_PER_ROW])
        rows.append(BulkRow(cid, view.primary.id, view.cluster.dataset or "", view.primary.verdict, view.primary.judge,
                            view.primary.reason, captions))
    digest = hashlib.sha1("\x00".join(f"{r.cluster_id}:{r.proposal_id}" for r in rows).encode()).hexdigest()
    return BulkPage(f"{serial}-{digest[:10]}", tuple(rows), tuple(left_out))


def row_verdict(row: BulkRow, flipped: bool) -> Verdict:
    return row.verdict.other if flipped else row.verdict


def record_page(store: Store, reviewer: str, page: BulkPage, flipped: Collection[str]) -> list[Decision]:
    """One decision per row, in page order: the shown verdict, or the other one for a flipped row."""
    if not reviewer or not reviewer.strip():
        raise PermissionError("no reviewer: enter your name before deciding")
    unknown = set(flipped) - {r.cluster_id for r in page.rows}
    if unknown:
        raise ValueError(f"flipped clusters not on this page: {', '.join(sorted(unknown))}")
    return [
        store.decide(r.cluster_id, reviewer, row_verdict(r, r.cluster_id in flipped), proposal_id=r.proposal_id,
                     dataset=r.dataset or None)
        for r in page.rows
    ]
