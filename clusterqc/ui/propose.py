"""The Propose page's widgets: judge and endpoint, prompt preview, run / stop, failures.

The batch itself runs in a `BatchJob` thread with its own store (see clusterqc.propose), so a
rerun (any click, including Stop) never cuts it short; a fragment polls its progress. The
learned judge (trained on the dataset's agreed labels, then proposing for every cluster) runs
the same way in a `LearnedJob` thread (clusterqc.judges.learned).

API keys: a key typed here is moved out of the password widget into a plain session_state
entry the moment it is entered, and the widget is cleared, so it is never rendered again
(not even behind the widget's "show" eye). It lives only in this browser session: never
written to the store, a file, a log, or a message (errors are passed through `redact`).

Endpoint text (error bodies, stop reasons, answers) is untrusted: a 401 body once showed a
bold phishing link and made the browser fetch a server's image. Alert boxes here hold only
our own fixed words; whatever came from an endpoint or a setting goes below them in
`st.text`, which never interprets Markdown or HTML.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import streamlit as st

from clusterqc import fewshot
from clusterqc.judges import learned
from clusterqc.judges.offline import OfflineJudge
from clusterqc.prompt import SYSTEM_MESSAGE, PromptTemplate
from clusterqc.propose import DEFAULT_CONCURRENCY, BatchJob, make_judge
from clusterqc.settings import DEFAULT_MAX_TOKENS, EndpointConfig, SettingsError, resolve_endpoint, scrub_url
from clusterqc.store import Store

K_KIND = "cqc_p_kind"
K_MODEL = "cqc_p_model"
K_URL = "cqc_p_url"
K_KEY_FIELD = "cqc_p_key_field"
K_KEY = "_cqc_p_api_key"  # the typed key: session only, never a widget value
K_PROMPT = "cqc_p_prompt"
K_CONCURRENCY = "cqc_p_concurrency"
K_MAX_TOKENS = "cqc_p_max_tokens"
K_TIMEOUT = "cqc_p_timeout"
K_RPM = "cqc_p_rpm"
K_TPM = "cqc_p_tpm"
K_LIMIT = "cqc_p_limit"
K_PREVIEW = "cqc_p_preview"
K_RUN = "cqc_p_run"
K_STOP = "cqc_p_stop"
K_FORGET = "cqc_p_forget_key"
K_JOB = "_cqc_p_job"
K_JOB_SHOWN = "_cqc_p_job_shown"  # id of the finished job whose end already triggered a rerun

KINDS = {"offline": "Offline heuristics (no network)", "llm": "LLM (OpenAI-compatible endpoint)",
         "learned": "Learned from the curators' decisions"}


@dataclass(frozen=True)
class Choice:
    """What the settings widgets decided: enough to count pending clusters and build the judge."""

    kind: str
    name: str  # the judge name proposals are stored under
    prompt_version: str
    config: EndpointConfig | None = None
    template: PromptTemplate | None = None
    problem: str | None = None  # a setting that cannot work: shown, and Run is disabled


def secrets_dict() -> dict[str, Any]:
    """st.secrets as a plain dict ({} without a secrets file), for clusterqc.settings."""
    try:
        return st.secrets.to_dict()
    except Exception:  # noqa: BLE001 - Streamlit raises its own error when there is no secrets file
        return {}


def _take_key() -> None:
    """Callback: keep the typed key in the session only, and empty the widget at once."""
    typed = (st.session_state.get(K_KEY_FIELD) or "").strip()
    if typed:
        st.session_state[K_KEY] = typed
    st.session_state[K_KEY_FIELD] = ""


def _forget_key() -> None:
    st.session_state.pop(K_KEY, None)


def _key_widgets(base: EndpointConfig) -> None:
    if st.session_state.get(K_KEY):
        st.text("API key: set for this browser session (hidden; never stored).")
        st.button("Forget the key", key=K_FORGET, on_click=_forget_key)
        return
    st.text_input("API key", key=K_KEY_FIELD, type="password", on_change=_take_key, autocomplete="off",
                  help="Kept only in this browser session: never stored, logged or shown again.")
    if base.api_key:
        st.caption(f"Leave empty to use the key from {base.key_source}.")


def _prompt_choice(store: Store) -> PromptTemplate:
    rows = fewshot.list_prompts(store)
    versions = [r["version"] for r in rows]
    labels = {r["version"]: f"{r['name'] or '(unnamed)'} · {r['version']}" + (" · active" if r.get("active") else "")
              for r in rows}
    active = fewshot.active_version(store)
    chosen = st.selectbox("Prompt", versions, index=versions.index(active) if active in versions else 0,
                          format_func=labels.__getitem__, key=K_PROMPT)
    row = fewshot.get_prompt(store, chosen or active)
    return PromptTemplate(row["template"], name=row["name"])


def _llm_choice(store: Store, base: EndpointConfig) -> Choice:
    model = st.text_input("Model", value=base.model, key=K_MODEL)
    # A configured URL's user:password@ is never put on the page: the field shows it masked,
    # and an unchanged field means the configured URL itself.
    shown = scrub_url(base.base_url) if base.base_url else ""
    url = st.text_input("Endpoint (base URL)", value=shown, key=K_URL,
                        placeholder="https://api.openai.com/v1 · http://localhost:11434/v1 (Ollama)")
    if url and url == shown:
        url = base.base_url or url
    _key_widgets(base)
    template = _prompt_choice(store)
    with st.expander("Limits and timeouts"):
        max_tokens = st.number_input("Max tokens per answer (0: no cap)", 0, 32_000, DEFAULT_MAX_TOKENS,
                                     key=K_MAX_TOKENS)
        timeout = st.number_input("Timeout per attempt (s)", 1.0, 600.0, 60.0, key=K_TIMEOUT,
                                  help="From connecting to the last byte of the answer; Stop ends a run within it.")
        rpm = st.number_input("Requests per minute (0: no limit)", 0, 1_000_000, 0, key=K_RPM)
        tpm = st.number_input("Tokens per minute (0: no limit)", 0, 100_000_000, 0, key=K_TPM)
    try:
        config = resolve_endpoint(
            model=model or None, base_url=url or None, api_key=st.session_state.get(K_KEY),
            environ=os.environ, secrets=secrets_dict(), max_tokens=int(max_tokens),
            timeout=float(timeout), rpm=float(rpm) or None, tpm=float(tpm) or None,
        )
    except SettingsError as exc:
        return Choice("llm", model or "?", template.version, template=template, problem=str(exc))
    st.text(f"Judge: {config.describe()}")
    return Choice("llm", config.model, template.version, config=config, template=template)


def _learned_choice(store: Store, dataset: str | None) -> Choice:
    """One line: whether the learned judge can train on this dataset's labels, or why not."""
    if dataset is None:
        refusal = "No clusters yet: import a cluster file, review some, then train the learned judge."
        st.warning(refusal, icon=":material/warning:")
        return Choice("learned", learned.NAME, "", problem=refusal)
    ready = learned.readiness(store, dataset)
    if ready.refusal:
        st.warning(ready.line(), icon=":material/warning:")  # our own words and counts only
    else:
        st.text(ready.line())
    return Choice("learned", learned.NAME, ready.version, problem=ready.refusal)


def judge_choice(store: Store, dataset: str | None = None) -> Choice:
    """The judge widgets. Default: the LLM when an endpoint or key is configured, else offline."""
    base = resolve_endpoint(environ=os.environ, secrets=secrets_dict())
    kinds = list(KINDS)
    kind = st.radio("Judge", kinds, index=kinds.index("llm" if base.configured else "offline"),
                    format_func=KINDS.__getitem__, key=K_KIND, horizontal=True)
    if kind == "llm":
        return _llm_choice(store, base)
    if kind == "learned":
        return _learned_choice(store, dataset)
    return Choice("offline", OfflineJudge.name, OfflineJudge.prompt_version)


# --------------------------------------------------------------------------- preview


def preview(store: Store, choice: Choice, pending: list[str], dataset: str | None = None) -> None:
    """The prompt exactly as it would be sent for any cluster of the dataset, as inert text."""
    if choice.kind == "learned":
        st.text("The learned judge sends no prompt. It trains on this dataset's agreed labels and gives every"
                " cluster P(Unacceptable); a cluster it trained on gets the prediction of the fold that did not"
                " see its label.")
        return
    default = pending[0] if pending else (store.cluster_ids(dataset)[:1] or [""])[0]
    cluster_id = st.text_input("Preview for cluster", value=default, key=K_PREVIEW).strip()
    cluster = store.get_cluster(cluster_id, dataset=dataset) if cluster_id and dataset else None
    if cluster is None:
        st.warning(f"No cluster {cluster_id!r} in this database." if cluster_id else "No clusters yet.")
        return
    if choice.template is None:
        proposal = OfflineJudge().judge(cluster)
        st.text("The offline judge sends no prompt. It would answer:")
        st.code(f"{proposal.verdict.value if proposal.verdict else '(no verdict)'}: {proposal.reason}",
                language=None, wrap_lines=True)
        return
    st.text(f"System: {SYSTEM_MESSAGE}")
    st.code(choice.template.render(cluster), language=None, wrap_lines=True)


# --------------------------------------------------------------------------- running


def current_job() -> BatchJob | learned.LearnedJob | None:
    return st.session_state.get(K_JOB)


def run_controls(store: Store, choice: Choice, pending: int, dataset: str | None = None) -> None:
    """Run and Stop; a new run starts a BatchJob thread kept in the session."""
    job = current_job()
    running = job is not None and job.running
    left, mid, right = st.columns([2, 1, 1], vertical_alignment="bottom")
    concurrency = left.number_input("Requests at once", 1, 64, DEFAULT_CONCURRENCY, key=K_CONCURRENCY,
                                    disabled=choice.kind != "llm")
    limit = mid.number_input("At most (0: all)", min_value=0, value=0, step=1, key=K_LIMIT,
                             disabled=choice.kind == "learned", help="The learned judge proposes for every cluster.")
    blocked = running or pending == 0 or choice.problem is not None
    if right.button("Run", key=K_RUN, type="primary", disabled=blocked):
        if choice.kind == "learned":
            st.session_state[K_JOB] = learned.LearnedJob(store.path, dataset).start()
            st.session_state.pop(K_JOB_SHOWN, None)
            st.rerun()
        judge = make_judge(choice.kind, choice.config, choice.template)
        n = int(concurrency) if choice.kind == "llm" else 1
        st.session_state[K_JOB] = BatchJob(store.path, judge, concurrency=n, limit=int(limit) or None,
                                           dataset=dataset).start()
        st.session_state.pop(K_JOB_SHOWN, None)
        st.rerun()
    if running:
        st.button("Stop", key=K_STOP, on_click=job.stop)


def _job_view() -> None:
    job = current_job()
    if job is None:
        return
    if isinstance(job, learned.LearnedJob):
        _learned_view(job)
        return
    p = job.progress
    if p is not None and p.total:
        st.progress(min(p.done / p.total, 1.0),
                    text=f"{p.done} / {p.total} · {p.proposed} proposed · {p.unparsed} unparsed · {p.failed} failed")
    if job.running:
        st.text("Stopping: waiting for the requests in flight…" if job.cancel.is_set() else "Running…")
        return
    if st.session_state.get(K_JOB_SHOWN) != id(job):
        st.session_state[K_JOB_SHOWN] = id(job)
        st.rerun()  # once, so the whole page (Run button, counts, failures) sees the end
    _summary(job)


def _learned_view(job: learned.LearnedJob) -> None:
    """A learned run: training, then a progress bar over the chunks; at the end its kappa and counts."""
    done, total = job.progress
    if job.running:
        if job.stage == "training":
            st.text("Training on the agreed labels (5-fold cross-validation, then the final fit)…")
        else:
            st.progress(min(done / total, 1.0) if total else 0.0, text=f"{done} / {total} clusters proposed for")
        st.text("Stopping after this chunk…" if job.cancel.is_set() else "Running…")
        return
    if st.session_state.get(K_JOB_SHOWN) != id(job):
        st.session_state[K_JOB_SHOWN] = id(job)
        st.rerun()  # once, so the whole page (Run button, counts) sees the end
    if job.error:
        _alert("error", "The learned judge did not run.", job.error)
        return
    run = job.result
    if run is None:
        return
    stored = (f"{run.proposed} proposals stored ({run.already} clusters already had this version)"
              f" · training {run.model.train_seconds:.1f} s, proposing {run.propose_seconds:.1f} s")
    if run.cancelled:
        _alert("warning", "Stopped by you. Every chunk proposed before the stop is stored.", run.model.summary(),
               stored)
    else:
        _alert("success", "Finished.", run.model.summary(), stored)


def _alert(kind: str, title: str, *details: str) -> None:
    """A coloured box with our own fixed title, and the untrusted details below it as plain text."""
    icons = {"error": ":material/error:", "warning": ":material/warning:", "success": ":material/check_circle:"}
    getattr(st, kind)(title, icon=icons[kind])
    for detail in details:
        if detail:
            st.text(detail)


def _summary(job: BatchJob) -> None:
    if job.error:
        _alert("error", "The run failed.", job.error)
        return
    result = job.result
    if result is None:
        return
    p = result.progress
    line = (f"{p.proposed} proposed ({p.unparsed} unparsed), {p.failed} failed, {result.remaining} left"
            f" · {result.judge} @ {result.prompt_version} · {result.elapsed_s:.1f} s")
    if result.stopped:
        _alert("error", "Stopped before the end. The reason (as the endpoint or the judge gave it):",
               result.stopped, line)
    elif result.cancelled:
        _alert("warning", "Stopped by you. Every answer received is stored.", line)
    elif p.failed and not (p.proposed or p.already):
        _alert("error", "Every request failed: nothing was proposed. The last error:", p.last_error or "", line)
    elif p.failed:
        _alert("warning", "Finished, but some requests failed (see Failures below); run again to retry them.",
               line)
    else:
        _alert("success", "Finished.", line)


def job_status() -> None:
    """Progress of the current run, refreshed every half second while it runs."""
    job = current_job()
    every = 0.5 if job is not None and job.running else None
    st.fragment(_job_view, run_every=every)()


def failures(store: Store, choice: Choice, dataset: str | None = None) -> None:
    """Requests of this judge and prompt that returned nothing, not since answered (inert table)."""
    rows = store.failures(choice.name, choice.prompt_version, dataset=dataset)
    st.subheader(f"Failures ({len(rows)})")
    if not rows:
        st.text("None: every request of this judge and prompt that was sent got an answer.")
        return
    st.dataframe([{"cluster": r["cluster_id"], "error": r["error"], "when": r["created_at"]} for r in rows],
                 hide_index=True)


def page(store: Store, dataset: str | None = None) -> None:
    """The whole page, top to bottom as the screen reads; it works on the sidebar's dataset."""
    choice = judge_choice(store, dataset)
    if choice.problem and choice.kind != "learned":  # the learned judge's refusal is its line above
        _alert("error", "This setting cannot work:", choice.problem)
    pending = store.pending_cluster_ids(choice.name, choice.prompt_version, dataset=dataset)
    total = store.count_clusters(dataset)
    done = total - len(pending)  # say what is done, then what is left
    if not (choice.kind == "learned" and choice.problem):  # no version to count without a model
        st.text(f"{done} of {total} clusters have a proposal from {choice.name} @ {choice.prompt_version}"
                + (f"; {len(pending)} still to run." if pending else "."))
    with st.expander("Preview the prompt", expanded=False):
        preview(store, choice, pending, dataset)
    run_controls(store, choice, len(pending), dataset)
    job_status()
    if choice.kind != "learned":  # it sends no requests, so nothing can fail to answer
        failures(store, choice, dataset)
