"""The stand-in server itself, through the real openai client: what other tests rely on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import openai
import pytest

from openai_standin import Reply, StandIn


def client(server: StandIn, key: str = "sk-a", **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, **options)  # type: ignore[arg-type]


def ask(c: openai.OpenAI, text: str = "hello") -> str:
    response = c.chat.completions.create(model="m", messages=[{"role": "user", "content": text}])
    return response.choices[0].message.content or ""


def test_answer_is_a_function_of_the_prompt_and_requests_are_recorded(standin: StandIn) -> None:
    standin.answer = lambda prompt: prompt.upper()
    assert ask(client(standin), "shout") == "SHOUT"
    [seen] = standin.chat_requests()
    assert seen.prompt == "shout" and seen.api_key == "sk-a" and seen.status == 200
    assert seen.body["model"] == "m" and seen.finished_at >= seen.received_at


def test_queue_then_handler_then_default(standin: StandIn) -> None:
    standin.enqueue(Reply(content="first"))
    standin.handler = lambda req: "from handler" if "h" in req.prompt else None
    c = client(standin)
    assert [ask(c, "x"), ask(c, "h"), ask(c, "x")] == ["first", "from handler", standin.answer("x")]


def test_expected_key_gives_401(standin: StandIn) -> None:
    standin.expected_api_key = "sk-right"
    with pytest.raises(openai.AuthenticationError):
        ask(client(standin, "sk-wrong"))
    assert ask(client(standin, "sk-right"))


def test_slow_body_after_headers_times_out(standin: StandIn) -> None:
    standin.enqueue(Reply(body_delay=1.0))
    with pytest.raises(openai.APITimeoutError):
        ask(client(standin, timeout=0.2, max_retries=0))
    assert len(standin.chat_requests()) == 1


def test_cut_body_is_a_connection_error(standin: StandIn) -> None:
    standin.enqueue(Reply(cut_body=True))
    with pytest.raises(openai.APIConnectionError):
        ask(client(standin, max_retries=0))


def test_models_endpoint(standin: StandIn) -> None:
    assert [m.id for m in client(standin).models.list()] == ["standin"]


def test_standalone_process_prints_its_url() -> None:
    script = Path(__file__).with_name("openai_standin.py")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        url = (proc.stdout.readline() if proc.stdout else "").strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        assert ask(openai.OpenAI(base_url=url, api_key="k"))
    finally:
        proc.kill()
        proc.wait()
