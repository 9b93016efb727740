"""`feature-browser explain` end to end against the fake server: labels and scores against a
hand-computed reference, failures recorded, resume after a lost server, SIGTERM and kill -9,
the token budget, the dry run and bad options."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from generator.cli import main
from generator.explain.answers import body_hash, log_path, read_log
from generator.explain.labels import read_labels
from generator.store.io import read_meta, read_store, write_store
from generator.store.schema import EXAMPLE_TOP, StoreData
from tests.explain.fake_llm import FakeLLM, Reply, examples_of, heuristic, task_of
from tests.fake_store import make_store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    write_store(make_store(), path)
    return path


@pytest.fixture
def servers() -> Iterator[list[FakeLLM]]:
    made: list[FakeLLM] = []
    yield made
    for s in made:
        try:
            s.close()
        except OSError:
            pass


def serve(servers: list[FakeLLM], script=heuristic) -> FakeLLM:  # type: ignore[no-untyped-def]
    server = FakeLLM(script)
    servers.append(server)
    return server


def explain(store: Path, server: FakeLLM, *extra: str) -> int:
    return main(["explain", "--store", str(store), "--endpoint", server.url, "--model", "fake-1",
                 "--quiet", "--backoff", "0.01", "--retries", "2", *extra])


def keys(bodies: list[dict]) -> set[str]:
    """The requests' body hashes (a key is "<latent>:<body hash>")."""
    return {body_hash(b) for b in bodies}


def answered_keys(store: Path) -> set[str]:
    return {r["key"].split(":")[1] for r in read_log(store)}


# ------------------------------------------------------------------ reference


def whole_text(data: StoreData, seq: int) -> str:
    return b"".join(data.vocab[int(t)] for t in data.tokens_of(seq)).decode("utf-8", "replace")


def held_out(data: StoreData, i: int) -> tuple[set[int], set[int]]:
    """The reference's held-out sequences of latent i: its interval samples' sequences that the
    explainer did not see (its top examples' and the first of each interval's samples on
    another sequence), and its null sequences."""
    ex = data.examples
    rows = np.flatnonzero(ex.latent == i)
    seen = {int(ex.seq[r]) for r in rows if ex.kind[r] == EXAMPLE_TOP}
    samples = [(int(ex.interval[r]), int(ex.rank[r]), int(ex.seq[r])) for r in rows
               if ex.kind[r] != EXAMPLE_TOP]
    firsts = {}
    for j, _, s in sorted(samples):
        if s not in seen:
            firsts.setdefault(j, s)
    seen |= set(firsts.values())
    positives = {s for _, _, s in samples} - seen
    return positives, {int(s) for s in data.latents.null_seqs[i] if s >= 0}


def reference_accuracy(pairs: list[tuple[bool, int]]) -> float | None:
    pos = [p for a, p in pairs if a]
    neg = [p for a, p in pairs if not a]
    if not pos or not neg:
        return None
    return (pos.count(1) / len(pos) + neg.count(0) / len(neg)) / 2


def test_labels_and_scores_equal_a_hand_computed_reference(store: Path, servers: list) -> None:
    """Windows of the whole 16-token sequences: detection answers 1 where the text holds the
    explanation's quoted words, fuzzing where every marked run does (tests/explain/fake_llm.py);
    the balanced accuracies computed here from the sequences and what the scorer was sent."""
    server = serve(servers)
    assert explain(store, server, "--window", "16") == 0
    data = read_store(store)
    labels = read_labels(store, read_meta(store))
    alive = [i for i in range(12) if data.latents.n_active[i] > 0]
    assert sorted(labels) == alive
    fuzz_keys = {r["key"]: r["latent"] for r in read_log(store) if r["task"] == "fuzzing"}
    fuzz_keys = {k.split(":")[1]: latent for k, latent in fuzz_keys.items()}
    fuzz_examples = [(ex, fuzz_keys[body_hash(b)]) for b in server.requests
                     if task_of(b) == "fuzzing"
                     for ex in examples_of(b["messages"][-1]["content"])]
    for i in alive:
        label = labels[i]
        x = label.explanation[label.explanation.index('"') + 1:label.explanation.rindex('"')]
        assert label.model == "fake-1" and label.explanation == f'the text "{x}"'
        positives, negatives = held_out(data, i)
        texts = {s: whole_text(data, s) for s in positives | negatives}
        detection = [(s in positives, int(x in texts[s])) for s in sorted(texts)]
        assert label.scores.get("detection") == reference_accuracy(detection)
        if positives and negatives:
            assert label.examples["detection"] == len(texts) == label.examples["fuzzing"]
            sent = [ex for ex, latent in fuzz_examples if latent == i]
            assert sorted(ex.replace("<<", "").replace(">>", "") for ex in sent) == sorted(
                texts.values())
            fuzzing = [(ex.replace("<<", "").replace(">>", "") in
                        {texts[s] for s in positives},
                        int(all(x in run for run in re.findall(r"<<(.*?)>>", ex, re.S))))
                       for ex in sent]
            assert len(sent) == len(texts)
            assert label.scores.get("fuzzing") == reference_accuracy(fuzzing)
    # something was scored, and not everything perfectly: the reference is not vacuous
    scored = [label.scores["detection"] for label in labels.values() if "detection" in label.scores]
    assert len(scored) >= 5 and min(scored) < 1.0


# ------------------------------------------------------------------ failures and resume


def test_malformed_refused_and_empty_answers_are_failures_not_labels(store: Path,
                                                                      servers: list) -> None:
    bad = [Reply(raw=b"{oops"), Reply(None, refusal="I cannot help with that."), Reply("   "),
           Reply("Here is my guess: cats.")]
    seen: list[int] = []

    def script(body: dict, n: int) -> Reply:
        if task_of(body) == "explain":
            seen.append(n)
            if len(seen) <= len(bad):
                return bad[len(seen) - 1]
        return heuristic(body, n)

    server = serve(servers, script)
    assert explain(store, server, "--concurrency", "1") == 0
    failures = {r["latent"]: r["error"] for r in read_log(store) if not r["ok"]}
    assert [failures[i] for i in (0, 1, 2, 3)] == [
        failures[0], "refused: I cannot help with that.", "empty answer",
        "no [EXPLANATION]: line in the answer"]
    assert failures[0].startswith("not a chat completion")
    labels = read_labels(store, read_meta(store))
    assert not {0, 1, 2, 3} & set(labels) and {4, 5} <= set(labels)
    asked = len(server.requests)
    assert explain(store, server) == 0 and len(server.requests) == asked  # nothing asked again
    assert explain(store, server, "--retry-failed") == 0
    again = server.requests[asked:]
    assert sum(task_of(b) == "explain" for b in again) == 4
    assert {0, 1, 2, 3} <= set(read_labels(store, read_meta(store)))


def test_a_server_that_dies_mid_run_then_a_rerun_asks_only_what_is_missing(
        store: Path, servers: list, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    full = serve(servers)
    fresh = tmp_path / "fresh"
    write_store(make_store(), fresh)
    assert explain(fresh, full) == 0
    everything = keys(full.requests)

    def dying(body: dict, n: int) -> Reply:
        if n >= 7:
            raise ConnectionError("the server went away")  # no answer: the connection drops
        return heuristic(body, n)

    first = serve(servers, dying)
    assert explain(store, first, "--concurrency", "1") == 2
    assert "no usable answer from the server" in capsys.readouterr().err
    first.close()
    answered = answered_keys(store)
    assert len(answered) == 7
    second = serve(servers)
    assert explain(store, second) == 0
    assert not keys(second.requests) & answered
    assert keys(second.requests) | answered == everything
    assert explain(store, second) == 0 and len(second.requests) == len(everything) - 7


def _spawn(store: Path, server: FakeLLM) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "generator.cli", "explain", "--store", str(store), "--endpoint",
         server.url, "--model", "fake-1", "--quiet", "--concurrency", "2"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def _wait_for_answers(store: Path, n: int, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while len(read_log(store)) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no answers"
        time.sleep(0.02)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
def test_stopped_by_a_signal_then_resumed_nothing_lost_nothing_asked_twice(
        store: Path, servers: list, tmp_path: Path, how: str) -> None:
    fresh = tmp_path / "fresh"
    write_store(make_store(), fresh)
    full = serve(servers)
    assert explain(fresh, full) == 0
    everything = keys(full.requests)
    slow = serve(servers, lambda body, n: Reply(**{**heuristic(body, n).__dict__, "delay": 0.1}))
    proc = _spawn(store, slow)
    _wait_for_answers(store, 6, proc)
    proc.send_signal(getattr(signal, how))
    out, err = proc.communicate(timeout=30)
    if how == "SIGTERM":
        assert proc.returncode == 128 + signal.SIGTERM
        assert "stopped by SIGTERM; every answer that arrived is in" in err
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    answered = answered_keys(store)
    assert 6 <= len(answered) < len(everything)
    in_flight = keys(slow.requests) - answered  # asked, but no answer was written
    assert len(in_flight) <= 2
    resumed = serve(servers)
    assert explain(store, resumed) == 0
    assert not keys(resumed.requests) & answered  # nothing answered is asked again
    assert keys(resumed.requests) | answered == everything  # and nothing is lost
    assert read_labels(store, read_meta(store)) == read_labels(fresh, read_meta(fresh))


def test_a_torn_last_line_is_cut_off(store: Path, servers: list) -> None:
    server = serve(servers)
    assert explain(store, server, "--latents", "0-1") == 0
    n = len(read_log(store))
    with open(log_path(store), "ab") as f:
        f.write(b'{"v": 1, "key": "abc", "ta')  # a power cut mid-line
    assert explain(store, server, "--latents", "0-2") == 0
    raw = log_path(store).read_bytes()
    assert raw.endswith(b"\n") and b'"abc"' not in raw and len(read_log(store)) > n


# ------------------------------------------------------------------ budget, dry run, options


def test_the_token_budget_stops_cleanly_and_a_bigger_one_goes_on(
        store: Path, servers: list, caplog: pytest.LogCaptureFixture) -> None:
    server = serve(servers)
    assert explain(store, server, "--max-tokens-total", "6000", "--concurrency", "1") == 0
    assert "stopped at the token budget" in caplog.text
    spent = sum(r["prompt_tokens"] + r["completion_tokens"] for r in read_log(store))
    assert 0 < spent <= 6000
    partial = len(read_labels(store, read_meta(store)))
    assert 0 < partial < 11
    assert explain(store, server) == 0
    assert len(read_labels(store, read_meta(store))) == 11


def test_a_dry_run_prints_the_request_and_sends_nothing(
        store: Path, servers: list, capsys: pytest.CaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-123")
    server = serve(servers)
    assert explain(store, server, "--dry-run") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"POST {server.url}/chat/completions")
    assert '"model": "fake-1"' in out and "[EXPLANATION]" in out
    assert re.search(r"whole run: 11 latents, 11 explanation and \d+ scoring requests", out)
    assert "sk-secret-123" not in out and server.requests == []
    assert not log_path(store).exists()
    assert explain(store, server, "--latents", "0-0") == 0  # a real run: the key is sent ...
    assert server.headers[0]["Authorization"] == "Bearer sk-secret-123"
    assert b"sk-secret-123" not in log_path(store).read_bytes()  # ... and written nowhere


@pytest.mark.parametrize("args, message", [
    (["--endpoint", "http://127.0.0.1:9/v1"], "explain needs --endpoint URL and --model NAME"),
    (["--endpoint", "ftp://x", "--model", "m"], "is not an http(s) URL"),
    (["--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--latents", "5-99"],
     "outside this SAE's latents 0..11"),
    (["--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--latents", "first"],
     "is not all, an id, A-B or top:N"),
    (["--endpoint", "http://127.0.0.1:9/v1", "--model", "m", "--scores", "vibes"],
     "names 'vibes'"),
])
def test_bad_options_are_one_line_before_anything_is_sent(
        store: Path, args: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(["explain", "--store", str(store), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and err.startswith("feature-browser: error:")
    assert not log_path(store).exists()


def test_top_n_picks_the_densest(store: Path, servers: list) -> None:
    server = serve(servers)
    assert explain(store, server, "--latents", "top:3", "--scores", "none") == 0
    n_active = read_store(store).latents.n_active
    assert sorted(read_labels(store, read_meta(store))) == sorted(
        np.argsort(-n_active, kind="stable")[:3].tolist())
    assert all(task_of(b) == "explain" for b in server.requests)


def test_render_shows_the_labels_with_no_endpoint(store: Path, servers: list,
                                                  tmp_path: Path) -> None:
    server = serve(servers)
    assert explain(store, server, "--latents", "6-8") == 0
    server.close()  # render asks nothing
    assert main(["render", "--store", str(store), "--out", str(tmp_path / "site"), "--quiet"]) == 0
    labels = read_labels(store, read_meta(store))
    i = min(i for i, label in labels.items() if "detection" in label.scores)
    page = (tmp_path / f"site/features/{i}.html").read_text()
    assert "Explanation written by <span class=mdl>fake-1</span>" in page
    assert f"detection {labels[i].scores['detection']:.2f}" in page
    assert "<button type=button data-sort=sd>detection</button>" in (
        tmp_path / "site/index.html").read_text()


def test_a_reasoning_model_s_answers_are_read_after_its_thinking(store: Path,
                                                                  servers: list) -> None:
    def thinking(body: dict, n: int) -> Reply:
        reply = heuristic(body, n)
        reply.content = (f"<think>Let me see. [EXPLANATION]: a draft. Or [1, 0]?</think>\n"
                         f"{reply.content}")
        return reply

    server = serve(servers, thinking)
    assert explain(store, server) == 0
    assert all(r["ok"] for r in read_log(store))
    assert all(not label.explanation.startswith("a draft")
               for label in read_labels(store, read_meta(store)).values())
    assert all(b["max_tokens"] == 1000 for b in server.requests)  # room to think


def test_a_run_whose_first_answers_all_fail_stops(store: Path, servers: list,
                                                   capsys: pytest.CaptureFixture) -> None:
    server = serve(servers, lambda body, n: Reply("<think>" + "hmm " * 50, usage=False))
    # 11 latents: the first 20 answers are 11 failed explanations; lower the bar to see it stop
    import generator.explain.run as run_module

    old, run_module.FIRST_ANSWERS = run_module.FIRST_ANSWERS, 5
    try:
        assert explain(store, server, "--concurrency", "1") == 2
    finally:
        run_module.FIRST_ANSWERS = old
    err = capsys.readouterr().err
    assert "the first 5 answers all failed (the last: no [EXPLANATION]: line in the answer)" in err
    assert "--answer-tokens" in err and len(server.requests) == 5


def test_a_budget_below_one_request_says_so(store: Path, servers: list,
                                            caplog: pytest.LogCaptureFixture) -> None:
    server = serve(servers)
    assert explain(store, server, "--max-tokens-total", "500") == 0
    assert "--max-tokens-total 500 is below one request's" in caplog.text
    assert server.requests == []


def test_a_dry_run_after_a_partial_run_counts_what_is_left(
        store: Path, servers: list, capsys: pytest.CaptureFixture) -> None:
    server = serve(servers)
    assert explain(store, server, "--latents", "0-4") == 0
    capsys.readouterr()
    assert explain(store, server, "--dry-run", "--latents", "0-4") == 0
    assert "nothing to ask: the log in" in capsys.readouterr().out
    assert explain(store, server, "--dry-run") == 0
    assert re.search(r"whole run: 11 latents, 6 explanation and \d+ scoring requests not "
                     r"answered yet", capsys.readouterr().out)


def test_two_latents_with_the_same_request_keep_a_label_each(store: Path) -> None:
    """A key is (latent, body): the same body for two latents is two answers."""
    from generator.explain.answers import AnswerLog, request_key, store_identity

    me = store_identity(read_meta(store))
    body = {"model": "m", "messages": [{"role": "user", "content": "same"}]}
    log = AnswerLog(store)
    for latent, text in ((3, "first"), (4, "second")):
        key = request_key(latent, body)
        log.append({"key": key, "task": "explain", "latent": latent, "store": me, "model": "m",
                    "of": "", "ok": True, "explanation": text})
        log.append({"key": request_key(latent, {"scoring": 1}), "task": "detection",
                    "latent": latent, "store": me, "model": "m", "of": key, "ok": True,
                    "samples": [[True, 1, None], [False, int(latent == 4), None]]})
    log.close()
    labels = read_labels(store, read_meta(store))
    assert (labels[3].explanation, labels[4].explanation) == ("first", "second")
    assert (labels[3].scores["detection"], labels[4].scores["detection"]) == (1.0, 0.5)
