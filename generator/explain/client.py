"""A client of the OpenAI-compatible chat completions API (`POST <endpoint>/chat/completions`),
which OpenAI, vLLM, SGLang, llama.cpp's server and ollama all serve: one request, tried again
with backoff after a 429 (its Retry-After honoured), a 5xx, a time-out or a lost connection.

Standard library only (urllib): one dependency fewer, and every byte on the wire is ours to test
against the fake server in tests/explain. The API key is sent as a Bearer token and kept nowhere
else (not in answers, logs or errors).
"""

from __future__ import annotations

import http.client
import logging
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import orjson

from generator.errors import UserError

log = logging.getLogger(__name__)

REQUEST_ERRORS = (400, 413, 422)
"""statuses that refuse one request (too long, filtered, a parameter the model does not take),
not every request: that request's failure, and the run goes on."""
MAX_WAIT = 60.0
"""the longest wait between two tries, in seconds (a Retry-After above it is cut to it)."""


@dataclass(frozen=True)
class Answer:
    """What the server answered to one request (HTTP 200)."""

    text: str
    """the first choice's message content ("" when absent or null)."""
    refusal: str
    """the message's `refusal` field, when the model refused ("" otherwise)."""
    prompt_tokens: int | None
    """usage.prompt_tokens, as the server counted them (None: it did not say)."""
    completion_tokens: int | None
    """usage.completion_tokens."""
    logprobs: list[dict[str, Any]] | None
    """choices[0].logprobs.content (token, logprob, top_logprobs) when asked for and given."""
    error: str = ""
    """why the answer cannot be used as one (a body that is not a chat completion, a request
    the server refused), else ""."""
    cut: bool = False
    """the answer stopped at max_tokens (finish_reason "length")."""
    busy: bool = False
    """an error object sent with HTTP 200 (some proxies answer a rate limit so): tried again."""


class GaveUp(Exception):
    """The server did not answer usably after every try (the message says why)."""


class Client:
    """Chat completions at `endpoint` (the API's base URL, e.g. http://127.0.0.1:8000/v1)."""

    def __init__(self, endpoint: str, api_key: str | None, timeout: float, retries: int,
                 backoff: float, sleep: Callable[[float], None] = time.sleep):
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.api_key, self.timeout, self.retries, self.backoff = api_key, timeout, retries, backoff
        self.sleep = sleep

    def complete(self, body: dict[str, Any]) -> Answer:
        """The answer to `body` (model, messages, ...): a chat completion, or an Answer with
        `error` set for a request the server will not take (HTTP 400, 413, 422: this request's
        failure, logged; the run goes on). GaveUp after retries+1 tries of a 429, a 5xx, a
        time-out or a lost connection; a UserError for what no request can get past (401, 403,
        404: the endpoint, key or model is wrong; a certificate that does not verify)."""
        reason = ""
        for attempt in range(self.retries + 1):
            try:
                answer = parse_answer(self._post(body))
                if not answer.busy:
                    return answer
                reason, wait = answer.error, None
            except urllib.error.HTTPError as err:
                detail = _excerpt(_read(err))
                if err.code in REQUEST_ERRORS:
                    return Answer("", "", None, None, None,
                                  error=f"the server refused this request: HTTP {err.code} {detail}")
                if err.code != 429 and err.code < 500:
                    raise UserError(f"{self.url} refused the request: HTTP {err.code} {detail}; "
                                    "check --endpoint, --model and the API key") from None
                reason = f"HTTP {err.code} {detail}"
                wait = retry_after(err.headers.get("Retry-After"))
            except TimeoutError:
                reason, wait = f"no answer within {self.timeout:g} s", None
            except (urllib.error.URLError, http.client.HTTPException, ConnectionError) as err:
                cause = getattr(err, "reason", err)
                if isinstance(cause, ssl.SSLCertVerificationError):
                    raise UserError(f"{self.url}'s certificate does not verify ({cause.reason}); "
                                    "check --endpoint") from None
                reason, wait = f"connection failed ({cause})", None
            if attempt < self.retries:
                pause = min(MAX_WAIT, wait if wait is not None else self.backoff * 2 ** attempt)
                (log.warning if attempt == 0 else log.debug)(
                    "%s: %s; trying again in %.3g s (%d tries at most)", self.url, reason, pause,
                    self.retries + 1)
                self.sleep(pause)
        raise GaveUp(f"{self.url}: {reason} ({self.retries + 1} tries)")

    def _post(self, body: dict[str, Any]) -> bytes:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=orjson.dumps(body), headers=headers,
                                         method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            return bytes(response.read())


def _read(err: urllib.error.HTTPError) -> bytes:
    try:
        return bytes(err.read())
    except (OSError, http.client.HTTPException):  # the connection broke mid-body
        return b""


def parse_answer(raw: bytes) -> Answer:
    """A chat completion's body as an Answer (`error` set when it is not one; `busy` when it is
    an error object a proxy sent with HTTP 200, worth trying again)."""
    try:
        data = orjson.loads(raw)
        if isinstance(data, dict) and "error" in data and "choices" not in data:
            return Answer("", "", None, None, None, error=f"error answer: {_excerpt(raw)}",
                          busy=True)
        choice = data["choices"][0]
        message = choice["message"]
        text, refusal = _text(message.get("content")), message.get("refusal") or ""
        if not isinstance(refusal, str):
            raise TypeError("refusal is not text")
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError) as err:
        return Answer("", "", None, None, None, error=f"not a chat completion ({err}): "
                                                      f"{_excerpt(raw)}")
    usage = data.get("usage") or {}
    content = (choice.get("logprobs") or {}).get("content")
    return Answer(text, refusal, _count(usage.get("prompt_tokens")),
                  _count(usage.get("completion_tokens")),
                  content if isinstance(content, list) else None,
                  cut=choice.get("finish_reason") == "length")


def _text(content: Any) -> str:
    """The message's text: a string, or the text parts of a list of content parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p["text"] for p in content if isinstance(p, dict)
                       and p.get("type") == "text" and isinstance(p.get("text"), str))
    raise TypeError("content is not text")


def retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _excerpt(raw: bytes, size: int = 200) -> str:
    text = raw.decode("utf-8", "replace").strip().replace("\n", " ")
    return text[:size] + ("…" if len(text) > size else "")
