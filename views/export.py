"""Export: the labels as CSV / JSONL / Parquet, and the DataComp uid subset of the kept clusters."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from clusterqc.export import FORMATS, MIME, export_frame, to_bytes
from clusterqc.model import Verdict
from clusterqc.store import Store
from clusterqc.subset import SubsetError, build_subset_from_upload, uids_npy_bytes
from clusterqc.ui import common

PREVIEW_ROWS = 200


def labels_section(store: Store, dataset: str | None = None) -> None:
    st.subheader("Labels")
    include = st.checkbox(
        "Include clusters only the model labelled", key="export_include_unreviewed",
        help="Adds rows with label_source = model_only: the model's latest parsed verdict.",
    )
    everything = st.toggle("All datasets", key="export_all_datasets", value=False,
                           help="Export every dataset's clusters (the dataset column tells them apart).")
    df = export_frame(store, include_unreviewed=include, dataset=None if everything else dataset)
    if df.empty:
        st.info(
            "No reviewed clusters yet, so there is nothing to export."
            + ("" if include else " Tick the box above to export the model's verdicts instead.")
        )
        return
    reviewed = int((df["label_source"] == "reviewed").sum())
    st.text(f"{len(df)} clusters: {reviewed} reviewed, {len(df) - reviewed} model only.")
    cols = st.columns(len(FORMATS))
    for col, fmt in zip(cols, FORMATS):
        col.download_button(
            f"Download {fmt.upper()}", data=lambda fmt=fmt: to_bytes(df, fmt), file_name=f"labels.{fmt}",
            mime=MIME[fmt], key=f"export_download_{fmt}", on_click="ignore",
        )
    st.caption(f"Preview (first {min(PREVIEW_ROWS, len(df))} rows):")
    preview = df.head(PREVIEW_ROWS).assign(reviewers=lambda d: d["reviewers"].map(", ".join))
    st.dataframe(preview, hide_index=True)


def subset_section(store: Store, dataset: str | None = None) -> None:
    st.subheader("DataComp uid subset")
    st.caption(
        "Upload the uid -> cluster assignments (CSV or Parquet with columns uid and cluster_id, or"
        " uid and cluster_label n for clusters named Cluster_<n>). The kept uids download as the"
        " sorted u8,u8 .npy that DataComp's resharder reads. For a whole pool use"
        " `clusterqc export-uids` on the command line."
    )
    upload = st.file_uploader("Assignments file", type=["csv", "parquet", "pq"], key="export_assignments")
    keep = st.multiselect("Keep clusters labelled", [v.value for v in Verdict], default=[Verdict.ACCEPTABLE.value],
                          key="export_keep")
    include = st.checkbox("Use the model's verdict for clusters nobody reviewed", key="export_uids_unreviewed")
    if upload is None:
        return
    if not keep:
        st.warning("Choose at least one label to keep.")
        return
    try:
        result = build_subset_from_upload(store, upload.name, upload.getvalue(), keep, include, dataset=dataset)
    except SubsetError as exc:
        st.error(str(exc), icon=":material/error:")
        return
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
        f"Kept {result.kept_fraction:.1%} of the pool; {result.unlabelled_clusters} clusters had no label"
        + (f" ({result.unknown_clusters} are not in the database)" if result.unknown_clusters else "")
        + "."
    )
    st.download_button(
        "Download uid subset (.npy)", data=uids_npy_bytes(result.uids), file_name="subset.npy",
        mime="application/octet-stream", key="export_download_uids", on_click="ignore",
    )


st.title("Export")
_store = common.store_or_stop()
with common.db_errors():
    _ctx = common.page_context(_store)  # the shared sidebar, when app.py did not render it this run
    common.show_dataset(_ctx)
    labels_section(_store, _ctx.dataset)
    subset_section(_store, _ctx.dataset)
