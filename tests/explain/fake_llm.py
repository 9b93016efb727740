"""A fake OpenAI-compatible chat completions server on 127.0.0.1 (the network edge, the one place
the tests fake): it records every request and answers by a script.

The default script, `heuristic`, is a scripted explainer and scorer whose answers a test can
compute by hand:

    explainer   the marked text that occurs most often (ties: the first), as
                [EXPLANATION]: the text "X"
    detection   1 for an example whose text contains X, else 0
    fuzzing     1 for an example all of whose marked runs contain X, else 0

Usage is reported as characters / 4 (prompt) and / 4 (answer), rounded down.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass
class Reply:
    """What the server sends: a chat completion of `content` (with `refusal`, `logprobs`), or
    `raw` bytes, with `status` and `headers`, after `delay` seconds."""

    content: str | None = ""
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    delay: float = 0.0
    refusal: str | None = None
    logprobs: list[dict[str, Any]] | None = None
    usage: bool = True


Script = Callable[[dict[str, Any], int], Reply]
"""(request body, its number from 0) -> the reply."""


def user_text(body: dict[str, Any]) -> str:
    return body["messages"][-1]["content"]


def task_of(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"]
    return ("explain" if "[EXPLANATION]" in system else
            "fuzzing" if "marked between << and >>" in system and "random" in system else
            "detection")


def examples_of(text: str) -> list[str]:
    """The example texts of a prompt, in order."""
    return re.findall(r"^Example \d+: (.*?)(?=\nExample \d+: |\Z)", text, re.S | re.M)


def explanation_of(text: str) -> str:
    return re.match(r"Explanation: (.*?)\n\n", text, re.S).group(1)  # type: ignore[union-attr]


def quoted(explanation: str) -> str:
    return explanation[explanation.index('"') + 1:explanation.rindex('"')]


def heuristic(body: dict[str, Any], n: int) -> Reply:
    text, task = user_text(body), task_of(body)
    if task == "explain":
        runs = Counter(r for ex in examples_of(text) for r in re.findall(r"<<(.*?)>>", ex, re.S))
        top = max(runs.items(), key=lambda kv: kv[1])[0] if runs else ""
        return Reply(f'Looking at the marks.\n[EXPLANATION]: the text "{top}"')
    x = quoted(explanation_of(text))
    answers = [int(x in ex) if task == "detection" else
               int(all(x in run for run in re.findall(r"<<(.*?)>>", ex, re.S)))
               for ex in examples_of(text)]
    return Reply(orjson.dumps(answers).decode())


class FakeLLM:
    """The server; `url` is the API base to pass as --endpoint."""

    def __init__(self, script: Script = heuristic):
        self.script = script
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop answering: later connections are refused."""
        self.server.shutdown()
        self.server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    n = len(fake.requests)
                    fake.requests.append(body)
                    fake.headers.append(dict(self.headers))
                reply = fake.script(body, n) if self.path == "/v1/chat/completions" else Reply(
                    status=404, raw=b'{"error": "not found"}')
                if reply.delay:
                    threading.Event().wait(reply.delay)
                data = reply.raw if reply.raw is not None else completion(body, reply)
                try:
                    self.send_response(reply.status)
                    for key, value in {"Content-Type": "application/json", **reply.headers}.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting
                    pass

        return Handler


def completion(body: dict[str, Any], reply: Reply) -> bytes:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.refusal is not None:
        message["refusal"] = reply.refusal
    choice: dict[str, Any] = {"index": 0, "message": message, "finish_reason": "stop"}
    if reply.logprobs is not None:
        choice["logprobs"] = {"content": reply.logprobs}
    out: dict[str, Any] = {"id": "fake", "object": "chat.completion", "model": body.get("model"),
                           "choices": [choice]}
    if reply.usage:
        prompt = sum(len(m["content"]) for m in body["messages"])
        out["usage"] = {"prompt_tokens": prompt // 4,
                        "completion_tokens": len(reply.content or "") // 4,
                        "total_tokens": prompt // 4 + len(reply.content or "") // 4}
    return orjson.dumps(out)
