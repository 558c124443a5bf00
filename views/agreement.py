"""Agreement: how often each judge matches the reviewers, and how often reviewers match each other."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from clusterqc import charts
from clusterqc.metrics import AgreementReport, JudgeMetrics, agreement_by_dataset, agreement_report, judge_table
from clusterqc.store import Store
from clusterqc.ui import common

PCT = st.column_config.NumberColumn(format="percent")
KAPPA = st.column_config.NumberColumn(format="%.2f")


REVIEW_PAGE = "views/review.py"
LINKS_SHOWN = 60  # one-click links under the disagreements table; the Review page's queue has them all
LINK_COLUMNS = 6
# Markdown's punctuation: a page_link label is Markdown, and a cluster id is data.
_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_{}[]<>()#+-.!|~$:=&"})


def review_params(cluster_id: str, reviewer: str | None, dataset: str | None = None) -> dict[str, str]:
    """The Review page's query parameters that open it on `cluster_id` of `dataset` (as the reviewer)."""
    params = {"cluster": cluster_id}
    if dataset:
        params["dataset"] = dataset
    if reviewer:
        params["reviewer"] = reviewer
    return params


def review_link(cluster_id: str, reviewer: str | None, dataset: str | None = None) -> str:
    """A relative link to the Review page (the app's default page) opened on `cluster_id` of `dataset`."""
    return "./?" + urlencode(review_params(cluster_id, reviewer, dataset))


def judges_frame(report: AgreementReport) -> pd.DataFrame:
    """The judges table with short headings and the kappa interval in one column, so all of it
    (recall included) fits the page's width on a 1440-pixel screen."""
    t = judge_table(report.judges)
    ci = [
        "" if pd.isna(lo) or pd.isna(hi) else f"[{lo:.2f}, {hi:.2f}]"
        for lo, hi in zip(t["kappa_low"], t["kappa_high"])
    ]
    return t.assign(kappa_ci=ci)[
        ["judge", "prompt_version", "proposals", "reviewed", "unparsed", "compared", "agreement", "kappa",
         "kappa_ci", "precision_unacceptable", "recall_unacceptable", "note"]
    ]


JUDGE_COLUMNS = {
    "prompt_version": st.column_config.TextColumn("prompt"),
    "agreement": PCT,
    "kappa": KAPPA,
    "kappa_ci": st.column_config.TextColumn("95% CI", help="Cohen's kappa, 95% bootstrap interval"),
    "precision_unacceptable": st.column_config.NumberColumn(
        "precision U", format="percent", help="Of the clusters the judge called Unacceptable, how many the reviewers did"),
    "recall_unacceptable": st.column_config.NumberColumn(
        "recall U", format="percent", help="Of the clusters the reviewers called Unacceptable, how many the judge did"),
}


def by_dataset_section(store: Store) -> None:
    """Each judge's kappa in each dataset, side by side (rows: judge, columns: dataset)."""
    st.subheader("All datasets side by side")
    table = agreement_by_dataset(store)
    if table.empty:
        st.info("No dataset has a reviewed cluster with a parsed model answer yet.")
        return
    table = table.assign(judge=table["judge"] + " @ " + table["prompt_version"])
    st.caption("Cohen's kappa of each judge against the reviewers, per dataset (blank: not measurable there).")
    st.dataframe(table.pivot(index="judge", columns="dataset", values="kappa"),
                 column_config={c: KAPPA for c in table["dataset"].unique()}, key="agreement_by_dataset")
    st.dataframe(table[["dataset", "judge", "compared", "agreement", "kappa"]], hide_index=True,
                 column_config={"agreement": PCT, "kappa": KAPPA})


def judges_section(report: AgreementReport) -> None:
    st.subheader("Judges against the reviewers")
    st.caption(
        "Each judge and prompt version against the clusters' current labels (a cluster's latest"
        " standing decision). Unparsed answers are counted apart, never as agreement or disagreement."
        " U = Unacceptable, the clusters we drop."
    )
    st.dataframe(judges_frame(report), hide_index=True, column_config=JUDGE_COLUMNS, key="agreement_judges")
    if any(m.stats.kappa.value is not None for m in report.judges):
        st.plotly_chart(charts.kappa_chart(report.judges), key="kappa_chart")
    names = {m.name: m for m in report.judges}
    chosen = st.selectbox("Confusion table of", list(names), key="agreement_judge")
    if chosen:
        confusion(names[chosen])


def confusion(m: JudgeMetrics) -> None:
    if m.stats.n == 0:
        st.info("This judge has no parsed answer on a reviewed cluster yet.")
        return
    st.plotly_chart(charts.confusion_heatmap(m), key="confusion_chart")
    if m.stats.kappa.note:
        st.text(f"Kappa: {m.stats.kappa.note}")


def over_time_section(report: AgreementReport) -> None:
    st.subheader("Model agreement over time")
    if report.over_time.empty:
        st.info("No reviewed cluster has a parsed model answer yet.")
        return
    st.plotly_chart(charts.over_time_chart(report.over_time), key="over_time_chart")


def per_reviewer_section(report: AgreementReport) -> None:
    st.subheader("Each reviewer against the model")
    if report.per_reviewer.empty:
        st.info("No reviewer has decided a cluster the model answered yet.")
        return
    st.plotly_chart(charts.reviewer_model_chart(report.per_reviewer), key="per_reviewer_chart")
    st.dataframe(report.per_reviewer, hide_index=True,
                 column_config={"agreement": PCT, "kappa": KAPPA, "kappa_low": KAPPA, "kappa_high": KAPPA})


def between_reviewers_section(report: AgreementReport) -> None:
    st.subheader("Between reviewers")
    ra = report.reviewers
    if ra.n_clusters == 0:
        st.info(
            "No cluster has two reviews yet. Set 'Reviews wanted per cluster' to 2 or more in the"
            " sidebar to have clusters reviewed twice."
        )
        return
    cols = st.columns(2)
    cols[0].metric("Clusters with 2+ reviews", ra.n_clusters)
    cols[1].metric("Krippendorff's alpha", "n/a" if ra.alpha is None else f"{ra.alpha:.2f}")
    if ra.alpha_note:
        st.text(f"Alpha: {ra.alpha_note}")
    if not ra.kappa.empty:
        st.plotly_chart(charts.reviewer_kappa_heatmap(ra.kappa), key="reviewer_kappa_chart")
    st.dataframe(ra.pairs, hide_index=True, column_config={"agreement": PCT, "kappa": KAPPA})


def disagreements_section(report: AgreementReport, reviewer: str | None, dataset: str | None = None) -> None:
    st.subheader("Disagreements")
    table = report.disagreements
    if table.empty:
        st.info("No reviewed cluster disagrees with a parsed model answer.")
        return
    st.caption(f"{len(table)} cluster/judge pairs where the label differs from the model.")
    st.dataframe(
        table[["cluster_id", "label", "model_verdict", "judge", "prompt_version", "reviewers",
               "model_reason", "decided_at"]],
        hide_index=True,
    )
    review_links(list(dict.fromkeys(table["cluster_id"])), reviewer, dataset)


def review_links(cluster_ids: list[str], reviewer: str | None, dataset: str | None = None) -> None:
    """One click, same tab: a page link per disagreeing cluster that opens it on the Review page."""
    shown = cluster_ids[:LINKS_SHOWN]
    more = len(cluster_ids) - len(shown)
    st.text("Open a disagreement on the Review page:" + (f" (the first {len(shown)}; the Review page's 'disagreements' queue"
                                 f" has all {len(cluster_ids)})" if more else ""))
    cols = st.columns(LINK_COLUMNS)
    for i, cid in enumerate(shown):
        cols[i % LINK_COLUMNS].page_link(REVIEW_PAGE, label="Open " + cid.translate(_MARKDOWN),
                                         query_params=review_params(cid, reviewer, dataset))


def page(store: Store, ctx: common.AppContext) -> None:
    if len(store.dataset_names()) > 1 and st.toggle("All datasets side by side", key="agreement_all_datasets"):
        by_dataset_section(store)
        return
    report = agreement_report(store, dataset=ctx.dataset)
    if report.n_reviewed == 0:
        st.info(
            "No reviewed clusters yet. Decide some clusters on the Review page; agreement with each"
            " judge and between reviewers shows here."
        )
        return
    if report.n_proposals == 0:
        st.info("No proposals yet: run a judge on the Propose page to compare it with the reviewers.")
    else:
        judges_section(report)
        over_time_section(report)
        per_reviewer_section(report)
    between_reviewers_section(report)
    if report.n_proposals:
        disagreements_section(report, ctx.reviewer.name, ctx.dataset)


st.title("Agreement")
_store = common.store_or_stop()
with common.db_errors():
    _ctx = common.page_context(_store)
    common.show_dataset(_ctx)
    page(_store, _ctx)
