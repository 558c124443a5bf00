"""The LLM judge: the prompt template sent to any OpenAI-compatible chat-completions endpoint.

OpenAI, DeepSeek, vLLM, Ollama and llama.cpp all speak this API, so one client covers them.
Retries are the `openai` client's own (it honours Retry-After on 429 and backs off on 5xx,
timeouts and dropped connections); we only decide what a final error means for the batch:
- 401/403/404 (wrong key, no access, wrong model or URL) are the same for every cluster, so
  they are fatal: the batch stops after one request instead of burning through all of them;
- 400/422 (e.g. a prompt over the context length) belong to one cluster: recorded, batch goes on;
- timeouts, connection errors and 5xx left after the retries are transient: recorded, and the
  runner stops if too many come in a row.
Every message shown is scrubbed of the API key.

The request goes through `client.post("/chat/completions", ...)`, the client's documented way
to send a body as is: the same retries, errors and response type as
`client.chat.completions.create`, without re-walking our plain-dict arguments through the
SDK's TypedDict transform, which was a quarter of the CPU per request (bench/bench_propose.py).
"""

from __future__ import annotations

import time
from typing import Any

import openai
from openai.types.chat import ChatCompletion

from clusterqc.judges.base import JudgeError
from clusterqc.judges.ratelimit import RateLimiter
from clusterqc.model import Cluster, Proposal
from clusterqc.parse import parse_answer
from clusterqc.prompt import PromptTemplate, default_template
from clusterqc.settings import EndpointConfig, redact

# For rate limits and estimates before the real usage is known: the seed's answers are a
# sentence or two of reason plus the classification line.
EXPECTED_ANSWER_TOKENS = 120
MESSAGE_LIMIT = 300


def estimate_tokens(text: str) -> int:
    """About four characters per token: good enough for budgets, and needs no tokenizer download."""
    return len(text) // 4 + 1


def estimate_request_tokens(messages: list[dict[str, str]], max_tokens: int | None) -> int:
    """Prompt tokens (estimated) plus the answer's expected size, capped by max_tokens."""
    prompt = sum(estimate_tokens(m["content"]) + 4 for m in messages)
    answer = min(EXPECTED_ANSWER_TOKENS, max_tokens) if max_tokens else EXPECTED_ANSWER_TOKENS
    return prompt + answer


class LLMJudge:
    """Proposes a verdict by asking an LLM. One client, shared by the runner's threads."""

    def __init__(self, config: EndpointConfig, template: PromptTemplate | None = None):
        self.config = config
        self.template = template or default_template()
        self.name = config.model
        self.prompt_version = self.template.version
        self.limiter = RateLimiter(config.rpm, config.tpm)
        client_args: dict[str, Any] = {
            "api_key": config.client_key,
            "timeout": config.timeout,
            "max_retries": config.max_retries,
        }
        if config.base_url:
            client_args["base_url"] = config.base_url
        self.client = openai.OpenAI(**client_args)

    def __repr__(self) -> str:
        return f"LLMJudge({self.config.describe()}, prompt {self.prompt_version})"

    def close(self) -> None:
        self.client.close()

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
            response = self.client.post("/chat/completions", body=args, cast_to=ChatCompletion)
        except openai.OpenAIError as exc:
            self.limiter.settle(estimate, 0 if _never_reached(exc) else estimate)
            raise self.explain(exc) from None
        except ValueError as exc:  # a 200 whose body is not JSON (a proxy's HTML page, say)
            raise JudgeError(f"unreadable answer from {self._where()}: {type(exc).__name__}") from None
        latency = time.perf_counter() - started
        return self._proposal(cluster, response, latency, estimate)

    def _proposal(self, cluster: Cluster, response: Any, latency: float, estimate: int) -> Proposal:
        if not getattr(response, "choices", None):
            raise JudgeError(f"{self._where()} answered with no choices")
        choice = response.choices[0]
        text = (choice.message.content if choice.message else None) or ""
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        if prompt_tokens is not None or completion_tokens is not None:
            self.limiter.settle(estimate, (prompt_tokens or 0) + (completion_tokens or 0))
        parsed = parse_answer(text)
        error = parsed.error
        if parsed.verdict is None and choice.finish_reason == "length":
            error = f"{error or 'no verdict'} (the answer was cut off at max tokens)"
        return Proposal(
            cluster_id=cluster.id,
            judge=self.name,
            prompt_version=self.prompt_version,
            verdict=parsed.verdict,
            reason=parsed.reason,
            raw=text,
            parse_error=error if parsed.verdict is None else None,
            latency_s=latency,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )

    # ----------------------------------------------------------------- errors

    def _where(self) -> str:
        return self.config.base_url or "api.openai.com"

    def _detail(self, exc: openai.OpenAIError) -> str:
        """The server's own message (from the error body when there is one), key scrubbed."""
        body = getattr(exc, "body", None)
        message = body.get("message") if isinstance(body, dict) else None
        text = str(message or getattr(exc, "message", None) or exc)
        text = " ".join(redact(text, self.config.api_key).split())
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
            return JudgeError(f"429 rate limited by {where} after {self.config.max_retries} retries", transient=True)
        if isinstance(exc, openai.APITimeoutError):
            return JudgeError(
                f"timed out after {self.config.timeout:g} s at {where} ({self.config.max_retries} retries)",
                transient=True,
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = redact(str(exc.__cause__ or exc), self.config.api_key)
            return JudgeError(f"cannot reach {where}: {cause}", transient=True)
        if isinstance(exc, openai.InternalServerError):
            return JudgeError(f"{exc.status_code} server error from {where} after retries: {detail}", transient=True)
        if isinstance(exc, openai.APIStatusError):
            return JudgeError(f"{exc.status_code} from {where} for this cluster: {detail}")
        return JudgeError(f"unreadable answer from {where}: {detail}")


def _never_reached(exc: openai.OpenAIError) -> bool:
    """True when the request surely consumed no tokens at the endpoint."""
    if isinstance(exc, openai.APITimeoutError):
        return False  # the endpoint may well have worked on it
    return isinstance(exc, (openai.APIConnectionError, openai.AuthenticationError, openai.RateLimitError))
