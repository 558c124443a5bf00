"""Evaluate prompt versions against the curators, without leakage.

Why it is built this way:
- A version is judged only on reviewed clusters that are NOT among its own examples: a prompt
  that contains a cluster's answer would otherwise be graded on its own homework. When several
  versions are compared, each is scored on the SAME clusters: the agreed human labels minus
  the examples of every compared version, and only where every version gave a verdict (how
  many answers could not be parsed is reported per version instead).
- Answers come from the normal batch runner (`clusterqc.propose`), keyed by (cluster, judge,
  prompt version) like every proposal, so an evaluation is resumable, runs concurrently, and
  the answers are reused by the Review page and the Agreement charts.
- The human truth is a cluster's agreed label: clusters whose reviewers disagree are left out,
  because neither verdict can be counted as the curators' (see `fewshot.candidates`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from clusterqc.fewshot import FewShotError, example_keys, get_prompt
from clusterqc.metrics import CLASSES, PairStats, pair_stats
from clusterqc.model import Verdict
from clusterqc.prompt import PromptTemplate
from clusterqc.store import Store


@dataclass(frozen=True)
class VersionScore:
    """One prompt version's answers against the curators on the common clusters."""

    name: str
    version: str
    judge: str
    stats: PairStats  # rows: human verdict, columns: this version's verdict (metrics.CLASSES order)
    unparsed: int  # common clusters this version answered without a readable verdict
    missing: int  # common clusters this version has no answer for (not run yet, or failed)


@dataclass(frozen=True)
class Flip:
    """A cluster whose verdict changed between two versions; `toward` the curators or away."""

    cluster_id: str
    human: Verdict
    before: Verdict
    after: Verdict

    @property
    def toward(self) -> bool:
        return self.after is self.human


@dataclass(frozen=True)
class Comparison:
    judge: str
    cluster_ids: list[str]  # the common evaluation set (before dropping unanswered clusters)
    compared_ids: list[str]  # where every version gave a verdict: what the scores are over
    scores: list[VersionScore]
    flips: list[Flip] = field(default_factory=list)  # from scores[1] (baseline) to scores[0] (target)
    same_answers: bool = False  # the judge ignores the prompt (offline): versions cannot differ

    @property
    def toward(self) -> int:
        return sum(f.toward for f in self.flips)

    @property
    def away(self) -> int:
        return sum(not f.toward for f in self.flips)


# --------------------------------------------------------------------------- evaluation sets


Key = tuple[str, str]  # (dataset, cluster id)


def gold_labels(store: Store, dataset: str | None = None) -> dict[Key, Verdict]:
    """Each reviewed cluster's agreed human verdict (clusters reviewers disagree on are left out),
    of every dataset or of `dataset`."""
    return {
        (r["dataset"], r["cluster_id"]): Verdict(r["verdict"])
        for r in store.reviewed_clusters(dataset=dataset)
        if r["n_verdicts"] == 1
    }


def evaluation_keys(store: Store, prompts: Sequence[dict[str, Any]], dataset: str | None = None) -> list[Key]:
    """Reviewed clusters none of these prompt versions learned from, by dataset then natural order."""
    leaked: set[tuple[str | None, str]] = set()
    for p in prompts:
        leaked |= example_keys(p)
    return [k for k in gold_labels(store, dataset) if k not in leaked and (None, k[1]) not in leaked]


def evaluation_ids(store: Store, prompts: Sequence[dict[str, Any]], dataset: str | None = None) -> list[str]:
    """`evaluation_keys` as the refs commands print (ids; DATASET:ID with several datasets)."""
    ref = _namer(store)
    return [ref(k) for k in evaluation_keys(store, prompts, dataset)]


def _namer(store: Store) -> Callable[[Key], str]:
    """(dataset, id) -> how commands print it: the id, or DATASET:ID when there are several."""
    several = len(store.dataset_names()) > 1
    return lambda key: f"{key[0]}:{key[1]}" if several else key[1]


# --------------------------------------------------------------------------- running


JudgeFactory = Callable[[PromptTemplate], Any]  # template -> a judge (clusterqc.judges.base.Judge)


def evaluate(
    store: Store,
    names: Sequence[str],
    make_judge: JudgeFactory,
    run_missing: bool = True,
    concurrency: int = 8,
    progress: Callable[..., Any] | None = None,
    cancel: Any = None,
    dataset: str | None = None,
) -> Comparison:
    """Ask the judge, with each version, about the common evaluation set; then compare.

    `names[0]` is the version under evaluation, the others are what it is compared with.
    Only missing answers are asked for: the batch runner skips clusters that already have an
    answer from (judge, version), so a second evaluation (or an interrupted one) is cheap.
    """
    prompts = [get_prompt(store, n) for n in names]
    if len({p["version"] for p in prompts}) < len(prompts):
        raise FewShotError("the same prompt version is listed twice")
    keys = evaluation_keys(store, prompts, dataset)
    if not keys:
        raise FewShotError("no reviewed clusters outside these versions' examples: review more clusters first")
    judges = [make_judge(PromptTemplate(p["template"], name=p["name"])) for p in prompts]
    try:
        if run_missing:
            from clusterqc import propose  # the runner pulls in the HTTP stack; only needed here

            for judge in judges:
                for ds in dict.fromkeys(d for d, _ in keys):
                    result = propose.run_batch(
                        store, judge, ids=[c for d, c in keys if d == ds], concurrency=concurrency,
                        progress=progress, cancel=cancel, dataset=ds,
                    )
                    if result.stopped:
                        raise FewShotError(f"evaluation stopped: {result.stopped}")
        return compare(store, names, judges[0].name, [j.prompt_version for j in judges], dataset=dataset)
    finally:
        for judge in judges:
            close = getattr(judge, "close", None)
            if close is not None:
                close()


# --------------------------------------------------------------------------- scoring


def compare(
    store: Store, names: Sequence[str], judge: str, prompt_versions: Sequence[str] | None = None,
    dataset: str | None = None,
) -> Comparison:
    """Score versions `names` (the first is the target, the second its baseline) on common clusters.

    `prompt_versions` overrides the version under which each one's answers are stored (a judge
    that ignores the prompt, like the offline one, stores all its answers under one version).
    """
    prompts = [get_prompt(store, n) for n in names]
    versions = list(prompt_versions) if prompt_versions else [p["version"] for p in prompts]
    ref = _namer(store)
    gold = {ref(k): v for k, v in gold_labels(store, dataset).items()}
    ids = evaluation_ids(store, prompts, dataset)
    answers = [_answers(store, judge, v, ids, dataset) for v in versions]
    compared = [cid for cid in ids if all(a.get(cid) is not None for a in answers)]
    truth = [gold[cid].value for cid in compared]
    scores = [
        VersionScore(
            name=p["name"] or p["version"],
            version=p["version"],
            judge=judge,
            stats=pair_stats(truth, [a[cid].value for cid in compared]),
            unparsed=sum(cid in a and a[cid] is None for cid in ids),
            missing=sum(cid not in a for cid in ids),
        )
        for p, a in zip(prompts, answers)
    ]
    flips = []
    if len(answers) >= 2:
        after, before = answers[0], answers[1]
        flips = [Flip(cid, gold[cid], before[cid], after[cid]) for cid in compared if before[cid] is not after[cid]]
    same = len(versions) > 1 and len(set(versions)) == 1
    return Comparison(judge, ids, compared, scores, flips, same_answers=same)


def _answers(
    store: Store, judge: str, version: str, ids: Sequence[str], dataset: str | None = None
) -> dict[str, Verdict | None]:
    """cluster ref -> verdict (None: unparsed) for the clusters this judge and version answered."""
    wanted, ref = set(ids), _namer(store)
    out = {}
    for p in store.proposals(judge, version, dataset=dataset):
        name = ref((p.dataset, p.cluster_id))
        if name in wanted:
            out[name] = p.verdict
    return out


# --------------------------------------------------------------------------- reporting


def _num(x: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if x is None else fmt.format(x)


def score_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One row per version: what the CLI table and the page's dataframe show."""
    rows = []
    for s in comparison.scores:
        k = s.stats.kappa
        (aa, au), (ua, uu) = s.stats.confusion
        rows.append(
            {
                "prompt": s.name,
                "version": s.version,
                "n": s.stats.n,
                "agreement": s.stats.agreement,
                "kappa": k.value,
                "kappa_low": k.low,
                "kappa_high": k.high,
                # Confusion cells: human verdict -> model verdict (A: Acceptable, U: Unacceptable).
                "A->A": aa,
                "A->U": au,
                "U->A": ua,
                "U->U": uu,
                "unparsed": s.unparsed,
                "missing": s.missing,
            }
        )
    return rows


def format_comparison(comparison: Comparison) -> str:
    """The comparison as plain text: scores table, then the flips toward / away from the curators."""
    lines = [
        f"judge {comparison.judge}: {len(comparison.compared_ids)} reviewed clusters compared "
        f"({len(comparison.cluster_ids)} outside every compared version's examples)",
        "",
        f"{'prompt':<16} {'version':<13} {'n':>4} {'agree':>6} {'kappa':>6} {'95% CI':>15}"
        f" {'A->A':>5} {'A->U':>5} {'U->A':>5} {'U->U':>5} {'unparsed':>8} {'missing':>7}",
    ]
    for r in score_rows(comparison):
        ci = f"[{_num(r['kappa_low'], '{:.2f}')}, {_num(r['kappa_high'], '{:.2f}')}]"
        lines.append(
            f"{r['prompt'][:16]:<16} {r['version']:<13} {r['n']:>4} {_num(r['agreement']):>6} "
            f"{_num(r['kappa']):>6} {ci:>15} {r['A->A']:>5} {r['A->U']:>5} {r['U->A']:>5} {r['U->U']:>5}"
            f" {r['unparsed']:>8} {r['missing']:>7}"
        )
    if comparison.same_answers:
        lines.append(f"note: judge {comparison.judge} does not read the prompt, so every version gets its answers")
    notes = [f"{s.name}: kappa {s.stats.kappa.note}" for s in comparison.scores if s.stats.kappa.note]
    lines += [""] + notes if notes else []
    lines.append("confusion cells: human verdict -> model verdict (A = Acceptable, U = Unacceptable)")
    if len(comparison.scores) >= 2:
        target, base = comparison.scores[0].name, comparison.scores[1].name
        lines += ["", f"{len(comparison.flips)} cluster(s) changed verdict from {base} to {target}: "
                  f"{comparison.toward} toward the curators, {comparison.away} away"]
        for f in comparison.flips:
            lines.append(
                f"  {f.cluster_id:<16} {f.before.value:>12} -> {f.after.value:<12} "
                f"human {f.human.value:<12} {'toward' if f.toward else 'away'}"
            )
    return "\n".join(lines)


__all__ = [
    "CLASSES",
    "Comparison",
    "Flip",
    "VersionScore",
    "compare",
    "evaluation_ids",
    "format_comparison",
    "gold_labels",
    "evaluate",
    "score_rows",
]
