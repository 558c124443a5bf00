"""clusterqc's Streamlit entry point: page config, navigation and the shared sidebar.

Review is the landing page. Run with `streamlit run app.py`; the database is $CLUSTERQC_DB or
./clusterqc.db, and an empty one gets the bundled demo clusters on first start.
"""

from __future__ import annotations

import streamlit as st

from clusterqc.ui import common

# Emoji, not ":material/...:" icons: the browser fetches a Material favicon from
# fonts.gstatic.com, while an emoji becomes an inline SVG, so the app asks nothing of any
# outside host (reviewers may work offline or behind a firewall).
st.set_page_config(page_title="clusterqc", page_icon="🔎", layout="wide")

PAGES = [
    st.Page("views/review.py", title="Review", icon="📝", default=True),
    st.Page("views/propose.py", title="Propose", icon="🤖"),
    st.Page("views/agreement.py", title="Agreement", icon="📊"),
    st.Page("views/fewshot.py", title="Few-shot", icon="🎓"),
    st.Page("views/export.py", title="Export", icon="📦"),
]

page = st.navigation(PAGES)
store = common.store_or_stop()
with common.page_errors():
    common.render_sidebar(store)
page.run()
