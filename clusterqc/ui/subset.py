"""The Export page's uid subset: verdicts kept, an optional CLIP-score cut, counts, the manifest.

The same choices as `clusterqc export-uids` (`--keep`, `--include-unreviewed`, `--clip-min`,
`--clip-top`): the counts are shown before anything is downloaded, and the manifest that goes
beside the subset is shown as it will be saved. Errors from the file are one `st.error` line.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from clusterqc.manifest import manifest_bytes, subset_from_upload
from clusterqc.model import Verdict
from clusterqc.pool_profile import record_pool_profile_from_upload
from clusterqc.store import Store
from clusterqc.subset import SCORE_COLUMN, ScoreCut, SubsetError, SubsetResult, uids_npy_bytes
from clusterqc.ui import evidence as evidence_ui

K_UPLOAD = "export_assignments"
K_KEEP = "export_keep"
K_UNREVIEWED = "export_uids_unreviewed"
K_CUT = "export_cut"
K_CLIP_MIN = "export_clip_min"
K_CLIP_TOP = "export_clip_top"
K_MEMO = "_export_subset_memo"
CUTS = {
    "none": "No score cut",
    "min": f"{SCORE_COLUMN} at least X (--clip-min)",
    "top": "The pool's top fraction F (--clip-top)",
}


def _cut_choice() -> ScoreCut | None:
    kind = st.radio("CLIP-score cut", list(CUTS), format_func=CUTS.__getitem__, key=K_CUT, horizontal=True)
    if kind == "min":
        x = st.number_input("X (a cosine, as in the file)", min_value=-1.0, max_value=1.0, value=0.28, step=0.01,
                            format="%.4f", key=K_CLIP_MIN)
        return ScoreCut(clip_min=float(x))
    if kind == "top":
        f = st.number_input("F (fraction of the pool; DataComp's baseline is 0.3)", min_value=0.001, max_value=1.0,
                            value=0.3, step=0.05, format="%.3f", key=K_CLIP_TOP)
        return ScoreCut(top_fraction=float(f))
    return None


def _subset(
    store: Store, upload: Any, keep: list[str], include: bool, cut: ScoreCut | None, dataset: str | None
) -> tuple[SubsetResult, dict[str, Any]]:
    """Built once per upload and choice (reruns for other widgets reuse it)."""
    key = (upload.file_id, tuple(sorted(keep)), include, cut, dataset, store.count_clusters(), store.stats().decisions)
    memo = st.session_state.get(K_MEMO)
    if memo is None or memo[0] != key:
        memo = (key, subset_from_upload(store, upload.name, upload.getvalue(), keep, include, cut, dataset=dataset))
        st.session_state[K_MEMO] = memo
    return memo[1]


def _counts(result: SubsetResult) -> None:
    st.dataframe(
        pd.DataFrame(
            {
                "kept": [result.kept_clusters, result.kept_samples],
                "dropped": [result.dropped_clusters, result.total_samples - result.kept_samples],
            },
            index=["clusters", "samples"],
        )
    )
    st.text(
        f"Kept {result.kept_fraction:.1%} of the pool ({result.kept_samples:,} of {result.total_samples:,} samples);"
        f" {result.unlabelled_clusters} clusters had no label"
        + (f" ({result.unknown_clusters} are not in the database)" if result.unknown_clusters else "")
        + "."
    )
    if result.cut is not None and result.cut_value is not None:
        st.text(
            f"Cut: {result.cut.describe()}: score >= {result.cut_value:.6g}. That cut alone would keep"
            f" {result.cut_alone_samples or 0:,} ({result.cut_alone_fraction or 0:.1%} of the pool)."
        )


def _record_profile(store: Store, upload: Any, dataset: str | None) -> None:
    try:
        profile = record_pool_profile_from_upload(store, upload.name, upload.getvalue(), dataset=dataset)
    except SubsetError as exc:
        st.session_state["_export_profile_msg"] = ("error", str(exc))
        return
    evidence_ui.forget()
    st.session_state["_export_profile_msg"] = (
        "ok", f"Pool profile recorded: {profile['samples']:,} samples; the CLIP-30% cut is"
              f" {profile['baseline_cut']:.6g} (the cards and the sidebar now compare with it).",
    )


def subset_section(store: Store, dataset: str | None = None) -> None:
    """Upload, choices, preview of the counts, downloads of the subset and its manifest (of one dataset)."""
    st.subheader("DataComp uid subset")
    st.caption(
        "Upload the uid -> cluster assignments (CSV or Parquet with columns uid and cluster_id, or"
        " uid and cluster_label n for clusters named Cluster_<n>; a CLIP-score cut also needs"
        f" {SCORE_COLUMN}). The counts show before anything is saved; the kept uids download as the"
        " sorted u8,u8 .npy that DataComp's resharder reads, with its manifest. For a whole pool use"
        " `clusterqc export-uids` on the command line."
    )
    upload = st.file_uploader("Assignments file", type=["csv", "parquet", "pq"], key=K_UPLOAD)
    keep = st.multiselect("Keep clusters labelled", [v.value for v in Verdict], default=[Verdict.ACCEPTABLE.value],
                          key=K_KEEP)
    include = st.checkbox("Use the model's verdict for clusters nobody reviewed", key=K_UNREVIEWED)
    cut = _cut_choice()
    if upload is None:
        return
    if not keep:
        st.warning("Choose at least one label to keep.")
        return
    try:
        result, manifest = _subset(store, upload, keep, include, cut, dataset)
    except SubsetError as exc:
        st.error(str(exc), icon=":material/error:")
        return
    _counts(result)
    left, right = st.columns(2)
    left.download_button(
        "Download uid subset (.npy)", data=uids_npy_bytes(result.uids), file_name="subset.npy",
        mime="application/octet-stream", key="export_download_uids", on_click="ignore",
    )
    right.download_button(
        "Download manifest (subset.json)", data=manifest_bytes(manifest), file_name="subset.json",
        mime="application/json", key="export_download_manifest", on_click="ignore",
    )
    with st.expander("Manifest (saved beside the subset as subset.json)"):
        st.code(manifest_bytes(manifest).decode("utf-8"), language="json")
    st.button("Record this file as the pool profile (cards and sidebar compare with it)",
              key="export_record_profile", on_click=_record_profile, args=(store, upload, dataset))
    msg = st.session_state.pop("_export_profile_msg", None)
    if msg:
        (st.success if msg[0] == "ok" else st.error)(msg[1])
