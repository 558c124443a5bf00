"""The LLM judge: the prompt template sent to any OpenAI-compatible chat-completions endpoint.

OpenAI, DeepSeek, vLLM, Ollama and llama.cpp all speak this API, so one client covers them.
Retries are the `openai` client's own (it honours Retry-After on 429 and backs off on 5xx,
timeouts and dropped connections); we only decide what a final error means for the batch:
- 401/403/404 (wrong key, no access, wrong model or URL) are the same for every cluster, so
  they are fatal: the batch stops after one request instead of burning through all of them;
  so is a connection refused before the endpoint ever answered (nothing listens there);
- 400/422 (e.g. a prompt over the context length) belong to one cluster: recorded, batch goes on;
- timeouts, connection errors and 5xx left after the retries are transient: recorded, and the
  runner stops if too many come in a row;
- a 200 that is not a chat completion (a proxy's HTML login page, plain text, `{"error": ...}`)
  is a bad answer: recorded with the server's own first line, and a few in a row stop the run.
`--timeout` bounds each attempt from connect to last byte (clusterqc.judges.deadline), and
`abort()` ends every request in flight at once (Ctrl-C, the app's Stop).

What is stored comes from the answer only after checks: the text (a string, or the text parts
of a list) scrubbed of the key and any URL password, capped at RAW_LIMIT characters with a note;
token counts only when they are sane non-negative integers. Every message shown is scrubbed.

The request goes through `client.post("/chat/completions", ...)`, the client's documented way
to send a body as is, with `cast_to=httpx2.Response`: the client's retries and errors, and the
body read by us, so no server's odd shape reaches a pydantic model or the store unchecked.
(This also skips the SDK's TypedDict transform, a quarter of the CPU per request.)
"""

from __future__ import annotations

import html
import json
import re
import time
from typing import Any

import httpx2
import openai

from clusterqc.judges.base import JudgeError
from clusterqc.judges.deadline import Cancelled, Refused, RequestClock, make_client
from clusterqc.judges.ratelimit import RateLimiter
from clusterqc.model import Cluster, Proposal
from clusterqc.parse import parse_answer
from clusterqc.prompt import PromptTemplate, default_template
from clusterqc.settings import EndpointConfig, redact

# For rate limits and estimates before the real usage is known: the seed's answers are a
# sentence or two of reason plus the classification line.
EXPECTED_ANSWER_TOKENS = 120
MESSAGE_LIMIT = 300
SERVER_LINE_LIMIT = 200
SNIFF_LIMIT = 8 * 1024  # characters of a non-JSON body searched for its first line
RAW_LIMIT = 64 * 1024  # characters of an answer kept in the store (head and tail)
REASON_LIMIT = 8 * 1024  # characters of a parsed reason kept
MAX_SANE_TOKENS = 100_000_000  # a usage count above this is a server's nonsense, not a count
_TAGS = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)


def estimate_tokens(text: str) -> int:
    """About four characters per token: good enough for budgets, and needs no tokenizer download."""
    return len(text) // 4 + 1


def estimate_request_tokens(messages: list[dict[str, str]], max_tokens: int | None) -> int:
    """Prompt tokens (estimated) plus the answer's expected size, capped by max_tokens."""
    prompt = sum(estimate_tokens(m["content"]) + 4 for m in messages)
    answer = min(EXPECTED_ANSWER_TOKENS, max_tokens) if max_tokens else EXPECTED_ANSWER_TOKENS
    return prompt + answer


def cap_text(text: str, limit: int) -> str:
    """At most about `limit` characters: the head and the tail (where the verdict line usually
    is), with a note of how much was left out, so a 20 MB answer cannot fill the database."""
    if len(text) <= limit:
        return text
    tail = limit // 4
    head = limit - tail
    return f"{text[:head]}\n[... {len(text) - head - tail:,} of {len(text):,} characters left out ...]\n{text[-tail:]}"


def usage_count(usage: Any, key: str) -> int | None:
    """A token count from `usage`, or None unless it is a sane non-negative integer."""
    value = usage.get(key) if isinstance(usage, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SANE_TOKENS:
        return None
    return value


def content_text(content: Any) -> str | None:
    """The answer text from a message's `content`: a string, or the text parts of a list
    (some compatible servers send `[{"type": "text", "text": ...}]`); None for other shapes."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p if isinstance(p, str) else p.get("text") if isinstance(p, dict) else None for p in content]
        return "".join(p for p in parts if isinstance(p, str))
    return None


def first_line(text: str) -> str:
    """The first meaningful line of a body: a page's <title>, else its first line of text.

    Only the body's first SNIFF_LIMIT characters are looked at: the lazy tag patterns would be
    quadratic on megabytes of unclosed tags, and the first line is near the top anyway."""
    text = text[:SNIFF_LIMIT]
    title = _title(text)
    if title:
        text = title
    elif "<" in text and ">" in text:
        text = _TAGS.sub("\n", text)
    line = next((ln.strip() for ln in html.unescape(text).splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= SERVER_LINE_LIMIT else line[: SERVER_LINE_LIMIT - 1] + "\u2026"


def _title(text: str) -> str:
    """The text of an HTML page's first <title> element ('' if none), found in linear time."""
    lower = text.lower()
    start = lower.find("<title")
    opened = lower.find(">", start) if start >= 0 else -1
    end = lower.find("</title", opened) if opened >= 0 else -1
    return text[opened + 1 : end].strip() if end >= 0 else ""


def retries_taken(exc: openai.OpenAIError) -> int:
    """How many retries the client made before this final error (its own retry-count header)."""
    request = getattr(exc, "request", None)
    response = getattr(exc, "response", None)
    if response is not None:
        request = getattr(response, "request", request)
    try:
        return int(request.headers.get("x-stainless-retry-count", 0)) if request is not None else 0
    except (TypeError, ValueError, RuntimeError):
        return 0


def _retries_phrase(n: int) -> str:
    return "no retries" if n == 0 else "after 1 retry" if n == 1 else f"after {n} retries"


class LLMJudge:
    """Proposes a verdict by asking an LLM. One client, shared by the runner's threads."""

    def __init__(self, config: EndpointConfig, template: PromptTemplate | None = None):
        self.config = config
        self.template = template or default_template()
        self.name = config.model
        self.prompt_version = self.template.version
        self.limiter = RateLimiter(config.rpm, config.tpm)
        self.clock = RequestClock(config.timeout)
        self.client = make_client(self.clock, api_key=config.client_key, base_url=config.base_url,
                                  timeout=config.timeout, max_retries=config.max_retries)

    def __repr__(self) -> str:
        return f"LLMJudge({self.config.describe()}, prompt {self.prompt_version})"

    def close(self) -> None:
        self.client.close()

    def abort(self) -> None:
        """End every request in flight now, and any later one at once (the run was stopped)."""
        self.clock.stop()

    def request_args(self, cluster: Cluster) -> dict[str, Any]:
        """The chat-completions arguments for one cluster (what --dry-run shows)."""
        args: dict[str, Any] = {
            "model": self.config.model,
            "messages": self.template.messages(cluster),
            "temperature": self.config.temperature,
        }
        if self.config.max_tokens is not None:
            args["max_tokens"] = self.config.max_tokens
        return args

    def judge(self, cluster: Cluster) -> Proposal:
        """Ask once (with the client's retries); raise JudgeError when no answer came back."""
        args = self.request_args(cluster)
        estimate = estimate_request_tokens(args["messages"], self.config.max_tokens)
        self.limiter.acquire(estimate)
        started = time.perf_counter()
        try:
            response = self.client.post("/chat/completions", body=args, cast_to=httpx2.Response)
        except openai.OpenAIError as exc:
            self.limiter.settle(estimate, 0 if _never_reached(exc) else estimate)
            raise self.explain(exc) from None
        latency = time.perf_counter() - started
        return self._proposal(cluster, self._document(response), latency, estimate)

    def _scrub(self, text: str) -> str:
        return redact(text, *self.config.secrets)

    def _bad(self, what: str) -> JudgeError:
        return JudgeError(self._scrub(f"{self._where()} answered HTTP 200 with {what}"), bad_answer=True)

    def _document(self, response: httpx2.Response) -> dict[str, Any]:
        """The answer's JSON object, or a bad-answer error quoting the server's own first line."""
        body = response.content.decode("utf-8", errors="replace")
        kind = (response.headers.get("content-type") or "no content type").split(";")[0].strip()
        try:
            doc = json.loads(body)
        except ValueError:
            shown = first_line(body) or "(empty body)"
            raise self._bad(f"{kind} instead of a chat completion: {shown}") from None
        if not isinstance(doc, dict):
            raise self._bad(f"JSON {type(doc).__name__} instead of a chat completion: {first_line(body)}")
        return doc

    def _answer_text(self, doc: dict[str, Any]) -> tuple[str, Any]:
        """(text, finish_reason) of the first choice, or a bad-answer error saying what came instead."""
        choices = doc.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            error = doc.get("error")
            if error is not None:
                message = error.get("message", error) if isinstance(error, dict) else error
                raise self._bad(f"an error: {first_line(str(message)) or '(no message)'}")
            shown = "null" if choices is None else type(choices).__name__ if not isinstance(choices, list) else "[]"
            raise self._bad(f"no choices (choices: {shown})")
        choice = choices[0]
        message = choice.get("message")
        if not isinstance(message, dict):
            raise self._bad(f"a choice whose message is a {type(message).__name__}, not an object")
        content = message.get("content")
        if isinstance(content, dict):
            content = json.dumps(content)  # a JSON-mode answer sent as an object, not a string
        text = content_text(content)
        if text is None:
            raise self._bad(f"an answer whose content is a {type(content).__name__}, not text")
        return text, choice.get("finish_reason")

    def _proposal(self, cluster: Cluster, doc: dict[str, Any], latency: float, estimate: int) -> Proposal:
        text, finish_reason = self._answer_text(doc)
        text = self._scrub(text)  # a server that echoes the key must not get it into the store
        usage = doc.get("usage")
        prompt_tokens = usage_count(usage, "prompt_tokens")
        completion_tokens = usage_count(usage, "completion_tokens")
        if prompt_tokens is not None or completion_tokens is not None:
            self.limiter.settle(estimate, (prompt_tokens or 0) + (completion_tokens or 0))
        parsed = parse_answer(text)
        error = parsed.error
        if parsed.verdict is None and finish_reason == "length":
            error = f"{error or 'no verdict'} (the answer was cut off at max tokens)"
        return Proposal(
            cluster_id=cluster.id,
            judge=self.name,
            prompt_version=self.prompt_version,
            verdict=parsed.verdict,
            reason=cap_text(parsed.reason, REASON_LIMIT),
            raw=cap_text(text, RAW_LIMIT),
            parse_error=cap_text(error, MESSAGE_LIMIT) if parsed.verdict is None and error else None,
            latency_s=latency,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    # ----------------------------------------------------------------- errors

    def _where(self) -> str:
        return self.config.shown_url

    def _detail(self, exc: openai.OpenAIError) -> str:
        """The server's own message (from the error body when there is one), key scrubbed."""
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        text = str(message or getattr(exc, "message", None) or exc)
        text = " ".join(self._scrub(text).split())
        return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 1] + "…"

    def explain(self, exc: openai.OpenAIError) -> JudgeError:
        """Turn the client's final error into a JudgeError users can act on."""
        where, model, detail = self._where(), self.config.model, self._detail(exc)
        if isinstance(exc, openai.AuthenticationError):
            key = (
                f"the API key from {self.config.key_source}"
                if self.config.api_key
                else "no API key (set OPENAI_API_KEY or choose the variable with --api-key-env)"
            )
            return JudgeError(f"401 Unauthorized from {where}: it rejected {key}. Server said: {detail}", fatal=True)
        if isinstance(exc, openai.PermissionDeniedError):
            return JudgeError(f"403 Forbidden from {where}: this key may not use model {model!r}. {detail}", fatal=True)
        if isinstance(exc, openai.NotFoundError):
            return JudgeError(
                f"404 Not Found from {where}: no model {model!r} there, or the URL is wrong "
                f"(an OpenAI-compatible base URL usually ends in /v1). {detail}",
                fatal=True,
            )
        if isinstance(exc, openai.RateLimitError):
            if exc.code == "insufficient_quota":
                return JudgeError(f"429 from {where}: the account has no quota left. {detail}", fatal=True)
            return JudgeError(f"429 rate limited by {where} ({self._retry_story(exc)})", transient=True)
        if isinstance(exc, Cancelled):
            return JudgeError("stopped before an answer came", cancelled=True)
        if isinstance(exc, Refused):
            return JudgeError(
                f"cannot reach {where}: connection refused (nothing is listening there: is the server "
                "running, and is the base URL right?)",
                fatal=True,
            )
        if isinstance(exc, openai.APITimeoutError):
            return JudgeError(
                f"timed out after {self.config.timeout:g} s at {where} ({_retries_phrase(retries_taken(exc))})",
                transient=True,
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = self._scrub(str(exc.__cause__ or exc))
            return JudgeError(f"cannot reach {where}: {cause} ({_retries_phrase(retries_taken(exc))})",
                              transient=True)
        if isinstance(exc, openai.InternalServerError):
            return JudgeError(f"{exc.status_code} server error from {where} ({self._retry_story(exc)}): {detail}",
                              transient=True)
        if isinstance(exc, openai.APIStatusError):
            return JudgeError(f"{exc.status_code} from {where} for this cluster: {detail}")
        return JudgeError(self._scrub(f"unreadable answer from {where}: {detail}"))

    def _retry_story(self, exc: openai.OpenAIError) -> str:
        """What the client did about a 429/5xx, truthfully: how many retries, and why none."""
        taken = retries_taken(exc)
        response = getattr(exc, "response", None)
        wait = _retry_after(response.headers if response is not None else None)
        if taken == 0 and wait is not None and wait > MAX_CLIENT_WAIT:
            return f"Retry-After {wait:g} s is longer than the client waits ({MAX_CLIENT_WAIT} s), so no retries"
        if taken == 0 and self.config.max_retries == 0:
            return "no retries: --max-retries is 0"
        return _retries_phrase(taken)


MAX_CLIENT_WAIT = 120  # the openai client's longest Retry-After it will wait for (MAX_RETRY_AFTER_DELAY)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: the client treats it as its own backoff


def _never_reached(exc: openai.OpenAIError) -> bool:
    """True when the request surely consumed no tokens at the endpoint."""
    if isinstance(exc, openai.APITimeoutError):
        return False  # the endpoint may well have worked on it
    return isinstance(exc, (openai.APIConnectionError, openai.AuthenticationError, openai.RateLimitError, Refused))
