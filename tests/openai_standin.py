"""A small OpenAI-compatible chat-completions server for tests and benchmarks (127.0.0.1 only).

Why: the LLM judge must be tested with the real `openai` client over real HTTP (retries,
Retry-After, timeouts, cut-off bodies), and nothing may leave the machine. This server speaks
just enough of `POST /v1/chat/completions` (and `GET /v1/models`) for the client, answers
from a script the test controls, and records every request it saw.

Use it from a test (see the `standin` fixture in tests/conftest.py)::

    with StandIn() as server:                      # port 0: the OS picks a free port
        server.answer = lambda prompt: "Reason: fine\\nClassification: Acceptable"
        server.enqueue(Reply(status=429, headers={"Retry-After": "1"}))  # first request only
        client = openai.OpenAI(base_url=server.base_url, api_key="sk-test")
        ...
        assert server.requests[0].status == 429

Scripting, in the order the server consults it for each request:
1. `expected_api_key`: when set, a request with another bearer token gets a 401 at once.
2. `enqueue(*replies)`: one-shot replies, consumed in order, one per request.
3. `handler(request) -> Reply | str | None`: a function of the request; a `str` is the answer
   text; `None` falls through to the defaults.
4. defaults: status 200 with `answer(prompt)` (a function of the last user message), after
   `latency` seconds.

A `Reply` can also delay the first byte (`latency`), send the headers and then stall before the
body (`body_delay`), cut the body off mid-way and drop the connection (`cut_body`), set any
status and headers (`Retry-After`), or send a raw body (`raw_body`) such as invalid JSON.
Hostile modes, for what a broken or malicious endpoint does:
- `drip`: send the body one byte at a time, this many seconds apart (never trips a per-read
  timeout);
- `raw_body` + `content_type`: an HTML login page or plain text with status 200;
- `document`: any JSON document as the body (`{"error": ...}`, `choices: null`, `usage: "many"`);
- `content_value`: any JSON value as the message's content (a list of parts, an int, a dict);
- a `handler` can echo `request.api_key` into the answer text.
Every GET is recorded too, so a test can tell whether a browser fetched an image from here.

Run standalone (the benchmark does, so the server does not share the client's GIL)::

    python tests/openai_standin.py --latency 0.1      # prints "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_ANSWER = "Reason: The samples are varied and descriptive.\nClassification: Acceptable"


@dataclass(frozen=True)
class Reply:
    """What the server sends for one request. Every field has a harmless default."""

    status: int = 200
    content: str | None = None  # the answer text; None: use the server's `answer(prompt)`
    headers: dict[str, str] = field(default_factory=dict)
    latency: float | None = None  # seconds before anything is sent; None: the server's latency
    body_delay: float = 0.0  # seconds between the headers and the body (a slow stream)
    cut_body: bool = False  # announce the full length, send half, close the connection
    raw_body: bytes | None = None  # send these bytes as the body instead of a JSON document
    error_message: str | None = None  # message of the OpenAI-style error body for status >= 400
    usage: dict[str, Any] | None = None  # token usage to report as is; None: a chars/4 estimate
    finish_reason: str = "stop"  # "length": the answer was cut off at max_tokens
    drip: float = 0.0  # seconds between single bytes of the body (a server that trickles)
    content_type: str = "application/json"
    document: Any = None  # a JSON document sent as the body as is (for status 200 too)
    content_value: Any = None  # a JSON value for message.content instead of the answer text


@dataclass
class SeenRequest:
    """One request as the server received it (recorded before the reply is sent)."""

    received_at: float  # time.monotonic() when the request was read
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON, or None
    status: int | None = None  # the status the server answered with (None: not yet / dropped)
    finished_at: float | None = None  # time.monotonic() after the reply was written

    @property
    def api_key(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list((self.body or {}).get("messages") or []) if isinstance(self.body, dict) else []

    @property
    def prompt(self) -> str:
        """The text of the last user message ('' if none)."""
        for message in reversed(self.messages):
            if message.get("role") == "user":
                content = message.get("content")
                return content if isinstance(content, str) else json.dumps(content)
        return ""

    @property
    def retry_count(self) -> int:
        """The openai client's own count of retries for this request (x-stainless-retry-count)."""
        return int(self.headers.get("x-stainless-retry-count", "0") or 0)


class StandIn:
    """The server: start it, script it, read `requests`, stop it. Thread-safe."""

    def __init__(
        self,
        latency: float = 0.0,
        answer: Callable[[str], str] | None = None,
        expected_api_key: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.latency = latency
        self.answer: Callable[[str], str] = answer or (lambda prompt: DEFAULT_ANSWER)
        self.expected_api_key = expected_api_key
        self.handler: Callable[[SeenRequest], Reply | str | None] | None = None
        self.requests: list[SeenRequest] = []
        self.in_flight = 0  # chat requests being answered right now
        self.max_in_flight = 0  # the most ever answered at once (to check a client's concurrency)
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        self._server = ThreadingHTTPServer((host, port), _make_handler(self))
        self._server.daemon_threads = True
        self._server.request_queue_size = 256
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------------- lifecycle

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What to pass as the client's `base_url`."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "StandIn":
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="openai-standin", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and drop every open connection, as a server that goes away does."""
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            open_now = list(self._connections)
        for sock in open_now:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "StandIn":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----------------------------------------------------------------- scripting

    def enqueue(self, *replies: Reply) -> None:
        """One-shot replies for the next requests, in order (then the defaults apply again)."""
        with self._lock:
            self._queue.extend(replies)

    def reset(self) -> None:
        """Forget recorded requests, queued replies and the handler."""
        with self._lock:
            self.requests.clear()
            self._queue.clear()
            self.handler = None

    def chat_requests(self) -> list[SeenRequest]:
        """Recorded chat-completion requests (a snapshot)."""
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    # ----------------------------------------------------------------- internals

    def _record(self, request: SeenRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _choose(self, request: SeenRequest) -> Reply:
        if self.expected_api_key is not None and request.api_key != self.expected_api_key:
            return Reply(status=401, error_message="Incorrect API key provided.", latency=0.0)
        with self._lock:
            queued = self._queue.popleft() if self._queue else None
        if queued is not None:
            return queued
        if self.handler is not None:
            chosen = self.handler(request)
            if isinstance(chosen, str):
                return Reply(content=chosen)
            if chosen is not None:
                return chosen
        return Reply()


def completion_body(
    request: SeenRequest, content: str, usage: dict[str, int] | None, finish_reason: str = "stop"
) -> dict[str, Any]:
    """An OpenAI chat.completion document with `content` as the assistant's answer."""
    prompt_chars = sum(len(str(m.get("content", ""))) for m in request.messages)
    usage = usage or {
        "prompt_tokens": max(1, prompt_chars // 4),
        "completion_tokens": max(1, len(content) // 4),
    }
    usage = dict(usage)  # a Reply's own dict is shared by every request it answers
    counts = (usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0))
    if "total_tokens" not in usage and all(isinstance(n, int) for n in counts):
        usage["total_tokens"] = sum(counts)  # a hostile test's odd usage is sent exactly as given
    model = request.body.get("model", "standin") if isinstance(request.body, dict) else "standin"
    return {
        "id": f"chatcmpl-standin-{id(request)}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}
        ],
        "usage": usage,
    }


def error_body(status: int, message: str | None) -> dict[str, Any]:
    kinds = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
             429: "rate_limit_exceeded"}
    return {
        "error": {
            "message": message or f"stand-in error {status}",
            "type": kinds.get(status, "server_error"),
            "param": None,
            "code": None,
        }
    }


def _make_handler(server: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
        disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            return

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            try:
                super().finish()
            except OSError:
                pass

        def do_GET(self) -> None:  # noqa: N802 - http.server naming
            seen = self._read(None)
            if self.path.rstrip("/").endswith("/models"):
                self._send_json(seen, 200, {"object": "list", "data": [{"id": "standin", "object": "model"}]})
            else:
                self._send_json(seen, 404, error_body(404, "not found"))

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            seen = self._read(body)
            if not self.path.rstrip("/").endswith("/chat/completions"):
                self._send_json(seen, 404, error_body(404, f"unknown path {self.path}"))
                return
            server._enter()
            try:
                reply = server._choose(seen)
                delay = server.latency if reply.latency is None else reply.latency
                if delay > 0:
                    time.sleep(delay)
                self._send(seen, reply, self._payload(seen, reply))
            finally:
                server._leave()

        def _payload(self, seen: SeenRequest, reply: Reply) -> bytes:
            if reply.raw_body is not None:
                return reply.raw_body
            if reply.document is not None:
                return json.dumps(reply.document).encode()
            if reply.content_value is not None:
                doc = completion_body(seen, "", reply.usage, reply.finish_reason)
                doc["choices"][0]["message"]["content"] = reply.content_value
                return json.dumps(doc).encode()
            if reply.status >= 400:
                return json.dumps(error_body(reply.status, reply.error_message)).encode()
            content = reply.content if reply.content is not None else server.answer(seen.prompt)
            return json.dumps(completion_body(seen, content, reply.usage, reply.finish_reason)).encode()

        def _read(self, body: Any) -> SeenRequest:
            seen = SeenRequest(
                received_at=time.monotonic(),
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            server._record(seen)
            return seen

        def _send_json(self, seen: SeenRequest, status: int, doc: Any) -> None:
            self._send(seen, Reply(status=status), json.dumps(doc).encode())

        def _send(self, seen: SeenRequest, reply: Reply, payload: bytes) -> None:
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.cut_body:
                    self.send_header("Connection", "close")
                self.end_headers()
                if reply.body_delay > 0:
                    self.wfile.flush()
                    time.sleep(reply.body_delay)
                if reply.cut_body:
                    self.wfile.write(payload[: len(payload) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if reply.drip > 0:
                    for i in range(len(payload) - 1):
                        self.wfile.write(payload[i : i + 1])
                        self.wfile.flush()
                        time.sleep(reply.drip)
                    payload = payload[-1:]
                # Recorded before the last write: the client may read the reply and look at
                # the record before this thread runs again. Undone below if it never arrives.
                seen.status, seen.finished_at = reply.status, time.monotonic()
                self.wfile.write(payload)
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                seen.status = None
                self.close_connection = True  # the client gave up (timeout): nothing was delivered
            finally:
                if seen.finished_at is None:
                    seen.finished_at = time.monotonic()

    return Handler


def main(argv: list[str] | None = None) -> None:
    """Serve until killed; print the base URL on the first line of stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    server = StandIn(latency=args.latency, port=args.port)
    print(server.base_url, flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
