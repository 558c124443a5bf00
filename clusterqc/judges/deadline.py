"""A whole-request time limit and a stop switch for the LLM judge's HTTP requests.

Why: httpx (here httpx2, under the `openai` client) has no total timeout, only limits per
connect, per read and per write. A server that sends its body one byte every few seconds
never trips a per-read limit, so `--timeout 3` still waited minutes, and nothing could stop
a request in flight: Ctrl-C and the app's Stop waited for it.

How: the client's transport is an ordinary `httpx2.HTTPTransport` whose connections use a
network backend that knows, per thread, when the current attempt must be over:
- each attempt (the client's retries each get a fresh one) starts a deadline `limit` seconds
  away, covering connect, sending, the headers and the last byte of the body;
- reads wait in slices of READ_SLICE seconds, so a deadline or a stop is noticed at once
  even while the server sends nothing, and a slow drip cannot stretch a read;
- past the deadline a read raises httpcore's ReadTimeout, which the `openai` client treats
  like any timeout (retry, then APITimeoutError);
- `stop()` makes every read, connect and retry pause raise `Cancelled`, an OpenAIError, which
  the client passes through without retrying.
A connection refused before the server ever answered raises `Refused` (also never retried):
nothing is listening there, and retrying every cluster for two minutes only hides that.

The retry pause is the client's own `_sleep_for_retry` made interruptible (`StoppableOpenAI`);
should a future `openai` rename it, the override is simply not called and the pauses are the
client's plain sleeps again: slower to stop, still correct. Proxies taken from the environment
(HTTPS_PROXY) get httpx's own transports, without this limit.
"""

from __future__ import annotations

import errno
import logging
import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpcore2
import httpx2
import openai

from clusterqc.settings import scrub_url

READ_SLICE = 0.25  # seconds: how soon a stop or a deadline is noticed while a read waits
CONNECT_LIMIT = 10.0  # seconds: no healthy endpoint takes longer to accept a connection


class _ScrubURLs(logging.Filter):
    """httpx logs every request's URL at INFO; a base URL's user:password@ must not reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub_url(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True


for _name in ("httpx2", "httpcore2", "openai"):
    logging.getLogger(_name).addFilter(_ScrubURLs())


class Cancelled(openai.OpenAIError):
    """The run was stopped while this request was in flight: abandoned, never retried."""


class Refused(openai.OpenAIError):
    """Connection refused before this client ever got an answer: nothing listens at that address."""


class RequestClock:
    """Per-thread deadlines for the attempt in flight, and the switch that stops them all."""

    def __init__(self, limit: float):
        self.limit = limit
        self.stopped = threading.Event()
        self.answered = False  # the server has sent a response at least once
        self._local = threading.local()

    def start(self) -> None:
        """A new attempt on this thread: its deadline is `limit` seconds from now."""
        self.check()
        self._local.deadline = time.monotonic() + self.limit

    def check(self) -> None:
        if self.stopped.is_set():
            raise Cancelled("the run was stopped while this request was in flight")

    def left(self) -> float:
        """Seconds this thread's attempt has left (`limit` outside an attempt); raises once stopped."""
        self.check()
        deadline = getattr(self._local, "deadline", None)
        return self.limit if deadline is None else deadline - time.monotonic()

    def stop(self) -> None:
        self.stopped.set()


def _bounded(*limits: float | None) -> float:
    return min(x for x in limits if x is not None)


class _Stream(httpcore2.NetworkStream):
    """A connection whose reads and writes end with the attempt's deadline or a stop."""

    def __init__(self, inner: httpcore2.NetworkStream, clock: RequestClock):
        self._inner = inner
        self._clock = clock

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        own_end = None if timeout is None else time.monotonic() + timeout
        while True:
            left = _bounded(self._clock.left(), None if own_end is None else own_end - time.monotonic())
            if left <= 0:
                raise httpcore2.ReadTimeout(f"no complete answer within {self._clock.limit:g} s")
            try:
                return self._inner.read(max_bytes, min(left, READ_SLICE))
            except httpcore2.ReadTimeout:
                continue  # a slice with no data: look at the clock again

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        left = _bounded(self._clock.left(), timeout)
        if left <= 0:
            raise httpcore2.WriteTimeout(f"could not send the request within {self._clock.limit:g} s")
        self._inner.write(buffer, left)

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore2.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bounded(self._clock.left(), timeout))
        return _Stream(inner, self._clock)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


def _refused(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, ConnectionRefusedError) or getattr(cause, "errno", None) == errno.ECONNREFUSED


class _Backend(httpcore2.NetworkBackend):
    """The standard blocking backend, with connects bounded by the deadline and streams wrapped."""

    def __init__(self, clock: RequestClock):
        self._inner = httpcore2.SyncBackend()
        self._clock = clock

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Iterable[Any] | None = None) -> httpcore2.NetworkStream:
        limit = _bounded(self._clock.left(), timeout, CONNECT_LIMIT)
        if limit <= 0:
            raise httpcore2.ConnectTimeout(f"could not connect within {self._clock.limit:g} s")
        try:
            stream = self._inner.connect_tcp(host, port, limit, local_address, socket_options)
        except httpcore2.ConnectError as exc:
            if not self._clock.answered and _refused(exc):
                raise Refused("connection refused") from exc
            raise
        return _Stream(stream, self._clock)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Iterable[Any] | None = None) -> httpcore2.NetworkStream:
        stream = self._inner.connect_unix_socket(path, _bounded(self._clock.left(), timeout), socket_options)
        return _Stream(stream, self._clock)

    def sleep(self, seconds: float) -> None:
        if self._clock.stopped.wait(seconds):
            self._clock.check()


class DeadlineTransport(httpx2.HTTPTransport):
    """httpx's own transport; each request it sends is one attempt with its own deadline."""

    def __init__(self, clock: RequestClock, **kwargs: Any):
        super().__init__(**kwargs)
        pool = self._pool
        if not hasattr(pool, "_network_backend"):  # pinned by tests/test_endpoint_hostile.py
            raise RuntimeError("httpcore2's connection pool changed: cannot bound requests in time")
        pool._network_backend = _Backend(clock)
        self._clock = clock

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        self._clock.start()
        response = super().handle_request(request)
        self._clock.answered = True
        return response


class StoppableOpenAI(openai.OpenAI):
    """The `openai` client whose pauses between retries end at once when the clock is stopped."""

    def __init__(self, *, clock: RequestClock, **kwargs: Any):
        super().__init__(**kwargs)
        self._clusterqc_clock = clock

    def _sleep_for_retry(self, *, retries_taken: int, max_retries: int, options: Any,
                         response: httpx2.Response | None) -> None:
        pause = self._calculate_retry_timeout(max_retries - retries_taken, options,
                                              response.headers if response is not None else None)
        if self._clusterqc_clock.stopped.wait(pause):
            self._clusterqc_clock.check()


def make_client(clock: RequestClock, *, api_key: str, base_url: str | None, timeout: float,
                max_retries: int, max_connections: int = 256) -> StoppableOpenAI:
    """An `openai` client whose every attempt ends within `timeout` seconds, connect to last byte."""
    limits = httpx2.Limits(max_connections=max_connections, max_keepalive_connections=64)
    http_client = openai.DefaultHttpxClient(transport=DeadlineTransport(clock, limits=limits))
    args: dict[str, Any] = {
        "api_key": api_key,
        "timeout": httpx2.Timeout(timeout, connect=min(timeout, CONNECT_LIMIT)),
        "max_retries": max_retries,
        "http_client": http_client,
        "clock": clock,
    }
    if base_url:
        args["base_url"] = base_url
    return StoppableOpenAI(**args)
