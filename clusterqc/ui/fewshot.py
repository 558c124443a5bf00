"""Few-shot curation on screen: the Review page's "use as example" control and the Few-shot page.

Everything here renders and forwards to `clusterqc.fewshot` / `clusterqc.evaluate`; nothing is
decided here. Captions and reasons are untrusted text: shown with st.text, st.code and
dataframes (inert), never as markdown or in widget labels.
"""

from __future__ import annotations

import threading
from typing import Any

import pandas as pd
import streamlit as st

from clusterqc import evaluate as ev
from clusterqc import fewshot
from clusterqc.fewshot import FewShotError
from clusterqc.prompt import TemplateError
from clusterqc.store import Store
from clusterqc.ui import common

K_SUGGEST_K = "cqc_fs_k"
K_CHOSEN = "cqc_fs_chosen"
K_NAME = "cqc_fs_name"
K_MODE = "cqc_fs_mode"
K_BASE = "cqc_fs_base"
K_PREVIEW = "cqc_fs_preview"
K_PREVIEW_CLUSTER = "cqc_fs_preview_cluster"
K_DIFF_A = "cqc_fs_diff_a"
K_DIFF_B = "cqc_fs_diff_b"
K_EVAL_TARGET = "cqc_fs_eval_target"
K_EVAL_AGAINST = "cqc_fs_eval_against"
K_EVAL_JUDGE = "cqc_fs_eval_judge"
K_EVAL_MODEL = "cqc_fs_eval_model"
K_EVAL_URL = "cqc_fs_eval_url"
K_EVAL_KEY = "cqc_fs_eval_key"  # session only: never stored, logged or shown again
K_EVAL_RESULT = "cqc_fs_eval_result"
K_GUIDELINE = "cqc_fs_guideline"
K_MESSAGE = "cqc_fs_message"
ERRORS = (FewShotError, TemplateError, ValueError)


def _reason_key(cluster_id: str) -> str:
    return f"cqc_fs_reason_{cluster_id}"


def _say(text: str) -> None:
    """A confirmation shown once, after the rerun a button causes."""
    st.session_state[K_MESSAGE] = text


def _show_message() -> None:
    text = st.session_state.pop(K_MESSAGE, None)
    if text:
        st.success(text, icon=":material/check:")


# --------------------------------------------------------------------------- Review page control


def mark_control(store: Store, cluster_id: str, reviewer: str | None) -> None:
    """On the Review page: mark the shown (decided) cluster as a few-shot example, or unmark it.

    The reason starts as the one offered: the example's own, else the model's when the reviewer
    accepted it, else the reviewer's note. Nothing shows for a cluster without an agreed label.
    The cluster is of the sidebar's dataset; below it is named `DATASET:ID`.
    """
    dataset = common.chosen_dataset()
    row = next(iter(store.reviewed_clusters(cluster_id, dataset=dataset)), None)
    cluster_id = fewshot.cluster_ref(store, row["dataset"], cluster_id) if row is not None else cluster_id
    if row is None or row["n_verdicts"] != 1:
        return
    marked = row["example_reason"] is not None
    with st.expander("Few-shot example" + (" (marked)" if marked else ""), icon=":material/school:"):
        st.text(f"Would teach the model: {row['verdict']}"
                + (" (the model got this one wrong)" if row["overridden"] else ""))
        key = _reason_key(cluster_id)
        if key not in st.session_state:
            st.session_state[key] = fewshot.offered_reason(store, cluster_id)
        st.text_area("Reason shown to the model", key=key, height=80, disabled=reviewer is None)
        left, right = st.columns(2)
        left.button("Mark as example" if not marked else "Save reason", key=f"cqc_fs_mark_{cluster_id}",
                    on_click=_mark, args=(store, cluster_id, reviewer), disabled=reviewer is None)
        if marked:
            right.button("Unmark", key=f"cqc_fs_unmark_{cluster_id}", on_click=_unmark, args=(store, cluster_id))
        _show_message()
        _show_error()


def _mark(store: Store, cluster_id: str, reviewer: str | None) -> None:
    try:
        fewshot.mark_example(store, cluster_id, st.session_state.get(_reason_key(cluster_id), ""), reviewer or "")
        _say(f"{cluster_id} is a few-shot example.")
    except ERRORS as exc:
        _say_error(str(exc))


def _unmark(store: Store, cluster_id: str) -> None:
    fewshot.unmark_example(store, cluster_id)
    st.session_state.pop(_reason_key(cluster_id), None)
    _say(f"{cluster_id} is no longer an example.")


# --------------------------------------------------------------------------- Few-shot page


def examples_section(store: Store, reviewer: str | None) -> None:
    """Suggest examples, edit their reasons, and build a prompt version from them."""
    st.subheader("Examples")
    pool = fewshot.candidates(store)
    n_over = sum(c.overridden for c in pool)
    st.text(f"{len(pool)} reviewed clusters with an agreed verdict · {n_over} overrides · "
            f"{sum(c.marked for c in pool)} marked as examples")
    if not pool:
        st.info("Review some clusters first: decided clusters (overrides most of all) become examples.")
        return
    by_id = {c.ref: c for c in pool}  # DATASET:ID when the database holds several datasets
    k = st.number_input("How many to suggest", min_value=1, max_value=20, value=6, key=K_SUGGEST_K)
    if st.button("Suggest examples", key="cqc_fs_suggest",
                 help="Balanced across verdicts, overrides first, different kinds of clusters."):
        st.session_state[K_CHOSEN] = [c.ref for c in fewshot.suggest(store, int(k))]
    if K_CHOSEN not in st.session_state:
        st.session_state[K_CHOSEN] = [c.ref for c in pool if c.marked]
    st.session_state[K_CHOSEN] = [cid for cid in st.session_state[K_CHOSEN] if cid in by_id]
    chosen = st.multiselect("Examples for the next version", list(by_id), key=K_CHOSEN)
    for cid in chosen:
        _example_editor(store, by_id[cid])
    build_form(store, chosen, reviewer)


def _example_editor(store: Store, cand: fewshot.Candidate) -> None:
    with st.container(border=True):
        flags = [cand.verdict.value] + (["override"] if cand.overridden else []) + (["marked"] if cand.marked else [])
        st.text(f"{cand.ref} · {' · '.join(flags)}")
        cluster = store.get_cluster(cand.cluster_id, dataset=cand.dataset)
        st.text("\n".join(f"  {s.text}" for s in cluster.samples[:4]) + "\n  …")
        key = _reason_key(cand.ref)
        if key not in st.session_state:
            st.session_state[key] = cand.reason
        evidence = fewshot.reason_evidence(store, cand.cluster_id, cand.dataset)
        # The label stays visible: a collapsed label hides the help icon, the evidence's only place.
        st.text_input("Reason the prompt will teach", key=key, placeholder="why this verdict",
                      help=f"What the offline judge measured: {evidence}" if evidence else None)


def build_form(store: Store, chosen: list[str], reviewer: str | None) -> None:
    versions = fewshot.list_prompts(store)
    labels = {v["version"]: f"{v['name'] or '-'} ({v['version']})" + (" · active" if v["active"] else "")
              for v in versions}
    active = next(v["version"] for v in versions if v["active"])
    cols = st.columns(3)
    cols[0].text_input("Name of the new version", key=K_NAME, placeholder="e.g. overrides-v1")
    cols[1].radio("Examples", ["replace", "append"], key=K_MODE, horizontal=True,
                  help="Replace the base's examples, or add these after them.")
    cols[2].selectbox("Base", list(labels), index=list(labels).index(active), format_func=labels.get, key=K_BASE)
    st.button("Create prompt version", key="cqc_fs_create", type="primary", disabled=not chosen or reviewer is None,
              on_click=_create, args=(store, chosen, reviewer),
              help=None if reviewer else "Enter your reviewer name in the sidebar first.")
    _show_message()


def _create(store: Store, chosen: list[str], reviewer: str | None) -> None:
    try:
        for cid in chosen:
            reason = st.session_state.get(_reason_key(cid), "")
            if reason.strip():
                fewshot.mark_example(store, cid, reason, reviewer or "")
        row = fewshot.create_prompt(store, st.session_state.get(K_NAME, ""), chosen,
                                    mode=st.session_state.get(K_MODE, "replace"), base=st.session_state.get(K_BASE))
        _say(f"Created {row['name']} ({row['version']}) with {len(row['examples'])} examples.")
    except ERRORS as exc:
        _say_error(str(exc))


def _say_error(text: str) -> None:
    st.session_state["cqc_fs_error"] = text


def _show_error() -> None:
    text = st.session_state.pop("cqc_fs_error", None)
    if text:
        st.error(text, icon=":material/error:")


def versions_section(store: Store) -> None:
    """Stored versions: which is active, preview one, diff two."""
    st.subheader("Prompt versions")
    _show_error()
    versions = fewshot.list_prompts(store)
    st.dataframe(pd.DataFrame(versions), hide_index=True,
                 column_order=["active", "name", "version", "examples", "from_clusters", "parent", "created_at"])
    labels = {v["version"]: f"{v['name'] or '-'} ({v['version']})" for v in versions}
    ids = list(labels)
    pick = st.selectbox("Version", ids, format_func=labels.get, key=K_PREVIEW)
    left, right = st.columns([3, 1])
    dataset = common.chosen_dataset()
    cluster_ids = store.cluster_ids(dataset) if dataset else []
    target = left.selectbox("Preview for cluster", cluster_ids, key=K_PREVIEW_CLUSTER) if cluster_ids else None
    right.button("Make active", key="cqc_fs_activate", on_click=_activate, args=(store, pick),
                 disabled=pick is None or any(v["active"] and v["version"] == pick for v in versions))
    if pick:
        with st.expander("Rendered prompt"):
            st.code(fewshot.preview(store, pick, target, dataset=dataset), language=None, wrap_lines=True)
    if len(ids) >= 2:
        a = st.selectbox("Diff from", ids, index=0, format_func=labels.get, key=K_DIFF_A)
        b = st.selectbox("to", ids, index=len(ids) - 1, format_func=labels.get, key=K_DIFF_B)
        diff = fewshot.diff_prompts(store, a, b)
        st.code(diff or "(identical)", language="diff", wrap_lines=True)


def _activate(store: Store, version: str) -> None:
    row = fewshot.activate(store, version)
    _say(f"Proposals now use {row['name'] or row['version']}.")


def evaluate_section(store: Store) -> None:
    """Run a version on reviewed clusters outside its examples, next to other versions."""
    st.subheader("Evaluate")
    st.caption("Each version answers the reviewed clusters that are not among any compared version's examples; "
               "only missing answers are asked for.")
    versions = fewshot.list_prompts(store)
    labels = {v["version"]: f"{v['name'] or '-'} ({v['version']})" for v in versions}
    ids = list(labels)
    target = st.selectbox("Evaluate", ids, index=len(ids) - 1, format_func=labels.get, key=K_EVAL_TARGET)
    others = [v for v in ids if v != target]
    default = [fewshot.active_version(store)] if fewshot.active_version(store) in others else others[:1]
    against = st.multiselect("Compare with", others, default=default, format_func=labels.get, key=K_EVAL_AGAINST)
    judge = st.radio("Judge", ["offline", "llm"], horizontal=True, key=K_EVAL_JUDGE,
                     help="The offline judge does not read the prompt; use an LLM to compare versions.")
    config = _endpoint(judge)
    if st.button("Evaluate", key="cqc_fs_evaluate", type="primary", disabled=target is None):
        _run_evaluation(store, [target, *against], judge, config)
    result = st.session_state.get(K_EVAL_RESULT)
    if result is not None:
        show_comparison(result)


def _endpoint(judge: str) -> Any:
    if judge != "llm":
        return None
    from clusterqc.settings import SettingsError, resolve_endpoint

    cols = st.columns(3)
    model = cols[0].text_input("Model", key=K_EVAL_MODEL, placeholder="$CLUSTERQC_MODEL or gpt-4o-mini")
    url = cols[1].text_input("Base URL", key=K_EVAL_URL, placeholder="$OPENAI_BASE_URL")
    key = cols[2].text_input("API key (this session only)", key=K_EVAL_KEY, type="password")
    try:
        return resolve_endpoint(model=model or None, base_url=url or None, api_key=key or None)
    except SettingsError as exc:
        st.error(str(exc), icon=":material/error:")
        return None


def _run_evaluation(store: Store, names: list[str], judge: str, config: Any) -> None:
    from clusterqc.propose import make_judge

    if judge == "llm" and config is None:
        return
    bar = st.progress(0.0, text="Asking…")

    def progress(state: Any) -> None:
        bar.progress(state.done / max(state.total, 1), text=f"Asked {state.done} / {state.total}")

    try:
        st.session_state[K_EVAL_RESULT] = ev.evaluate(
            store, names, lambda t: make_judge(judge, config, t), progress=progress, cancel=threading.Event()
        )
    except ERRORS as exc:
        st.error(str(exc), icon=":material/error:")
    finally:
        bar.empty()


def show_comparison(result: ev.Comparison) -> None:
    st.text(f"Judge {result.judge}: {len(result.compared_ids)} reviewed clusters compared "
            f"({len(result.cluster_ids)} outside every compared version's examples).")
    if result.same_answers:
        st.info("This judge does not read the prompt, so every version gets the same answers.")
    st.dataframe(pd.DataFrame(ev.score_rows(result)), hide_index=True, key="cqc_fs_scores",
                 column_config={"agreement": st.column_config.NumberColumn(format="percent"),
                                "kappa": st.column_config.NumberColumn(format="%.2f"),
                                "kappa_low": st.column_config.NumberColumn(format="%.2f"),
                                "kappa_high": st.column_config.NumberColumn(format="%.2f")})
    st.caption("Confusion cells: human verdict -> model verdict (A = Acceptable, U = Unacceptable).")
    if len(result.scores) >= 2:
        base, target = result.scores[1].name, result.scores[0].name
        st.text(f"{len(result.flips)} cluster(s) changed verdict from {base} to {target}: "
                f"{result.toward} toward the curators, {result.away} away.")
        if result.flips:
            st.dataframe(pd.DataFrame([
                {"cluster": f.cluster_id, "before": f.before.value, "after": f.after.value,
                 "human": f.human.value, "direction": "toward" if f.toward else "away"}
                for f in result.flips
            ]), hide_index=True, key="cqc_fs_flips")


def guideline_section(store: Store) -> None:
    """The guideline decisions are recorded under; queue older decisions for a second look."""
    st.subheader("Guidelines")
    current = fewshot.current_guideline(store)
    if K_GUIDELINE not in st.session_state:
        st.session_state[K_GUIDELINE] = fewshot.current_guideline_text(store)
    st.text_area("Current guideline text", key=K_GUIDELINE, height=120,
                 help="Every decision records the hash of the guideline in force when it was made.")
    st.button("Save as the current guideline", key="cqc_fs_guideline_save", on_click=_save_guideline, args=(store,))
    stale = fewshot.stale_labels(store)
    pending = store.pending_rechecks()
    st.text(f"Guideline: {current or '(none set)'} · {len(stale)} label(s) decided under another guideline · "
            f"{len(pending)} cluster(s) waiting for a second look")
    st.button(f"Queue {len(stale)} for a second look", key="cqc_fs_queue", disabled=not stale,
              on_click=_queue, args=(store,))
    if pending:
        st.dataframe(pd.DataFrame(pending), hide_index=True, key="cqc_fs_rechecks")
        st.caption("Open one on the Review page with 'Jump to cluster id' in the sidebar.")


def _save_guideline(store: Store) -> None:
    try:
        version = fewshot.set_guideline(store, st.session_state.get(K_GUIDELINE, ""))
        _say(f"Decisions are now recorded under guideline {version}.")
    except ERRORS as exc:
        _say_error(str(exc))


def _queue(store: Store) -> None:
    _say(f"Queued {fewshot.queue_stale(store)} cluster(s) for a second look.")


def page(store: Store, reviewer: str | None) -> None:
    """The whole Few-shot page, top to bottom as the screen reads."""
    _show_message()
    _show_error()
    examples_section(store, reviewer)
    st.divider()
    versions_section(store)
    st.divider()
    evaluate_section(store)
    st.divider()
    guideline_section(store)
