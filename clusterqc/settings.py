"""Where the LLM endpoint comes from: flags, then the environment, then Streamlit secrets.

One resolver serves the CLI (flags + environment) and the app (a key typed into the page,
the environment, and `st.secrets` handed in as a plain dict, so this module needs no
Streamlit). The API key is kept out of `repr`, and `redact` scrubs it from any text we show,
because an exception message or a log line is the usual way a key leaks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

ENV_KEY = "OPENAI_API_KEY"
ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_MODEL = "CLUSTERQC_MODEL"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 4
# A cap on each answer, so a model that never stops (or a server that pads) cannot run up a
# bill or a database: the seed's answers are ~120 tokens; reasoning models think within this.
DEFAULT_MAX_TOKENS = 2048
# Local servers (vLLM, Ollama, llama.cpp) ignore the key, but the openai client insists on one.
PLACEHOLDER_KEY = "not-needed"
SECRETS_SECTION = "openai"  # [openai] api_key / base_url / model in .streamlit/secrets.toml

_KEY_LIKE = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
# user:password@ in any URL of a message (an exception may quote the URL it was given).
_URL_USERINFO = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)[^/\s@]+@", re.IGNORECASE)


class SettingsError(ValueError):
    """An endpoint setting that cannot work (bad URL, negative timeout, ...)."""


@dataclass(frozen=True)
class EndpointConfig:
    """Everything the LLM judge needs to reach one OpenAI-compatible endpoint."""

    model: str = DEFAULT_MODEL
    base_url: str | None = field(default=None, repr=False)  # None: api.openai.com; may hold user:password@
    api_key: str | None = field(default=None, repr=False)
    key_source: str | None = None  # where the key came from, to show instead of the key
    temperature: float = 0.0
    max_tokens: int | None = DEFAULT_MAX_TOKENS  # None: no cap
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    rpm: float | None = None
    tpm: float | None = None

    def __post_init__(self) -> None:
        check_endpoint(self)

    @property
    def configured(self) -> bool:
        """True when the user pointed us at an endpoint (a key or a URL), so the LLM judge is the default."""
        return bool(self.api_key) or bool(self.base_url)

    @property
    def client_key(self) -> str:
        """The key to hand the client: a placeholder for keyless local servers."""
        return self.api_key or PLACEHOLDER_KEY

    @property
    def shown_url(self) -> str:
        """The endpoint as shown and stored anywhere: any user:password@ in it masked."""
        return scrub_url(self.base_url or "https://api.openai.com/v1")

    @property
    def secrets(self) -> tuple[str, ...]:
        """Everything `redact` must mask: the key and the base URL's userinfo (whole and password)."""
        found = [self.api_key] if self.api_key else []
        if self.base_url:
            parts = urlsplit(self.base_url)
            if parts.password:
                found += [f"{parts.username}:{parts.password}", parts.password, unquote(parts.password)]
            elif parts.username:
                found.append(parts.username)  # a bare user@ is usually a token
        return tuple(found)

    def describe(self) -> str:
        """One line for humans, without the key: model, endpoint and where the key came from."""
        where = self.shown_url
        key = f"key from {self.key_source}" if self.api_key else "no API key"
        return f"{self.model} at {where} ({key})"


def check_endpoint(cfg: EndpointConfig) -> None:
    """Reject settings that cannot work, before any request is made."""
    if not cfg.model or not cfg.model.strip():
        raise SettingsError("model: give a model name (e.g. --model gpt-4o-mini)")
    if cfg.base_url is not None:
        parts = urlsplit(cfg.base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SettingsError(
                f"base URL {scrub_url(cfg.base_url)!r}: expected http(s)://host[:port]/v1 (e.g. http://localhost:11434/v1)"
            )
    if not 0 <= cfg.temperature <= 2:
        raise SettingsError(f"temperature {cfg.temperature}: must be between 0 and 2")
    if cfg.max_tokens is not None and cfg.max_tokens < 1:
        raise SettingsError(f"max tokens {cfg.max_tokens}: must be at least 1")
    if cfg.timeout <= 0:
        raise SettingsError(f"timeout {cfg.timeout}: must be more than 0 seconds")
    if cfg.max_retries < 0:
        raise SettingsError(f"max retries {cfg.max_retries}: must be 0 or more")
    for label, value in (("requests per minute", cfg.rpm), ("tokens per minute", cfg.tpm)):
        if value is not None and value <= 0:
            raise SettingsError(f"{label} {value}: must be more than 0")


def _secret(secrets: Mapping[str, Any] | None, env_name: str, section_key: str) -> str | None:
    """A value from Streamlit secrets: top-level `OPENAI_API_KEY = ...` or `[openai] api_key = ...`."""
    if not secrets:
        return None
    value = secrets.get(env_name)
    if not value:
        section = secrets.get(SECRETS_SECTION)
        if isinstance(section, Mapping):
            value = section.get(section_key)
    return str(value) if value else None


def resolve_endpoint(
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key: str | None = None,
    api_key_env: str = ENV_KEY,
    environ: Mapping[str, str] | None = None,
    secrets: Mapping[str, Any] | None = None,
    **options: Any,
) -> EndpointConfig:
    """Flags (or the page's fields) win, then the environment, then Streamlit secrets.

    `api_key` is a key given directly (typed into the app); the CLI never takes one on the
    command line, only the name of the variable that holds it (`api_key_env`), so keys stay
    out of shell history and process listings. `options` are the other EndpointConfig fields.
    """
    env = os.environ if environ is None else environ
    key, source = api_key, "the page" if api_key else None
    if not key and env.get(api_key_env):
        key, source = env[api_key_env], f"${api_key_env}"
    if not key:
        key = _secret(secrets, api_key_env, "api_key")
        source = "Streamlit secrets" if key else None
    chosen_url = base_url or env.get(ENV_BASE_URL) or _secret(secrets, ENV_BASE_URL, "base_url")
    chosen_model = model or env.get(ENV_MODEL) or _secret(secrets, ENV_MODEL, "model") or DEFAULT_MODEL
    clean = {k: v for k, v in options.items() if v is not None}
    if clean.get("max_tokens") == 0:  # 0 on the command line or the page: no cap at all
        clean["max_tokens"] = None
    return EndpointConfig(
        model=chosen_model.strip(),
        base_url=chosen_url.strip().rstrip("/") if chosen_url else None,
        api_key=key,
        key_source=source,
        **clean,
    )


def scrub_url(url: str) -> str:
    """`url` with its userinfo (http://user:password@host) masked: http://***@host."""
    return _URL_USERINFO.sub(r"\g<scheme>***@", url)


def redact(text: str, *secrets: str | None) -> str:
    """`text` with the given secrets, URL passwords and anything that looks like an OpenAI key masked."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):  # "user:pw" before "pw"
        if len(secret) >= 4 and secret != PLACEHOLDER_KEY:
            text = text.replace(secret, "***")
    return _KEY_LIKE.sub("sk-***", _URL_USERINFO.sub(r"\g<scheme>***@", text))
