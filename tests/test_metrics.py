"""Agreement metrics against hand-checked values, on plain frames and through a real store."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import cohen_kappa_score

from clusterqc import metrics
from clusterqc.metrics import (
    agreement_over_time,
    agreement_report,
    bootstrap_kappa_ci,
    current_labels,
    judge_metrics,
    kappa_from_counts,
    pair_stats,
    reviewer_agreement,
    reviewer_model_agreement,
)
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

A, U = "Acceptable", "Unacceptable"


def cells(aa: int, au: int, ua: int, uu: int) -> tuple[list[str], list[str]]:
    """Two raters' verdict lists with the given 2x2 cell counts (rows: first rater)."""
    a = [A] * (aa + au) + [U] * (ua + uu)
    b = [A] * aa + [U] * au + [A] * ua + [U] * uu
    return a, b


# --------------------------------------------------------------------------- one pair


def test_perfect_agreement() -> None:
    s = pair_stats([A, U, A, U, U], [A, U, A, U, U])
    assert (s.n, s.agreement, s.kappa.value) == (5, 1.0, 1.0)
    assert s.confusion == [[2, 0], [0, 3]]
    assert (s.precision, s.recall) == (1.0, 1.0)
    assert (s.kappa.low, s.kappa.high) == (1.0, 1.0)


def test_zero_kappa() -> None:
    # po = 0.5, both raters 50/50 so pe = 0.5: kappa = 0.
    s = pair_stats([A, A, U, U], [A, U, A, U])
    assert s.kappa.value == pytest.approx(0.0)
    assert s.agreement == 0.5
    assert s.confusion == [[1, 1], [1, 1]]
    assert (s.precision, s.recall) == (0.5, 0.5)


def test_zero_kappa_when_one_rater_uses_one_class() -> None:
    # po = 2/3, pe = 1 * 2/3: kappa = 0 (defined: the other rater used both classes).
    s = pair_stats([A, A, U], [A, A, A])
    assert s.kappa.value == pytest.approx(0.0)
    assert s.recall == 0.0 and s.precision is None  # the model never said Unacceptable


def test_negative_kappa() -> None:
    # Human A A A U U, model A U U A A: po = 0.2, pe = .6*.6 + .4*.4 = .52, kappa = -.32/.48 = -2/3.
    s = pair_stats([A, A, A, U, U], [A, U, U, A, A])
    assert s.kappa.value == pytest.approx(-2 / 3)
    assert s.agreement == pytest.approx(0.2)
    assert s.confusion == [[1, 2], [2, 0]]
    assert (s.precision, s.recall) == (0.0, 0.0)


def test_textbook_example() -> None:
    # The classic 50-item example (Yes = Unacceptable): 20 both yes, 5 / 10 split, 15 both no.
    a, b = cells(aa=15, au=10, ua=5, uu=20)
    s = pair_stats(a, b)
    assert s.kappa.value == pytest.approx(0.4)
    assert s.agreement == pytest.approx(0.7)
    assert s.precision == pytest.approx(20 / 30) and s.recall == pytest.approx(20 / 25)
    assert s.kappa.low < 0.4 < s.kappa.high


def test_single_class_kappa_is_undefined_not_a_crash() -> None:
    s = pair_stats([A, A, A], [A, A, A])
    assert s.kappa.value is None and "undefined" in s.kappa.note and A in s.kappa.note
    assert s.agreement == 1.0


def test_nothing_to_compare() -> None:
    s = pair_stats([], [])
    assert s.n == 0 and s.agreement is None and s.kappa.value is None and s.kappa.note


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError, match="different numbers"):
        pair_stats([A], [A, U])


@settings(max_examples=80, deadline=None)
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")
@given(st.lists(st.integers(0, 30), min_size=4, max_size=4).filter(lambda c: sum(c) > 0))
def test_kappa_from_counts_matches_scikit_learn(counts: list[int]) -> None:
    a, b = cells(*counts)
    expected = cohen_kappa_score(a, b, labels=[A, U], replace_undefined_by=np.nan)
    got = float(kappa_from_counts(np.array(counts)))
    assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected)


def test_bootstrap_is_seeded_and_matches_resampling_pairs() -> None:
    a, b = cells(aa=15, au=10, ua=5, uu=20)
    counts = np.array([15, 10, 5, 20])
    assert bootstrap_kappa_ci(counts, seed=3) == bootstrap_kappa_ci(counts, seed=3)
    assert bootstrap_kappa_ci(counts, seed=3) != bootstrap_kappa_ci(counts, seed=4)
    # The multinomial shortcut must agree with the plain bootstrap (resample the pairs).
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 50, size=(1500, 50))
    aa, bb = np.array(a)[idx], np.array(b)[idx]
    plain = [cohen_kappa_score(x, y, labels=[A, U]) for x, y in zip(aa, bb)]
    plain_low, plain_high = np.nanpercentile(plain, [2.5, 97.5])
    low, high = bootstrap_kappa_ci(counts, n_boot=4000, seed=1)
    assert low == pytest.approx(plain_low, abs=0.05) and high == pytest.approx(plain_high, abs=0.05)


# --------------------------------------------------------------------------- frames


def labels_df(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    """(cluster, reviewer, verdict, decided_at) in decision order."""
    return pd.DataFrame(
        [
            {"cluster_id": c, "reviewer": r, "verdict": v, "decision_id": i + 1, "decided_at": t}
            for i, (c, r, v, t) in enumerate(rows)
        ]
    )


def proposals_df(rows: list[tuple[str, str, str, str | None]]) -> pd.DataFrame:
    """(cluster, judge, prompt_version, verdict or None for unparsed)."""
    return pd.DataFrame(
        [
            {"id": i + 1, "cluster_id": c, "judge": j, "prompt_version": v, "verdict": verdict, "reason": "r"}
            for i, (c, j, v, verdict) in enumerate(rows)
        ]
    )


def test_unparsed_proposals_are_counted_apart() -> None:
    day = "2026-01-05T10:00:00+00:00"
    labels = labels_df([("c1", "ann", A, day), ("c2", "ann", U, day), ("c3", "ann", U, day), ("c4", "ann", A, day)])
    props = proposals_df(
        [("c1", "m", "v1", A), ("c2", "m", "v1", U), ("c3", "m", "v1", None), ("c4", "m", "v1", None),
         ("c5", "m", "v1", U)]
    )
    (m,) = judge_metrics(labels, props)
    assert (m.n_proposals, m.n_reviewed, m.n_unparsed, m.stats.n) == (5, 4, 2, 2)
    assert m.stats.agreement == 1.0 and m.stats.kappa.value == 1.0


def test_current_label_is_the_latest_standing_decision() -> None:
    day = "2026-01-05T10:00:00+00:00"
    labels = labels_df([("c1", "ann", A, day), ("c1", "bob", U, day)])
    cur = current_labels(labels)
    assert cur.loc[0, "label"] == U and cur.loc[0, "reviewers"] == ["ann", "bob"] and cur.loc[0, "n_reviews"] == 2


def test_agreement_over_time_by_decision_day() -> None:
    labels = labels_df(
        [("c1", "ann", A, "2026-01-05T10:00:00+00:00"), ("c2", "ann", U, "2026-01-05T23:59:00+00:00"),
         ("c3", "ann", U, "2026-01-06T00:01:00+00:00"), ("c4", "ann", A, "2026-01-06T09:00:00+00:00")]
    )
    props = proposals_df([("c1", "m", "v1", A), ("c2", "m", "v1", A), ("c3", "m", "v1", U), ("c4", "m", "v1", U),
                          ("c1", "m", "v2", A)])
    out = agreement_over_time(labels, props)
    v1 = out[out["prompt_version"] == "v1"]
    assert [str(p.date()) for p in v1["period"]] == ["2026-01-05", "2026-01-06"]
    assert v1["agreement"].tolist() == [0.5, 0.5] and v1["n"].tolist() == [2, 2]
    assert out[out["prompt_version"] == "v2"]["agreement"].tolist() == [1.0]


def test_per_reviewer_agreement_uses_each_reviewers_own_verdict() -> None:
    day = "2026-01-05T10:00:00+00:00"
    labels = labels_df([("c1", "ann", A, day), ("c2", "ann", U, day), ("c1", "bob", U, day), ("c2", "bob", A, day)])
    props = proposals_df([("c1", "m", "v1", A), ("c2", "m", "v1", U)])
    out = reviewer_model_agreement(labels, props).set_index("reviewer")
    assert out.loc["ann", "agreement"] == 1.0 and out.loc["ann", "kappa"] == 1.0
    assert out.loc["bob", "agreement"] == 0.0 and out.loc["bob", "kappa"] == -1.0


def test_reviewer_kappa_and_krippendorff_alpha_hand_checked() -> None:
    # r1 A A U U, r2 A U U U: kappa = (.75 - .5) / .5 = .5;
    # alpha (nominal) from the coincidence matrix: o_AU + o_UA = 2, n_A = 3, n_U = 5, n = 8:
    # 1 - (n - 1) * 2 / (2 * n_A * n_U) = 1 - 14/30 = 8/15.
    day = "2026-01-05T10:00:00+00:00"
    rows = [(f"c{i}", "r1", v, day) for i, v in enumerate([A, A, U, U])]
    rows += [(f"c{i}", "r2", v, day) for i, v in enumerate([A, U, U, U])]
    rows += [("c9", "r1", A, day)]  # reviewed once: not part of between-reviewer agreement
    ra = reviewer_agreement(labels_df(rows))
    assert ra.n_clusters == 4
    assert ra.kappa.loc["r1", "r2"] == pytest.approx(0.5) == ra.kappa.loc["r2", "r1"]
    assert ra.alpha == pytest.approx(8 / 15)
    assert ra.pairs.iloc[0][["reviewer_a", "reviewer_b", "n"]].tolist() == ["r1", "r2", 4]


def test_reviewer_agreement_degenerate_cases() -> None:
    day = "2026-01-05T10:00:00+00:00"
    none = reviewer_agreement(labels_df([("c1", "r1", A, day), ("c2", "r2", U, day)]))
    assert none.n_clusters == 0 and none.alpha is None and "two reviews" in none.alpha_note
    same = reviewer_agreement(labels_df([("c1", "r1", A, day), ("c1", "r2", A, day)]))
    assert same.n_clusters == 1 and same.alpha is None and "undefined" in same.alpha_note
    assert math.isnan(same.kappa.loc["r1", "r2"])
    empty = reviewer_agreement(metrics.labels_frame([]))
    assert empty.n_clusters == 0


# --------------------------------------------------------------------------- through the store


def make_store(path: Path, n: int) -> Store:
    store = Store(path)
    store.import_clusters(
        [Cluster(f"C_{i}", (Sample(f"caption {i}"),), (Sample(f"far {i}"),)) for i in range(n)], source="t"
    )
    return store


def test_report_from_a_real_store(tmp_path: Path) -> None:
    store = make_store(tmp_path / "m.db", 6)
    model = [A, U, A, U, None, A]
    for i, v in enumerate(model):
        store.add_proposal(Proposal(f"C_{i}", "m", "v1", Verdict.parse(v), "why"))
    pid = {p.cluster_id: p.id for p in store.proposals()}
    human = [A, U, U, U, A]  # C_5 stays unreviewed
    for i, v in enumerate(human):
        store.decide(f"C_{i}", "ann", Verdict(v), proposal_id=pid[f"C_{i}"])
    store.decide("C_0", "bob", Verdict.UNACCEPTABLE)  # now C_0's label is U: a disagreement
    store.decide("C_1", "bob", Verdict.UNACCEPTABLE)
    store.undo_last("bob")  # C_1 back to ann's U only
    report = agreement_report(store)
    (m,) = report.judges
    # Parsed reviewed: C_0 (U vs A), C_1 (U vs U), C_2 (U vs A), C_3 (U vs U): agreement .5, human all U.
    assert (m.n_proposals, m.n_reviewed, m.n_unparsed, m.stats.n) == (6, 5, 1, 4)
    assert m.stats.agreement == 0.5 and m.stats.kappa.value == pytest.approx(0.0)
    assert m.stats.confusion == [[0, 0], [2, 2]]
    assert sorted(report.disagreements["cluster_id"]) == ["C_0", "C_2"]
    assert report.reviewers.n_clusters == 1 and report.n_reviewed == 5
    assert set(report.per_reviewer["reviewer"]) == {"ann", "bob"}


def test_report_on_an_empty_store(tmp_path: Path) -> None:
    report = agreement_report(Store(tmp_path / "e.db"))
    assert report.n_reviewed == 0 and report.judges == [] and report.disagreements.empty
    assert report.over_time.empty and report.per_reviewer.empty and report.reviewers.alpha is None
