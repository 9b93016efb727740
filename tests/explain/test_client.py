"""The chat completions client against the fake server: retries, Retry-After, time-outs, lost
connections, answers that are not chat completions, and the key kept to the header."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate

import pytest

from generator.errors import UserError
from generator.explain.client import Client, GaveUp, retry_after
from tests.explain.fake_llm import FakeLLM, Reply

BODY = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def sleeps() -> list[float]:
    return []


def client(url: str, sleeps: list[float], retries: int = 3, timeout: float = 5.0,
           key: str | None = None) -> Client:
    return Client(url, key, timeout, retries, backoff=0.01, sleep=sleeps.append)


def scripted(replies: list[Reply]) -> FakeLLM:
    """A server answering with `replies` in turn, then "ok"."""
    return FakeLLM(lambda body, n: replies[n] if n < len(replies) else Reply("ok"))


@pytest.fixture
def server_of() -> Iterator[list[FakeLLM]]:
    made: list[FakeLLM] = []
    yield made
    for s in made:
        s.close()


def test_a_429_waits_as_retry_after_says(server_of: list, sleeps: list) -> None:
    server = scripted([Reply(status=429, headers={"Retry-After": "0.25"}, raw=b"{}"),
                       Reply(status=429, headers={"Retry-After": formatdate(time.time() + 3,
                                                                            usegmt=True)},
                             raw=b"{}")])
    server_of.append(server)
    answer = client(server.url, sleeps).complete(BODY)
    assert answer.text == "ok" and len(server.requests) == 3
    assert sleeps[0] == 0.25 and 1.0 <= sleeps[1] <= 3.0  # an HTTP date: whole seconds


def test_5xx_backs_off_then_gives_up(server_of: list, sleeps: list) -> None:
    server = scripted([Reply(status=500, raw=b"boom")] * 10)
    server_of.append(server)
    with pytest.raises(GaveUp, match=r"HTTP 500 boom \(4 tries\)"):
        client(server.url, sleeps).complete(BODY)
    assert sleeps == [0.01, 0.02, 0.04] and len(server.requests) == 4


def test_a_hang_past_the_time_out_is_tried_again(server_of: list, sleeps: list) -> None:
    server = scripted([Reply("late", delay=3.0)])
    server_of.append(server)
    start = time.perf_counter()
    answer = client(server.url, sleeps, timeout=0.3).complete(BODY)
    assert answer.text == "ok" and time.perf_counter() - start < 2.5
    assert len(server.requests) == 2 and sleeps == [0.01]


def test_a_dead_server_is_given_up_on(server_of: list, sleeps: list) -> None:
    server = FakeLLM()
    server.close()
    with pytest.raises(GaveUp, match="connection failed"):
        client(server.url, sleeps, retries=2).complete(BODY)
    assert len(sleeps) == 2


def test_a_refusal_no_retry_can_change_is_one_clear_error(server_of: list, sleeps: list) -> None:
    server = scripted([Reply(status=401, raw=b'{"error": "bad key"}')])
    server_of.append(server)
    with pytest.raises(UserError, match=r"HTTP 401 .*bad key.*check --endpoint, --model and the "
                                        "API key"):
        client(server.url, sleeps).complete(BODY)
    assert len(server.requests) == 1 and sleeps == []


@pytest.mark.parametrize("raw, why", [(b"{not json", "not a chat completion"),
                                      (b'{"choices": []}', "not a chat completion"),
                                      (b'{"choices": [{"message": {"content": 7}}]}',
                                       "not a chat completion")])
def test_a_body_that_is_not_a_chat_completion_is_an_answer_with_an_error(
        server_of: list, sleeps: list, raw: bytes, why: str) -> None:
    server = scripted([Reply(raw=raw)])
    server_of.append(server)
    answer = client(server.url, sleeps).complete(BODY)
    assert why in answer.error and answer.text == "" and len(server.requests) == 1


def test_the_key_goes_in_the_header_only(server_of: list, sleeps: list) -> None:
    server = scripted([])
    server_of.append(server)
    client(server.url, sleeps, key="sk-secret").complete(BODY)
    client(server.url, sleeps).complete(BODY)
    assert server.headers[0]["Authorization"] == "Bearer sk-secret"
    assert "Authorization" not in server.headers[1]
    assert "sk-secret" not in str(server.requests)


def test_retry_after_forms() -> None:
    assert retry_after("7") == 7.0 and retry_after(None) is None and retry_after("soon") is None
    assert retry_after(formatdate(time.time() - 60, usegmt=True)) == 0.0


def test_a_request_the_server_refuses_is_that_request_s_failure(server_of: list,
                                                                 sleeps: list) -> None:
    """400, 413, 422: this request is too long, filtered or has a parameter the model does not
    take; the run goes on (its answer carries the error)."""
    for status in (400, 413, 422):
        server = scripted([Reply(status=status, raw=b'{"error": "context_length_exceeded"}')])
        server_of.append(server)
        answer = client(server.url, sleeps).complete(BODY)
        assert answer.error == (f"the server refused this request: HTTP {status} "
                                '{"error": "context_length_exceeded"}')
        assert len(server.requests) == 1 and sleeps == []


def test_an_error_object_with_status_200_is_tried_again(server_of: list, sleeps: list) -> None:
    server = scripted([Reply(raw=b'{"error": {"message": "rate limited"}}')] * 10)
    server_of.append(server)
    with pytest.raises(GaveUp, match="error answer: .*rate limited"):
        client(server.url, sleeps, retries=2).complete(BODY)
    assert len(server.requests) == 3


def test_content_parts_and_a_cut_answer(server_of: list, sleeps: list) -> None:
    parts = (b'{"choices": [{"message": {"content": [{"type": "text", "text": "[EXPLANATION]: "},'
             b' {"type": "image_url"}, {"type": "text", "text": "cats"}]}, '
             b'"finish_reason": "length"}]}')
    server = scripted([Reply(raw=parts)])
    server_of.append(server)
    answer = client(server.url, sleeps).complete(BODY)
    assert answer.text == "[EXPLANATION]: cats" and answer.cut and not answer.error
