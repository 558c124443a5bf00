"""Export: the labels as CSV / JSONL / Parquet, and the DataComp uid subset of the kept clusters."""

from __future__ import annotations

import streamlit as st

from clusterqc.export import FORMATS, MIME, export_frame, to_bytes
from clusterqc.store import Store
from clusterqc.ui import common
from clusterqc.ui import subset as subset_ui

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


st.title("Export")
_store = common.store_or_stop()
with common.db_errors():
    _ctx = common.page_context(_store)  # the shared sidebar, when app.py did not render it this run
    common.show_dataset(_ctx)
    labels_section(_store, _ctx.dataset)
    subset_ui.subset_section(_store, _ctx.dataset)
