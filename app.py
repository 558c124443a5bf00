"""clusterqc's Streamlit entry point: page config, navigation and the shared sidebar.

Review is the landing page. Run with `streamlit run app.py`; the database is $CLUSTERQC_DB or
./clusterqc.db, and an empty one gets the bundled demo clusters on first start.
"""

from __future__ import annotations

import streamlit as st

from clusterqc.ui import common

# No page icons: ":material/...:" icons make the browser fetch a favicon from an outside font
# host, and emoji show as empty boxes on servers without an emoji font. The app asks nothing of
# any outside host (reviewers may work offline or behind a firewall).
st.set_page_config(page_title="clusterqc", layout="wide")

PAGES = [
    st.Page("views/review.py", title="Review", default=True),
    st.Page("views/bulk.py", title="Bulk review", url_path="bulk"),
    st.Page("views/propose.py", title="Propose"),
    st.Page("views/agreement.py", title="Agreement"),
    st.Page("views/fewshot.py", title="Few-shot"),
    st.Page("views/export.py", title="Export"),
]

QUEUE_PAGES = ("Review", "Bulk review")

page = st.navigation(PAGES)
store = common.store_or_stop()
with common.page_errors():
    # The queue controls act on the two review pages only (Few-shot and Export ignore them).
    common.render_sidebar(store, queue_controls=page.title in QUEUE_PAGES)
page.run()
