"""The Propose page through Streamlit's AppTest: real database, real stand-in endpoint over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from clusterqc.model import Cluster, Sample
from clusterqc.prompt import default_template
from clusterqc.store import Store
from clusterqc.ui import propose as ui
from conftest import marked_clusters
from openai_standin import Reply, StandIn

APP = str(Path(__file__).resolve().parent.parent / "app.py")
KEY = "sk-page-secret-1234567890abcdef"
XSS = "<img src=x onerror=alert(1)> **bold**"


@pytest.fixture
def db(app_db: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = app_db
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CLUSTERQC_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with Store(path) as store:
        store.import_clusters(marked_clusters(5))
        store.import_clusters([Cluster("Cluster_xss", tuple(Sample(f"{XSS} {k}") for k in range(5)),
                                       tuple(Sample(f"far {k}") for k in range(5)))])
    return path


def propose_page(kind: str | None = None, dataset: str | None = None, timeout: float = 60) -> AppTest:
    """The Propose page as reviewer ann (in `dataset`, with judge `kind` picked when given)."""
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.query_params["reviewer"] = "ann"
    if dataset:
        at.query_params["dataset"] = dataset
    at.run()
    at.switch_page("views/propose.py")
    at.run()
    ok(at)
    if kind is not None:
        at.radio(key=ui.K_KIND).set_value(kind)
        at.run()
    return ok(at)


def ok(at: AppTest) -> AppTest:
    assert not at.exception, at.exception
    return at


def finish(at: AppTest, timeout: float = 60) -> AppTest:
    """Wait for the background run the page started, then rerun as the fragment's poll would."""
    job = at.session_state[ui.K_JOB]
    assert job.wait(timeout=timeout)
    at.run()
    return ok(at)


def run_llm_against(url: str) -> AppTest:
    """Pick the LLM judge, point it at `url`, press Run and wait for the run to end."""
    at = propose_page("llm")
    at.text_input(key=ui.K_URL).set_value(url)
    at.run()
    at.button(key=ui.K_RUN).click()
    at.run()
    return finish(ok(at))


def page_text(at: AppTest) -> str:
    parts = [t.value for t in at.main.text] + [c.value for c in at.main.code]
    parts += [e.value for e in (*at.main.error, *at.main.success, *at.main.warning)]
    return "\n".join(str(p) for p in parts)


def test_offline_is_the_default_and_runs(db: Path) -> None:
    at = propose_page()
    assert at.radio(key=ui.K_KIND).value == "offline"
    assert "0 of 6 clusters have a proposal from offline @ offline-v1; 6 still to run." in page_text(at)

    at.button(key=ui.K_RUN).click()
    at.run()
    finish(ok(at))

    assert "6 proposed" in page_text(at)
    assert "6 of 6 clusters have a proposal from offline @ offline-v1." in page_text(at)
    assert "no proposal yet" not in page_text(at)
    assert at.button(key=ui.K_RUN).disabled  # nothing left to do
    with Store(db) as store:
        assert len(store.proposals(judge="offline")) == 6


def test_prompt_preview_is_inert_text(db: Path, standin: StandIn) -> None:
    at = propose_page("llm")
    at.text_input(key=ui.K_PREVIEW).set_value("Cluster_xss")
    at.run()
    ok(at)
    with Store(db) as store:
        expected = default_template().render(store.get_cluster("Cluster_xss"))
    assert expected.rstrip() in [c.value.rstrip() for c in at.main.code]
    assert not any(XSS in m.value for m in at.main.markdown)


def test_llm_run_with_typed_key_never_shows_or_stores_it(db: Path, standin: StandIn) -> None:
    standin.expected_api_key = KEY
    at = propose_page("llm")
    at.text_input(key=ui.K_MODEL).set_value("stand-model")
    at.text_input(key=ui.K_URL).set_value(standin.base_url)
    at.text_input(key=ui.K_KEY_FIELD).set_value(KEY)
    at.run()
    ok(at)
    assert at.session_state[ui.K_KEY_FIELD] == ""  # the widget was emptied at once
    assert "set for this browser session" in page_text(at)

    at.button(key=ui.K_RUN).click()
    at.run()
    finish(ok(at))

    assert {r.api_key for r in standin.chat_requests()} == {KEY}
    assert "6 proposed" in page_text(at)
    assert KEY not in page_text(at)
    assert all(KEY not in str(w.value) for w in at.main.text_input)
    assert KEY.encode() not in db.read_bytes() + (db.with_name(db.name + "-wal").read_bytes()
                                                    if db.with_name(db.name + "-wal").exists() else b"")
    with Store(db) as store:
        assert {p.judge for p in store.proposals()} == {"stand-model"}


def test_wrong_key_stops_and_failures_are_listed(db: Path, standin: StandIn) -> None:
    def handler(req):  # type: ignore[no-untyped-def]
        if req.api_key != KEY:
            return Reply(status=401, error_message=f"Incorrect API key provided: {req.api_key}")
        if "cluster-3 " in req.prompt:
            return Reply(status=400, error_message="maximum context length exceeded")
        return None

    standin.handler = handler
    at = propose_page("llm")
    at.text_input(key=ui.K_URL).set_value(standin.base_url)
    at.text_input(key=ui.K_KEY_FIELD).set_value("sk-wrong-key-000000000000")
    at.run()
    at.button(key=ui.K_RUN).click()
    at.run()
    finish(ok(at))
    assert len(standin.chat_requests()) == 1
    assert at.main.error and "401" in page_text(at)
    assert "sk-wrong-key-000000000000" not in page_text(at)

    at.button(key=ui.K_FORGET).click()
    at.run()
    at.text_input(key=ui.K_KEY_FIELD).set_value(KEY)
    at.run()
    at.button(key=ui.K_RUN).click()
    at.run()
    finish(ok(at))
    assert "5 proposed" in page_text(at)
    [table] = at.main.dataframe
    assert list(table.value["cluster"]) == ["Cluster_3"]
    assert "context length" in table.value["error"][0]


def test_bad_endpoint_disables_run(db: Path) -> None:
    at = propose_page("llm")
    at.text_input(key=ui.K_URL).set_value("localhost:8000")
    at.run()
    assert at.main.error and "http(s)://" in page_text(at)
    assert at.button(key=ui.K_RUN).disabled


def test_stop_button_cancels_and_keeps_answers(db: Path, standin: StandIn) -> None:
    standin.latency = 0.3
    at = propose_page("llm")
    at.text_input(key=ui.K_URL).set_value(standin.base_url)
    at.number_input(key=ui.K_CONCURRENCY).set_value(1)
    at.button(key=ui.K_RUN).click()
    at.run()
    ok(at)
    at.button(key=ui.K_STOP).click()
    at.run()
    finish(ok(at))

    asked = len(standin.chat_requests())
    assert any("Stopped by you" in w.value for w in at.main.warning)
    with Store(db) as store:
        assert len(store.proposals()) == asked < 6


def test_a_run_where_every_request_failed_shows_no_success_box(db: Path, standin: StandIn) -> None:
    standin.handler = lambda req: Reply(status=400, error_message="this model does not take images")
    at = run_llm_against(standin.base_url)

    assert not at.main.success
    assert any("Every request failed" in e.value for e in at.main.error)
    assert "0 proposed (0 unparsed), 6 failed" in page_text(at)


def test_endpoint_text_in_a_stop_reason_is_plain_text_not_markdown(db: Path, standin: StandIn) -> None:
    body = "**Urgent**: [re-enter your key](http://127.0.0.1:9/phish) ![t](http://127.0.0.1:9/t.png)"
    standin.handler = lambda req: Reply(status=401, error_message=body)
    at = run_llm_against(standin.base_url)

    assert any(body in t.value for t in at.main.text)  # shown, as the characters it is
    for box in (*at.main.error, *at.main.warning, *at.main.success):  # boxes render Markdown
        assert "phish" not in box.value and "t.png" not in box.value


def test_a_configured_base_url_with_a_password_is_never_on_the_page(db: Path, standin: StandIn,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    password = "pagepass-98765"
    url = standin.base_url.replace("http://", f"http://proxyuser:{password}@")
    monkeypatch.setenv("OPENAI_BASE_URL", url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    at = propose_page()
    assert at.radio(key=ui.K_KIND).value == "llm"
    assert at.text_input(key=ui.K_URL).value == standin.base_url.replace("http://", "http://***@")
    at.button(key=ui.K_RUN).click()
    at.run()
    finish(ok(at))

    assert "6 proposed" in page_text(at)  # the masked field still meant the configured URL
    shown = page_text(at) + "".join(str(w.value) for w in at.main.text_input)
    assert password not in shown and KEY not in shown
