"""Shared fixtures.

`standin`: a fresh OpenAI-compatible stand-in server (tests/openai_standin.py) on 127.0.0.1,
started for the test and stopped after it. Point the real `openai` client (or `clusterqc
propose --base-url`) at `standin.base_url`, script replies with `standin.enqueue(Reply(...))`,
`standin.handler = fn` or `standin.answer = fn`, and read what it saw in `standin.requests`.

`marked_clusters(n)`: n small clusters whose every sample names the cluster ("cluster-7 ..."),
so a server handler can tell from the prompt which cluster a request is about
(`cluster_in_prompt(prompt)`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from clusterqc.judges.llm import LLMJudge
from clusterqc.model import Cluster, Sample
from clusterqc.settings import EndpointConfig
from clusterqc.store import Store
from openai_standin import StandIn

_MARK = re.compile(r"cluster-(\d+) ")


@pytest.fixture
def standin() -> Iterator[StandIn]:
    server = StandIn()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def marked_clusters(n: int, start: int = 0) -> list[Cluster]:
    """Clusters Cluster_<i> whose sample texts all carry the marker `cluster-<i> `."""
    out = []
    for i in range(start, start + n):
        closest = tuple(Sample(f"cluster-{i} photo of a red bicycle number {k} in a park") for k in range(5))
        furthest = tuple(Sample(f"cluster-{i} aerial view of a harbour, shot {k}") for k in range(5))
        out.append(Cluster(id=f"Cluster_{i}", closest=closest, furthest=furthest, size=100 + i))
    return out


def cluster_in_prompt(prompt: str) -> str | None:
    """The id of the marked cluster a rendered prompt is about (None if it carries no marker)."""
    match = _MARK.search(prompt)
    return f"Cluster_{match.group(1)}" if match else None


@pytest.fixture
def app_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty database file that app.py (through AppTest) will open; no automatic demo import."""
    path = tmp_path / "app.db"
    monkeypatch.setenv("CLUSTERQC_DB", str(path))
    monkeypatch.setenv("CLUSTERQC_DEMO", "0")
    return path


@pytest.fixture
def six_clusters(tmp_path: Path) -> Iterator[Store]:
    """A store of `marked_clusters(6)`: what the judge and fault tests send to the stand-in."""
    with Store(tmp_path / "six.db") as store:
        store.import_clusters(marked_clusters(6))
        yield store


def llm_judge(server: StandIn, api_key: str, model: str = "test-model", **overrides: object) -> LLMJudge:
    """The real LLM judge pointed at the stand-in: 5 s timeout, 2 retries unless overridden."""
    settings = {"model": model, "base_url": server.base_url, "api_key": api_key,
                "key_source": "$OPENAI_API_KEY", "timeout": 5.0, "max_retries": 2, **overrides}
    return LLMJudge(EndpointConfig(**settings))  # type: ignore[arg-type]
