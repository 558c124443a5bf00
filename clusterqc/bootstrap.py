"""First start: an empty database gets the bundled demo clusters and offline proposals.

Why: `streamlit run app.py` on a fresh machine should show real clusters with a model's
verdict beside them, with nothing to configure (issue 2, item 7). The same functions back the
Review page's "Load the demo" and "Run the offline judge" buttons, and work without Streamlit
so the CLI and the tests can call them.

`CLUSTERQC_DEMO=0` turns the automatic import off (for a server meant to hold only a team's
own clusters, and for tests of the empty states); the buttons still work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from clusterqc.store import Store

ENV_DEMO = "CLUSTERQC_DEMO"
DEMO_DATASET = "demo"
_OFF = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class BootstrapResult:
    """What a first start did: clusters imported from the demo, offline proposals added."""

    imported: int = 0
    proposals: int = 0
    problem: str | None = None  # one line when a step could not run (the app still opens)

    @property
    def did_something(self) -> bool:
        return bool(self.imported or self.proposals)


def auto_demo_enabled(env: Mapping[str, str] | None = None) -> bool:
    value = (os.environ if env is None else env).get(ENV_DEMO, "1")
    return value.strip().lower() not in _OFF


def load_demo(store: Store) -> int:
    """Import the bundled demo file into dataset `demo` (idempotent: a second call adds nothing);
    returns clusters added."""
    from clusterqc.ingest import demo_path, import_files

    return import_files(store, [demo_path()], dataset=DEMO_DATASET).added


def run_offline_judge(store: Store, ids: list[str] | None = None, dataset: str | None = None) -> int:
    """Offline proposals for every cluster (of every dataset, or of `dataset`; `ids` of one)
    that has none from this judge version; returns how many.

    The offline judge is local heuristics (no network), fast enough to run inline here.
    """
    from dataclasses import replace

    from clusterqc.judges.offline import OfflineJudge

    judge = OfflineJudge()
    pending = store.pending_keys(judge.name, judge.prompt_version, ids=ids, dataset=dataset)
    proposals = []
    for ds in dict.fromkeys(d for d, _ in pending):
        clusters = store.iter_clusters([cid for d, cid in pending if d == ds], dataset=ds)
        proposals += [replace(judge.judge(c), dataset=ds) for c in clusters]
    return store.add_proposals(proposals) if proposals else 0


def ensure_started(store: Store, env: Mapping[str, str] | None = None) -> BootstrapResult:
    """On an empty database (and unless turned off): import the demo, then judge it offline.

    A database that already holds clusters is left as it is, so a team's own data never gets
    demo clusters mixed in. Two sessions starting at once are safe: both steps are idempotent.
    """
    if not auto_demo_enabled(env) or store.count_clusters() > 0:
        return BootstrapResult()
    try:
        imported = load_demo(store)
    except (ImportError, OSError, ValueError) as exc:  # no demo file / importer: open empty
        return BootstrapResult(problem=f"demo clusters not imported: {exc}")
    try:
        proposals = run_offline_judge(store)
    except ImportError as exc:  # the offline judge is not installed: clusters without proposals
        return BootstrapResult(imported, problem=f"offline judge not run: {exc}")
    return BootstrapResult(imported, proposals)
