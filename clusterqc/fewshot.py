"""Few-shot curation: reviewed clusters become the worked examples of the next prompt.

Why it exists: the seed prompt's three examples are invented, while every override a curator
makes is a real, labelled, hard example. This module turns decisions into examples (marked by a
reviewer, or suggested: balanced across verdicts, overrides first, spread across different kinds
of clusters), builds and stores prompt versions from them, keeps one version active, and records
which guideline text decisions were made under so a guideline change can queue them for a
second look. Evaluation of a version lives in `clusterqc.evaluate`.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from clusterqc.model import Verdict
from clusterqc.prompt import (
    FewShotExample,
    PromptTemplate,
    TemplateError,
    default_template,
    load_template,
    save_template,
    template_examples,
    with_examples,
)
from clusterqc.store import Store

ACTIVE_PROMPT = "active_prompt"  # setting: version hash of the prompt proposals use
GUIDELINE = "guideline"  # setting: version hash of the current guideline text (read by Store.decide)
MODES = ("replace", "append")


class FewShotError(ValueError):
    """A curation request that cannot be done as asked (unknown cluster, missing reason, ...)."""


# --------------------------------------------------------------------------- candidates


@dataclass(frozen=True)
class Candidate:
    """A reviewed cluster that could serve as an example.

    `overridden`: a reviewer disagreed with the model here, so the model needs this lesson most.
    `reason`: the text the example would carry (the marked reason, else the model's reason when
    the reviewer accepted it, else the reviewer's note); may be empty.
    """

    cluster_id: str
    verdict: Verdict
    overridden: bool
    reason: str
    marked: bool
    text: str
    dataset: str | None = None
    ref: str = ""  # how commands name it: the id, or DATASET:ID when the database holds several

    @property
    def key(self) -> tuple[str | None, str]:
        return (self.dataset, self.cluster_id)


def parse_ref(store: Store, ref: str, dataset: str | None = None) -> tuple[str, str]:
    """`DATASET:ID` (when DATASET is a dataset of the database) or an id of `dataset` (None: the
    only one) -> (dataset, id). Dataset names hold no ':', so the split is never ambiguous."""
    ref = ref.strip()
    head, sep, tail = ref.partition(":")
    if sep and head in store.dataset_names():
        return head, tail
    return store.resolve_dataset(dataset), ref


def cluster_ref(store: Store, dataset: str | None, cluster_id: str) -> str:
    """The way commands print a cluster: its id, qualified by its dataset when there are several."""
    return f"{dataset}:{cluster_id}" if dataset and len(store.dataset_names()) > 1 else cluster_id


def _reason_of(row: dict[str, Any]) -> str:
    if row["example_reason"]:
        return row["example_reason"]
    if row["agrees"] == 1 and row["model_reason"]:
        return row["model_reason"]
    return row["note"] or ""


def candidates(store: Store, dataset: str | None = None) -> list[Candidate]:
    """Reviewed clusters whose reviewers agree, of every dataset (or `dataset`), in natural id order.

    A cluster reviewers disagree on teaches the model nothing reliable, so it is left out.
    """
    several = len(store.dataset_names()) > 1
    return [
        Candidate(
            cluster_id=r["cluster_id"],
            verdict=Verdict(r["verdict"]),
            overridden=bool(r["overridden"]),
            reason=_reason_of(r),
            marked=r["example_reason"] is not None,
            text=r["text"],
            dataset=r["dataset"],
            ref=f"{r['dataset']}:{r['cluster_id']}" if several else r["cluster_id"],
        )
        for r in store.reviewed_clusters(dataset=dataset)
        if r["n_verdicts"] == 1
    ]


def offered_reason(store: Store, cluster_id: str, dataset: str | None = None) -> str:
    """The reason a reviewer starts from when marking: their earlier one, or the model's if accepted."""
    dataset, cluster_id = parse_ref(store, cluster_id, dataset)
    rows = store.reviewed_clusters(cluster_id, dataset=dataset)
    return _reason_of(rows[0]) if rows else ""


# --------------------------------------------------------------------------- marking


def reason_evidence(store: Store, cluster_id: str, dataset: str | None = None) -> str | None:
    """The offline judge's numbers behind its reason for this cluster, for a hover text beside
    the reason; the reason itself stays a plain sentence, since it is what the prompt teaches."""
    from clusterqc.judges.offline import metrics_of

    for proposal in reversed(store.proposals_for(cluster_id, dataset=dataset)):
        metrics = metrics_of(proposal.raw)
        if metrics:
            return metrics
    return None


def mark_example(
    store: Store, cluster_id: str, reason: str, marked_by: str, dataset: str | None = None
) -> dict[str, Any]:
    """Mark a decided cluster as an example with `reason`; its verdict is the cluster's label.

    `cluster_id` may be `DATASET:ID`; a plain id is of `dataset` (None: the only one)."""
    dataset, cluster_id = parse_ref(store, cluster_id, dataset)
    row = next(iter(store.reviewed_clusters(cluster_id, dataset=dataset)), None)
    if row is None:
        known = store.cluster_info(cluster_id, dataset=dataset) is not None
        why = "has no decision yet (decide it first)" if known else "is not in the database"
        raise FewShotError(f"cluster {cluster_id} {why}")
    if row["n_verdicts"] > 1:
        raise FewShotError(f"cluster {cluster_id}: reviewers disagree on its verdict; settle it first")
    reason = " ".join((reason or "").split())
    if not reason:
        raise FewShotError(f"cluster {cluster_id}: an example needs a reason (the model learns from it)")
    if not marked_by or not marked_by.strip():
        raise FewShotError("marking an example needs a reviewer name")
    store.set_example(cluster_id, Verdict(row["verdict"]), reason, marked_by.strip(), row["decision_id"],
                      dataset=dataset)
    return store.examples([cluster_id], dataset=dataset)[0]


def unmark_example(store: Store, cluster_id: str, dataset: str | None = None) -> bool:
    dataset, cluster_id = parse_ref(store, cluster_id, dataset)
    return store.remove_example(cluster_id, dataset=dataset)


# --------------------------------------------------------------------------- suggestion


def _vectors(texts: Sequence[str]) -> Any:
    """L2-normalised TF-IDF rows of the clusters' sample texts (sparse; dot product = cosine).

    Words are enough to tell "the same kind of cluster" (shared vocabulary
    such as file names, product listings, one language) from different kinds. Kept sparse and
    compared only against the few picked rows, so thousands of reviewed clusters cost no
    n x n matrix.
    """
    try:
        return TfidfVectorizer(sublinear_tf=True, dtype=np.float32).fit_transform(texts)
    except ValueError:  # no word at all in any text (empty vocabulary): every pair equally (un)alike
        return np.zeros((len(texts), 1))


def _quotas(k: int, counts: dict[Verdict, int]) -> dict[Verdict, int]:
    """Half of `k` per verdict; what one verdict cannot fill goes to the other."""
    order = sorted(Verdict, key=lambda v: (-counts[v], v.value))
    quota = {order[0]: (k + 1) // 2, order[1]: k // 2}
    for v, other in ((order[0], order[1]), (order[1], order[0])):
        spare = quota[v] - min(quota[v], counts[v])
        quota[v] -= spare
        quota[other] += spare
    return {v: min(quota[v], counts[v]) for v in Verdict}


def suggest(store: Store, k: int, exclude: Iterable[str] = (), dataset: str | None = None) -> list[Candidate]:
    """Up to `k` examples: balanced across verdicts, overrides first, spread across kinds.

    Greedy farthest-point selection on TF-IDF cosine similarity: each pick is, among the
    remaining candidates of the verdict whose turn it is (overrides before the rest), the one
    least similar to everything picked so far; the first pick of a verdict is its most typical
    cluster (closest to the verdict's centroid). Ties go to the natural id order, so the result
    is deterministic.
    """
    if k < 1:
        raise FewShotError(f"--k must be at least 1, not {k}")
    skip = set(exclude)
    pool = [c for c in candidates(store, dataset) if (c.ref or c.cluster_id) not in skip]
    if not pool:
        return []
    vectors = _vectors([c.text for c in pool])
    quota = _quotas(k, {v: sum(c.verdict is v for c in pool) for v in Verdict})
    chosen: list[int] = []
    turn = sorted(Verdict, key=lambda v: -quota[v])
    while any(quota.values()):
        for verdict in turn:
            if quota[verdict]:
                chosen.append(_pick(pool, vectors, chosen, verdict))
                quota[verdict] -= 1
    return [pool[i] for i in chosen]


def has_reason(candidate: Candidate) -> bool:
    """Whether a candidate can go into a prompt as it is (`examples_for` refuses it otherwise)."""
    return bool(candidate.reason.strip())


def suggest_usable(store: Store, k: int, dataset: str | None = None) -> tuple[list[Candidate], list[Candidate]]:
    """(up to `k` examples usable as they are, the ones `suggest` would add that need a reason first).

    Why: an unmarked override the reviewer accepted without a note has no reason to show the
    model, and `prompt create` refuses it; a suggested command must run as printed, so those
    are left out of the picks (the next usable candidates take their place) and listed apart,
    to be marked with a reason.
    """
    everything = suggest(store, k, dataset=dataset)
    need_reason = [c for c in everything if not has_reason(c)]
    without = [c.ref or c.cluster_id for c in candidates(store, dataset) if not has_reason(c)]
    usable = suggest(store, k, exclude=without, dataset=dataset) if need_reason else everything
    return usable, need_reason


def _dense(x: Any) -> np.ndarray:
    return np.asarray(x.toarray() if hasattr(x, "toarray") else x)


def _pick(pool: Sequence[Candidate], vectors: Any, chosen: list[int], verdict: Verdict) -> int:
    taken = set(chosen)
    left = [i for i, c in enumerate(pool) if c.verdict is verdict and i not in taken]
    tier = [i for i in left if pool[i].overridden] or left
    rows = vectors[tier]
    if not any(pool[j].verdict is verdict for j in chosen):
        same = [i for i, c in enumerate(pool) if c.verdict is verdict]
        centroid = np.asarray(vectors[same].mean(axis=0)).ravel()
        return tier[int(np.argmax(_dense(rows @ centroid)))]
    closeness = _dense(rows @ vectors[chosen].T).max(axis=1)
    return tier[int(np.argmin(closeness))]


# --------------------------------------------------------------------------- prompt versions


def examples_for(store: Store, cluster_ids: Sequence[str], dataset: str | None = None) -> list[FewShotExample]:
    """Few-shot examples for these clusters (ids of `dataset`, or `DATASET:ID` from any dataset),
    in the given order, with their reasons; each records which (dataset, cluster) it is.

    A cluster not marked yet uses the reason a reviewer would be offered; one with no reason at
    all is refused (an example without a reason teaches the format, not the judgement).
    """
    ids = [i.strip() for i in cluster_ids if i.strip()]
    if not ids:
        raise FewShotError("no example cluster ids given")
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise FewShotError(f"example listed twice: {', '.join(dupes)}")
    by_key = {c.key: c for c in candidates(store)}
    out = []
    for cid in ids:
        key = parse_ref(store, cid, dataset)
        cluster = store.get_cluster(key[1], dataset=key[0])
        if cluster is None:
            raise FewShotError(f"cluster {cid} is not in the database")
        cand = by_key.get(key)
        if cand is None:
            raise FewShotError(f"cluster {cid} has no agreed human verdict (decide it first)")
        if not cand.reason.strip():
            raise FewShotError(
                f"cluster {cid} has no reason to show the model: mark it first "
                f"(clusterqc fewshot mark {cid} --reason \"...\")"
            )
        out.append(FewShotExample.from_cluster(cluster, cand.reason, cand.verdict))
    return out


def base_template(store: Store, base: str | Path | None) -> PromptTemplate:
    """The template a new version starts from: a file, a stored version/name, or the active one."""
    if base is None:
        return active_template(store)
    try:
        stored = get_prompt(store, str(base))
        return PromptTemplate(stored["template"], name=stored["name"])
    except FewShotError:
        pass
    if Path(base).exists():
        return load_template(base)
    raise FewShotError(f"--base {base}: neither a stored prompt name/version nor a file")


def create_prompt(
    store: Store,
    name: str,
    cluster_ids: Sequence[str],
    mode: str = "replace",
    base: str | Path | None = None,
    dataset: str | None = None,
) -> dict[str, Any]:
    """Build a prompt version from `base` and the examples of `cluster_ids`, and store it.

    Stored with its examples (cluster ids, reasons, verdicts) and its parent version, so an
    evaluation can leave its own examples out and a diff can show where it came from.
    """
    if mode not in MODES:
        raise FewShotError(f"--mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not name or not name.strip():
        raise FewShotError("a prompt version needs a name")
    name = name.strip()
    taken = store.get_prompt(name)
    parent = base_template(store, base)
    examples = examples_for(store, cluster_ids, dataset)
    template = with_examples(parent, examples, mode=mode, name=name)
    if taken is not None and taken["name"] == name and taken["version"] != template.version:
        raise FewShotError(f"prompt name {name!r} is already used by version {taken['version']}")
    kept = list(examples)
    if mode == "append":
        kept = _parent_examples(store, parent) + kept
    if parent.version == default_template().version:
        ensure_seed(store)  # so the parent can be listed and diffed like any version
    save_template(store, template, examples=kept, parent=parent.version)
    return store.get_prompt(template.version) or {}


def _parent_examples(store: Store, parent: PromptTemplate) -> list[FewShotExample]:
    """The parent's examples: as stored (with cluster ids), else as written in its text (the seed)."""
    stored = store.get_prompt(parent.version)
    if stored is not None and stored["examples"]:
        return [FewShotExample.from_dict(e) for e in stored["examples"]]
    return template_examples(parent)


def ensure_seed(store: Store) -> str:
    """Store the shipped seed prompt (idempotent) so it can be listed, diffed and evaluated."""
    return save_template(store, default_template())


def example_cluster_ids(prompt_row: dict[str, Any]) -> set[str]:
    """Ids of the clusters a stored prompt version learned from (of any dataset)."""
    return {e["cluster_id"] for e in prompt_row.get("examples", []) if e.get("cluster_id")}


def example_keys(prompt_row: dict[str, Any]) -> set[tuple[str | None, str]]:
    """(dataset, id) of the clusters a version learned from: never part of its own evaluation.
    The dataset is None for an example stored without one (it then leaks into every dataset)."""
    return {(e.get("dataset"), e["cluster_id"]) for e in prompt_row.get("examples", []) if e.get("cluster_id")}


def _seed_row() -> dict[str, Any]:
    seed = default_template()
    return {"version": seed.version, "name": seed.name, "template": seed.text, "examples": [],
            "parent": None, "created_at": ""}


def get_prompt(store: Store, name_or_version: str) -> dict[str, Any]:
    """A stored version by name or hash. The shipped seed is always there, stored or not, so
    reading it (or failing) never writes to the database."""
    row = store.get_prompt(name_or_version)
    seed = _seed_row()
    if row is None and name_or_version in (seed["name"], seed["version"]):
        row = seed
    if row is None:
        known = ", ".join(dict.fromkeys(["seed"] + [p["name"] or p["version"] for p in store.prompts()]))
        raise FewShotError(f"no prompt named {name_or_version!r} (known: {known})")
    return row


def activate(store: Store, name_or_version: str) -> dict[str, Any]:
    """Make a version the one proposals use from now on."""
    row = get_prompt(store, name_or_version)
    store.set_setting(ACTIVE_PROMPT, row["version"])
    return row


def active_version(store: Store) -> str:
    return store.get_setting(ACTIVE_PROMPT) or default_template().version


def active_template(store: Store) -> PromptTemplate:
    """The active prompt version (the seed until another one is activated)."""
    row = get_prompt(store, active_version(store))
    return PromptTemplate(row["template"], name=row["name"])


def list_prompts(store: Store) -> list[dict[str, Any]]:
    """Every stored version, oldest first, with its example count and whether it is active."""
    active = active_version(store)
    stored = store.prompts()
    if not any(p["version"] == _seed_row()["version"] for p in stored):
        stored.insert(0, _seed_row())
    return [
        {
            "name": p["name"] or "",
            "version": p["version"],
            "examples": len(p["examples"]),
            "from_clusters": len(example_cluster_ids(p)),
            "parent": p["parent"] or "",
            "active": p["version"] == active,
            "created_at": p["created_at"],
        }
        for p in stored
    ]


def diff_prompts(store: Store, a: str, b: str, context: int = 3) -> str:
    """Unified diff of two stored versions' template texts ("" when identical)."""
    ra, rb = get_prompt(store, a), get_prompt(store, b)
    lines = difflib.unified_diff(
        ra["template"].splitlines(keepends=True),
        rb["template"].splitlines(keepends=True),
        fromfile=f"{ra['name'] or ra['version']} ({ra['version']})",
        tofile=f"{rb['name'] or rb['version']} ({rb['version']})",
        n=context,
    )
    return "".join(lines)


def preview(
    store: Store, name_or_version: str, cluster_id: str | None = None, dataset: str | None = None
) -> str:
    """The text the model would get: the template rendered for a cluster (an id of `dataset`, or
    `DATASET:ID`), or for the first cluster."""
    row = get_prompt(store, name_or_version)
    template = PromptTemplate(row["template"], name=row["name"])
    if cluster_id:
        ds, cid = parse_ref(store, cluster_id, dataset)
        cluster = store.get_cluster(cid, dataset=ds)
    else:
        first = store.cluster_keys(dataset)[:1]
        cluster = store.get_cluster(first[0][1], dataset=first[0][0]) if first else None
    if cluster is None:
        if cluster_id:
            raise FewShotError(f"cluster {cluster_id} is not in the database")
        return template.render_texts([], [])
    return template.render(cluster)


# --------------------------------------------------------------------------- guidelines


def guideline_version(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def set_guideline(store: Store, text: str) -> str:
    """Make `text` the current guideline: decisions from now on are recorded under its hash."""
    text = text.strip()
    if not text:
        raise FewShotError("the guideline text is empty")
    version = guideline_version(text)
    store.save_guideline(version, text)
    store.set_setting(GUIDELINE, version)
    return version


def current_guideline(store: Store) -> str | None:
    """Hash of the current guideline text (None until one is set)."""
    return store.get_setting(GUIDELINE)


def current_guideline_text(store: Store) -> str:
    version = current_guideline(store)
    return next((g["text"] for g in store.guidelines() if g["version"] == version), "")


def stale_labels(store: Store) -> list[dict[str, Any]]:
    """Standing labels decided under an older guideline (or before any was recorded)."""
    current = current_guideline(store)
    return store.labels_not_under(current) if current else []


def queue_stale(store: Store) -> int:
    """Queue every cluster with a stale label for a second look (Review filter "recheck")."""
    stale = stale_labels(store)
    ids = [(r["dataset"], r["cluster_id"]) for r in stale]
    if not ids:
        return 0
    return store.queue_rechecks(ids, why=f"decided before guideline {current_guideline(store)}")


__all__ = [
    "ACTIVE_PROMPT",
    "Candidate",
    "FewShotError",
    "TemplateError",
    "activate",
    "active_template",
    "active_version",
    "candidates",
    "create_prompt",
    "current_guideline",
    "diff_prompts",
    "ensure_seed",
    "example_cluster_ids",
    "list_prompts",
    "mark_example",
    "offered_reason",
    "reason_evidence",
    "preview",
    "queue_stale",
    "set_guideline",
    "stale_labels",
    "suggest",
]
