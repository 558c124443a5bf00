"""The learned judge on real DataComp-small captions, with labels from a rule it cannot see.

The clusters are k-means clusters of the shared DataComp sample (its CLIP t-SNE coordinates,
as `clusterqc cluster` builds the demo); a cluster is Unacceptable when the median CLIP score
of ALL its members (hidden: the judge sees 10 captions and no score) is in the lowest 40%.
That is DataComp's own CLIP-score filter lifted to clusters, so a model can only learn it
through what low-scoring captions look like.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.cluster import KMeans

from clusterqc.cli import cli
from clusterqc.judges import learned
from clusterqc.metrics import pair_stats
from clusterqc.model import Cluster, Proposal, Sample, Verdict
from clusterqc.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
A, U = Verdict.ACCEPTABLE, Verdict.UNACCEPTABLE


@dataclass(frozen=True)
class StatsCluster(Cluster):
    """A cluster carrying a `stats` object, as issue 14's clusters will."""

    stats: dict | None = None


@pytest.fixture(scope="module")
def datacomp() -> tuple[list[Cluster], dict[str, str]]:
    """~330 clusters of real captions and their hidden-rule labels (cluster id -> verdict)."""
    rows = [json.loads(line) for line in (FIXTURES / "datacomp_small_sample_tsne.jsonl").open(encoding="utf-8")]
    clip = np.loadtxt(FIXTURES / "datacomp_small_clip_scores.csv", delimiter=",", skiprows=1, usecols=1)
    xy = np.array([r["clip_tsne"] for r in rows])
    km = KMeans(400, n_init=1, random_state=0).fit(xy)
    clusters, medians = [], []
    for j in range(400):
        members = np.flatnonzero(km.labels_ == j)
        if len(members) < 10:
            continue
        order = members[np.argsort(np.linalg.norm(xy[members] - km.cluster_centers_[j], axis=1))]
        clusters.append(Cluster(
            f"Cluster_{j}",
            tuple(Sample(rows[i]["caption"]) for i in order[:5]),
            tuple(Sample(rows[i]["caption"]) for i in order[-5:]),
            size=len(members),
        ))
        medians.append(float(np.median(clip[members])))
    cut = np.percentile(medians, 40)
    labels = {c.id: (U if m < cut else A).value for c, m in zip(clusters, medians)}
    return clusters, labels


def held_out_kappa(clusters: list[Cluster], labels: dict[str, str], train_ids: list[str], test_ids: list[str]) -> float:
    by_id = {c.id: c for c in clusters}
    model = learned.train([by_id[i] for i in train_ids], {i: labels[i] for i in train_ids}, n_boot=0)
    p = model.predict([by_id[i] for i in test_ids])
    predicted = [(U if x >= 0.5 else A).value for x in p]
    return pair_stats([labels[i] for i in test_ids], predicted, n_boot=0).kappa.value


def test_kappa_rises_with_more_labels(datacomp) -> None:
    clusters, labels = datacomp
    ids = [c.id for c in clusters]
    rng = np.random.default_rng(0)
    rng.shuffle(ids)
    test_ids, pool = ids[:120], ids[120:]
    few = [held_out_kappa(clusters, labels, pool[k * 12 : (k + 1) * 12], test_ids) for k in range(3)]
    many = held_out_kappa(clusters, labels, pool[:200], test_ids)
    assert len(pool) >= 200
    # 12 labels: near chance; 200 labels: the hidden CLIP rule is learned from the captions.
    assert many >= 0.35, (few, many)
    assert many > max(few) + 0.1, (few, many)


@pytest.fixture
def labelled_store(tmp_path: Path, datacomp) -> tuple[Store, dict[str, str]]:
    """80 DataComp clusters, the first 40 labelled by reviewer ann with the hidden rule."""
    clusters, labels = datacomp
    store = Store(tmp_path / "l.db")
    store.import_clusters(clusters[:80])
    store.decide_many("ann", [(c.id, Verdict(labels[c.id]), "") for c in clusters[:40]])
    return store, labels


def test_training_clusters_get_out_of_fold_probabilities(labelled_store) -> None:
    store, labels = labelled_store
    run = learned.train_and_propose(store)
    model = run.model
    assert run.proposed == 80
    stored = {p.cluster_id: p for p in store.proposals(judge="learned")}
    train_ids = sorted(model.labels)
    train_clusters = list(store.iter_clusters(train_ids))
    in_sample = dict(zip((c.id for c in train_clusters), model.predict(train_clusters)))
    differs = 0
    for cid in train_ids:
        p = model.oof[cid]
        assert stored[cid].confidence == pytest.approx(max(p, 1 - p), abs=1e-6)
        assert json.loads(stored[cid].raw)["out_of_fold"] is True
        assert stored[cid].verdict == (U if p >= 0.5 else A)
        differs += abs(in_sample[cid] - p) > 0.02
    assert differs >= len(train_ids) * 0.9  # the stored numbers are not the fitted model's
    # In-sample the fitted model agrees with its own labels far better than out of fold:
    # storing in-sample predictions would inflate the Agreement page.
    oof_agree = np.mean([(model.oof[c] >= 0.5) == (labels[c] == U.value) for c in train_ids])
    fit_agree = np.mean([(in_sample[c] >= 0.5) == (labels[c] == U.value) for c in train_ids])
    assert fit_agree > oof_agree
    # A cluster outside the training set gets the fitted model's prediction.
    outside = next(c for c in store.iter_clusters() if c.id not in model.labels)
    p = float(model.predict([outside])[0])
    assert stored[outside.id].confidence == pytest.approx(max(p, 1 - p), abs=1e-6)
    assert json.loads(stored[outside.id].raw)["out_of_fold"] is False
    # The kappa training reports is the one of the stored training proposals vs the labels.
    stored_kappa = pair_stats([labels[c] for c in train_ids], [stored[c].verdict.value for c in train_ids], n_boot=0)
    assert model.kappa.value == pytest.approx(stored_kappa.kappa.value)
    assert model.kappa.low is not None and model.kappa.low <= model.kappa.value <= model.kappa.high


def test_version_is_the_labels_and_settings(labelled_store, datacomp) -> None:
    store, labels = labelled_store
    first = learned.train_and_propose(store)
    again = learned.train_and_propose(store)
    assert again.model.version == first.model.version and again.proposed == 0  # nothing new: no-op
    other = learned.train_from_store(store, learned.Settings(C=0.5))
    assert other.version != first.model.version
    clusters, _ = datacomp
    store.decide(clusters[50].id, "ann", Verdict(labels[clusters[50].id]))
    assert learned.train_from_store(store).version != first.model.version


def test_disagreements_are_left_out_of_training(labelled_store, datacomp) -> None:
    store, labels = labelled_store
    clusters, _ = datacomp
    cid = clusters[0].id
    store.decide(cid, "bob", Verdict(labels[cid]).other)
    assert cid not in learned.training_labels(store)
    same = clusters[1].id
    store.decide(same, "bob", Verdict(labels[same]))
    assert learned.training_labels(store)[same] == labels[same]
    assert cid not in learned.train_from_store(store).oof


def test_refuses_too_few_labels(tmp_path: Path, datacomp) -> None:
    clusters, _ = datacomp
    db = tmp_path / "few.db"
    with Store(db) as store:
        store.import_clusters(clusters[:20])
        store.decide_many("ann", [(c.id, A, "") for c in clusters[:6]] + [(c.id, U, "") for c in clusters[6:9]])
        with pytest.raises(learned.NotEnoughLabels, match="at least 10 agreed labels.*there are 9 "):
            learned.train_from_store(store)
        store.decide_many("ann", [(c.id, A, "") for c in clusters[9:14]] + [(clusters[8].id, A, "")])
        # 14 labels, but only 2 Unacceptable
        with pytest.raises(learned.NotEnoughLabels, match=r"3 of each verdict; there are 14 \(12 Acceptable, 2 Unacceptable\)"):
            learned.train_from_store(store)
        assert not learned.retrain_due(store)
    result = CliRunner().invoke(cli, ["propose", "--judge", "learned", "--db", str(db)], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.output.startswith("error: the learned judge needs at least 10") and result.output.count("\n") == 1
    with Store(db) as store:
        assert store.proposals(judge="learned") == []


def test_cli_propose_learned_prints_cv_kappa(labelled_store) -> None:
    store, _ = labelled_store
    result = CliRunner().invoke(cli, ["propose", "--judge", "learned", "--db", str(store.path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "40 labels" in result.output and "5-fold cross-validated kappa" in result.output and "95% CI" in result.output
    assert "proposed 80 clusters with learned @ learned-" in result.output
    assert all(p.confidence is not None and 0.5 <= p.confidence <= 1 for p in store.proposals(judge="learned"))


def test_stats_are_features_where_present_and_absence_is_fine(datacomp) -> None:
    clusters, labels = datacomp
    clip_like = {c.id: (10.0 if labels[c.id] == U.value else 30.0) for c in clusters}
    with_stats = [StatsCluster(c.id, c.closest, c.furthest, c.size, stats={"clip_score_median": clip_like[c.id],
                                                                          "note": "text is ignored"})
                  if k % 2 == 0 else c for k, c in enumerate(clusters[:60])]
    subset = {c.id: labels[c.id] for c in with_stats}
    model = learned.train(with_stats, subset, n_boot=0)
    assert "stats.clip_score_median" in model.numeric and "stats.note" not in model.numeric
    # Proposing for clusters that lack the stat (or any stats object) works and gives probabilities.
    p = model.predict(clusters[60:70])
    assert p.shape == (10,) and np.all((p >= 0) & (p <= 1))
    # The stat carries the hidden rule for the clusters that have it: the model leans on it.
    plain = learned.train(clusters[:60], subset, n_boot=0)
    assert model.kappa.value > plain.kappa.value


def add_learned(store: Store, cid: str, p_unacc: float, version: str = "learned-v1") -> None:
    verdict = U if p_unacc >= 0.5 else A
    store.add_proposal(Proposal(cid, "learned", version, verdict, "r", confidence=max(p_unacc, 1 - p_unacc)))


def queue_order(store: Store, sort: str, filter: str = "unreviewed") -> list[str]:
    seen: list[str] = []
    while (cid := store.next_cluster("rev", filter=filter, sort=sort, exclude=seen)) is not None:
        seen.append(cid)
    return seen


def test_least_certain_sort_orders_by_probability(tmp_path: Path) -> None:
    from conftest import marked_clusters

    store = Store(tmp_path / "q.db")
    store.import_clusters(marked_clusters(7))
    probs = {"Cluster_0": 0.95, "Cluster_1": 0.52, "Cluster_2": 0.10, "Cluster_3": 0.40, "Cluster_4": 0.70}
    for cid, p in probs.items():
        add_learned(store, cid, p)
    # An older version said Cluster_0 was a coin toss; the newest learned proposal counts.
    store.add_proposal(Proposal("Cluster_0", "learned", "learned-v0", A, "old", confidence=0.5))
    store.add_proposal(Proposal("Cluster_0", "learned", "learned-v2", U, "new", confidence=0.95))
    # Cluster_4 and Cluster_5 tie-break: Cluster_4's judges disagree.
    store.add_proposal(Proposal("Cluster_4", "gpt", "p1", A, "r"))
    assert queue_order(store, "least_certain") == [
        "Cluster_1", "Cluster_3", "Cluster_4", "Cluster_2", "Cluster_0",  # |p - 0.5| ascending
        "Cluster_5", "Cluster_6",  # no learned proposal: last, by id
    ]
    # The filter still applies: a cluster I decided is not handed to me again; a colleague's
    # hold is respected; under "all" the decided one is back.
    store.decide("Cluster_1", "rev", U)
    assert queue_order(store, "least_certain")[0] == "Cluster_3"
    assert store.next_cluster("colleague", sort="least_certain") == "Cluster_3"
    assert store.next_cluster("rev", sort="least_certain") == "Cluster_4"
    store.release_holds("rev")
    store.release_holds("colleague")
    assert store.peek_cluster("all", sort="least_certain") == "Cluster_1"
    store.undo_last("rev")
    # Ties on confidence: the cluster whose judges disagree comes first.
    add_learned(store, "Cluster_5", 0.52)
    store.add_proposal(Proposal("Cluster_5", "gpt", "p1", A, "r"))
    assert queue_order(store, "least_certain")[:2] == ["Cluster_5", "Cluster_1"]


def test_learned_and_llm_disagree_filter(tmp_path: Path) -> None:
    from conftest import marked_clusters

    store = Store(tmp_path / "f.db")
    store.import_clusters(marked_clusters(5))
    add_learned(store, "Cluster_0", 0.9)  # U
    store.add_proposal(Proposal("Cluster_0", "gpt", "p1", A, "r"))  # disagree
    add_learned(store, "Cluster_1", 0.9)
    store.add_proposal(Proposal("Cluster_1", "gpt", "p1", U, "r"))  # agree
    add_learned(store, "Cluster_2", 0.1)
    store.add_proposal(Proposal("Cluster_2", "offline", "offline-v1", U, "r"))  # offline is not an LLM
    add_learned(store, "Cluster_3", 0.2)  # A
    store.add_proposal(Proposal("Cluster_3", "gpt", "p1", None, "", parse_error="x"))  # unparsed: no verdict
    store.add_proposal(Proposal("Cluster_4", "gpt", "p1", U, "r"))  # no learned proposal
    assert queue_order(store, "id", "learned_vs_llm") == ["Cluster_0"]
    assert store.queue_count("rev", "learned_vs_llm") == 1
    store.decide("Cluster_0", "rev", U)
    assert store.queue_count("rev", "learned_vs_llm") == 0


def test_retrain_is_due_every_ten_decisions(labelled_store, datacomp) -> None:
    store, labels = labelled_store
    clusters, _ = datacomp
    assert learned.retrain_due(store)  # 40 decisions, never trained
    learned.train_and_propose(store)
    assert not learned.retrain_due(store)
    for c in clusters[40:49]:
        store.decide(c.id, "ann", Verdict(labels[c.id]))
    assert not learned.retrain_due(store)
    store.decide(clusters[49].id, "ann", Verdict(labels[clusters[49].id]))
    assert learned.retrain_due(store)


def test_retrain_due_follows_the_refusal_rule_decision_by_decision(tmp_path: Path, datacomp) -> None:
    """The Review page's cheap check (capped counts in SQL) says "due" exactly when training
    would not refuse: disagreements left out, undone and re-decided labels followed."""
    import random

    clusters, _ = datacomp
    rng = random.Random(7)
    with Store(tmp_path / "due.db") as store:
        store.import_clusters(clusters[:30])
        seen = set()
        for step in range(80):
            cluster = rng.choice(clusters[:30])
            reviewer = rng.choice(["ann", "bo"])
            if step % 9 == 8:
                store.undo_last(reviewer)
            else:
                store.decide(cluster.id, reviewer, rng.choice([A, U]))
            try:
                learned.check_enough(learned.training_labels(store))
                enough = True
            except learned.NotEnoughLabels:
                enough = False
            seen.add(enough)
            assert learned.retrain_due(store) == enough, step  # never trained: every decision counts
        assert seen == {True, False}


def test_learned_judge_fits_the_batch_runner(labelled_store) -> None:
    from clusterqc.propose import run_batch

    store, _ = labelled_store
    model = learned.train_from_store(store)
    result = run_batch(store, learned.LearnedJudge(model), concurrency=2)
    assert result.progress.proposed == 80 and result.progress.failed == 0
    stored = {p.cluster_id: p for p in store.proposals(judge="learned")}
    cid = min(model.labels)
    p = model.oof[cid]
    assert stored[cid].confidence == pytest.approx(max(p, 1 - p), abs=1e-6)


def test_offline_signals_read_back_from_stored_answers_are_identical(datacomp) -> None:
    """The learned judge reads the offline judge's stored evidence instead of recomputing it:
    the numbers must be the same as computing them, for every kind of caption."""
    from clusterqc.judges.offline import OfflineJudge, cluster_features

    clusters, _ = datacomp
    kinds = [json.loads(line)["caption"] for line in (FIXTURES / "datacomp_small_captions.jsonl").open(encoding="utf-8")]
    hostile = [Cluster(f"H{i}", tuple(Sample(t) for t in kinds[i : i + 5]), tuple(Sample(t) for t in kinds[i + 5 : i + 10]))
               for i in range(len(kinds) - 10)]
    hostile.append(Cluster("dupes", tuple(Sample("IMG_0001.jpg") for _ in range(5)),
                           tuple(Sample(t) for t in ["porn nude", "xxx", "", "www.example.com", "caf\u00c3\u00a9 &amp;"])))
    judge = OfflineJudge()
    for cluster in clusters[:80] + hostile:
        computed = learned.offline_signals(cluster_features(cluster))
        assert learned.offline_signals_from_raw(judge.judge(cluster).raw) == pytest.approx(computed), cluster.id
    assert learned.offline_signals_from_raw("not json") is None


def test_proposals_are_the_same_with_and_without_stored_offline_answers(tmp_path: Path, datacomp) -> None:
    from clusterqc.propose import make_judge, run_batch

    clusters, labels = datacomp
    probs = []
    for name, offline_first in (("plain", False), ("offline", True)):
        store = Store(tmp_path / f"{name}.db")
        store.import_clusters(clusters[:70])
        store.decide_many("ann", [(c.id, Verdict(labels[c.id]), "") for c in clusters[:30]])
        if offline_first:
            run_batch(store, make_judge("offline"), concurrency=1)
        learned.train_and_propose(store)
        probs.append({p.cluster_id: (p.verdict, p.confidence) for p in store.proposals(judge="learned")})
    assert probs[0].keys() == probs[1].keys() and len(probs[0]) == 70
    for cid in probs[0]:
        assert probs[0][cid][0] == probs[1][cid][0]
        assert probs[0][cid][1] == pytest.approx(probs[1][cid][1], abs=1e-9)


def test_char_ngrams_count_what_scikit_learns_analyzer_produces() -> None:
    """The numpy n-gram hasher sees exactly the n-grams of HashingVectorizer(analyzer="char")."""
    from sklearn.feature_extraction.text import HashingVectorizer

    texts = ["Ab  c\nde", "x", "", "IMG_0001.jpg\nIMG_0002.jpg", "日本語 テキスト\t😀", "caf\u00e9 \x00 nul"]
    ours = learned.char_ngram_counts(texts)
    theirs = HashingVectorizer(analyzer="char", ngram_range=(2, 4), n_features=learned.HASH_FEATURES,
                               alternate_sign=False, norm=None).transform([t.replace("\x00", " ") for t in texts])
    assert ours.shape == theirs.shape
    assert ours.sum(axis=1).A1.tolist() == theirs.sum(axis=1).A1.tolist()
    # Same text, same buckets; different texts share few buckets.
    again = learned.char_ngram_counts(["ab  c\nde"])
    assert (again[0] != ours[0]).nnz == 0


def reference_word_buckets(text: str) -> list[int]:
    """Word n-gram buckets in plain Python: scikit-learn's own analyzer finds the n-grams
    (lower-cased, its token pattern, unigrams and bigrams), our hash places them."""
    from sklearn.feature_extraction.text import HashingVectorizer

    analyzer = HashingVectorizer(analyzer="word", ngram_range=(1, 2)).build_analyzer()
    mask, pair, bits = 2**64 - 1, int(learned._PAIR), int(learned._HASH_BITS)
    out = []
    for gram in analyzer(text):
        words = [learned.word_hash(w) for w in gram.split(" ")]
        h = (words[0] * pair + 1) & mask if len(words) == 1 else (((words[0] * pair + words[1]) & mask) * pair + 2) & mask
        out.append(((h * int(learned._MIX)) & mask) >> bits)
    return out


def test_word_ngrams_are_the_ngrams_of_scikit_learns_analyzer() -> None:
    """The numpy word hasher sees exactly the n-grams HashingVectorizer(analyzer="word") sees,
    including words of other scripts, digits, underscores, one-letter words (dropped) and
    bigrams across the lines of one cluster (but never across two clusters)."""
    import collections

    texts = ["Ab  c\nde fg", "x", "", "IMG_0001.jpg\nIMG_0002.jpg", "日本語 テキスト\t😀 𝔘𝔫𝔦 ok",
             "caf\u00e9 \x00 nul", "Straße ÉCOLE ǅemal ⅻ²³ ٣٤ a_b", "don't stop-me now!! 42 4 2"]
    ours = learned.word_ngram_counts(texts)
    assert ours.shape == (len(texts), learned.HASH_FEATURES)
    for i, text in enumerate(texts):
        expected = collections.Counter(reference_word_buckets(text.replace("\x00", " ")))
        row = ours[i]
        assert dict(zip(row.indices.tolist(), row.data.tolist())) == expected, text
    assert ours[1].nnz == 0 and ours[2].nnz == 0
    # The last word of one cluster and the first of the next make no bigram.
    joined = learned.word_ngram_counts(["alpha beta", "gamma delta"])
    assert joined.sum() == 6


def test_signals_of_many_stored_answers_are_those_of_one_at_a_time(datacomp) -> None:
    from clusterqc.judges.offline import OfflineJudge

    clusters, _ = datacomp
    kinds = [json.loads(line)["caption"] for line in (FIXTURES / "datacomp_small_captions.jsonl").open(encoding="utf-8")]
    hostile = [Cluster(f"H{i}", tuple(Sample(t) for t in kinds[i : i + 5]), tuple(Sample(t) for t in kinds[i + 5 : i + 10]))
               for i in range(len(kinds) - 10)]
    raws = [OfflineJudge().judge(c).raw for c in clusters[:60] + hostile]
    raws += [None, "not json", '{"hints": [[1]], "score": 1, "lexical_diversity": 1, "median_words": 1}']
    columns, read = learned.offline_signals_many(raws)
    assert read.tolist() == [True] * (len(raws) - 3) + [False] * 3
    for i, raw in enumerate(raws[:-3]):
        one = learned.offline_signals_from_raw(raw)
        assert {k: columns[k][i] for k in one} == one  # identical floats, not approximately
    assert all(np.isnan(columns[k][-1]) for k in columns)


def test_features_of_a_models_columns_are_those_columns_of_all_features(datacomp) -> None:
    """Proposing builds only the model's columns: the same matrix as all features, then those."""
    clusters, labels = datacomp
    ids = [c.id for c in clusters[:40]]
    model = learned.train(clusters[:40], {i: labels[i] for i in ids}, n_boot=0)
    full, _ = learned.feature_matrix(clusters[40:120], model.numeric)
    narrow, _ = learned.feature_matrix(clusters[40:120], model.numeric, columns=model.columns)
    assert narrow.shape == (80, len(model.columns))
    assert (full[:, model.columns] != narrow).nnz == 0
    texts = [learned.texts_of(c) for c in clusters[40:120]]
    assert np.array_equal(model.predict(texts), model.predict(clusters[40:120]))


def test_char_ngram_buckets_are_the_documented_hash_of_each_ngram() -> None:
    """Each character n-gram (of the lower-cased text, whitespace runs as one space) lands in
    the bucket its hash names: n * STEP^n + sum(cp * STEP^(n-1-k)), multiplied, top bits."""
    import collections
    import re

    from sklearn.feature_extraction.text import HashingVectorizer

    analyzer = HashingVectorizer(analyzer="char", ngram_range=(2, 4)).build_analyzer()
    mask, step, bits = 2**64 - 1, int(learned._STEP), int(learned._HASH_BITS)

    def bucket(gram: str) -> int:
        h = len(gram)
        for c in gram:
            h = (h * step + ord(c)) & mask
        return ((h * int(learned._MIX)) & mask) >> bits

    texts = ["Ab  c\nde", "x", "IMG_0001.jpg\nIMG_0002.jpg", "日本語 テキスト\t😀", "caf\u00e9 nul"]
    ours = learned.char_ngram_counts(texts)
    for i, text in enumerate(texts):
        expected = collections.Counter(bucket(g) for g in analyzer(re.sub(r"\s\s+", " ", text)))
        assert dict(zip(ours[i].indices.tolist(), ours[i].data.tolist())) == expected, text
