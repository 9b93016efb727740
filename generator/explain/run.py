"""`feature-browser explain`: a label for every chosen latent from an OpenAI-compatible chat model,
then its scores, every answer logged as it arrives (generator/explain/answers.py).

The run: latents in order, each one's explanation request, then (once the explanation is in) its
scorers' batches, `concurrency` requests in flight on worker threads; the main thread alone writes
the log, keeps the token budget and the progress bar. A rerun asks only what the log lacks.

Memory: the log's keys, one latent's samples at a time per queued latent (a few KB each), and the
store as read_store holds it.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from tqdm import tqdm

from generator.errors import UserError
from generator.explain.answers import AnswerLog, log_path
from generator.explain.client import Answer, Client, GaveUp
from generator.explain.config import ExplainConfig
from generator.explain.plan import Job, Planner, choose_latents
from generator.explain.prompts import parse_explanation, parse_predictions, probabilities
from generator.explain.samples import LatentSamples
from generator.store.io import read_store

log = logging.getLogger(__name__)

TEXT_KEPT = 2000
"""characters of each raw answer kept in the log (for reading what a model said)."""


@dataclass(frozen=True)
class ExplainReport:
    latents: int
    """latents chosen (with examples)."""
    asked: int
    """requests sent and answered in this run."""
    failed: int
    """of those, answers recorded as failures (malformed, empty, refused)."""
    tokens: int
    """tokens this run spent (as the server counted them, else estimated)."""
    stopped: str
    """why the run stopped before the end ("" when it did not)."""


def explain(cfg: ExplainConfig) -> ExplainReport:
    cfg.validate()
    data = read_store(cfg.store)
    latents = choose_latents(data, cfg.latents)
    planner = Planner(cfg, data)
    if cfg.dry_run:
        dry_run(cfg, planner, latents)
        return ExplainReport(len(latents), 0, 0, 0, "dry run")
    if cfg.score_names() and data.latents.null_seqs is None:
        log.warning("this store has no non-activating sequences (it was built before they were "
                    "kept): explanations only, no scores; rebuild it to score them")
    client = Client(cfg.endpoint or "", os.environ.get(cfg.api_key_env) or None, cfg.timeout,
                    cfg.retries, cfg.backoff)
    return Runner(cfg, planner, client).run(latents)


class Runner:
    """One run over the chosen latents (see the module docstring)."""

    def __init__(self, cfg: ExplainConfig, planner: Planner, client: Client):
        self.cfg, self.planner, self.client = cfg, planner, client
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.results: queue.Queue[tuple[Job, Answer | None, BaseException | None]] = queue.Queue()
        self.ready: deque[Job] = deque()
        self.samples: dict[int, LatentSamples] = {}
        self.left: dict[int, int] = {}
        self.used = self.reserved = self.asked = self.failed = 0
        self.flight = 0
        self.stopped = ""

    def run(self, latents: list[int]) -> ExplainReport:
        for _ in range(self.cfg.concurrency):
            threading.Thread(target=self._work, daemon=True).start()
        todo = iter(latents)
        self.log = AnswerLog(self.cfg.store)
        self.bar = tqdm(total=len(latents), desc="explain", unit="latent", disable=self.cfg.quiet)
        try:
            self._loop(todo)
        finally:
            self.bar.close()
            self.log.close()
        if self.stopped:
            log.warning("%s; %d answers of this run are in %s: run again to go on", self.stopped,
                        self.asked, log_path(self.cfg.store))
        return ExplainReport(len(latents), self.asked, self.failed, self.used, self.stopped)

    def _loop(self, todo: Iterator[int]) -> None:
        more = True
        while True:
            while more and len(self.ready) < 2 * self.cfg.concurrency:
                latent = next(todo, None)
                more = latent is not None
                if latent is not None:
                    self._start(latent)
            self._submit()
            if not self.flight:
                if self.stopped or (not self.ready and not more):
                    return
                continue
            self._receive()

    def _start(self, latent: int) -> None:
        """Queue the latent's first unanswered requests (or finish it when all are answered)."""
        samples = self.planner.samples(latent)
        job = self.planner.explain_job(samples)
        self.samples[latent], self.left[latent] = samples, 0
        done = self.planner.done.get(job.key)
        if done is None:
            self._queue([job])
        elif done.get("ok"):
            self._queue([j for j in self.planner.score_jobs(samples, done["explanation"], job.key)
                         if j.key not in self.planner.done])
        self._finish_if_done(latent)

    def _queue(self, jobs: list[Job], first: bool = False) -> None:
        """Add jobs to the queue's end, or (`first`: a latent's scoring once its explanation is
        in) to its front, so that latents finish in order."""
        if first:
            self.ready.extendleft(reversed(jobs))
        else:
            self.ready.extend(jobs)
        for job in jobs:
            self.left[job.latent] += 1

    def _submit(self) -> None:
        limit = self.cfg.max_tokens_total
        while self.ready and self.flight < self.cfg.concurrency and not self.stopped:
            job = self.ready[0]
            if limit and self.used + self.reserved + job.estimate > limit:
                self.stopped = (f"stopped at the token budget: {self.used:,} of "
                                f"--max-tokens-total {limit:,} spent")
                return
            self.ready.popleft()
            self.reserved += job.estimate
            self.flight += 1
            self.jobs.put(job)

    def _receive(self) -> None:
        try:
            job, answer, err = self.results.get(timeout=0.5)
        except queue.Empty:
            return
        self.flight -= 1
        self.reserved -= job.estimate
        if err is not None:
            if isinstance(err, GaveUp):
                raise UserError(f"the server stopped answering: {err}; the answers so far are "
                                f"in {log_path(self.cfg.store)}: run the same command again "
                                "to go on") from None
            raise err
        assert answer is not None
        self._record(job, answer)
        self.left[job.latent] -= 1
        self._finish_if_done(job.latent)

    def _record(self, job: Job, answer: Answer) -> None:
        record = _outcome(job, answer)
        self.log.append({"key": job.key, "task": job.task, "latent": job.latent,
                         "store": self.planner.store, "model": self.planner.model, "of": job.of,
                         "text": answer.text[:TEXT_KEPT], "prompt_tokens": answer.prompt_tokens,
                         "completion_tokens": answer.completion_tokens, **record})
        self.asked += 1
        self.failed += 0 if record["ok"] else 1
        self.used += ((answer.prompt_tokens or 0) + (answer.completion_tokens or 0)
                      if answer.prompt_tokens is not None else job.estimate)
        if job.task == "explain" and record["ok"]:
            samples = self.samples[job.latent]
            self._queue([j for j in self.planner.score_jobs(samples, record["explanation"],
                                                            job.key)
                         if j.key not in self.planner.done], first=True)

    def _finish_if_done(self, latent: int) -> None:
        if self.left.get(latent) == 0:
            del self.left[latent], self.samples[latent]
            self.bar.update(1)

    def _work(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                self.results.put((job, self.client.complete(job.body), None))
            except BaseException as err:  # handed to the main thread, which stops the run
                self.results.put((job, None, err))


def _outcome(job: Job, answer: Answer) -> dict[str, Any]:
    """The answer read for its task: {"ok": True, ...} or {"ok": False, "error": why}."""
    if answer.error:
        return {"ok": False, "error": answer.error}
    if answer.refusal:
        return {"ok": False, "error": f"refused: {answer.refusal[:200]}"}
    if not answer.text.strip():
        return {"ok": False, "error": "empty answer"}
    if job.task == "explain":
        explanation, why = parse_explanation(answer.text)
        return {"ok": True, "explanation": explanation} if explanation else {"ok": False,
                                                                              "error": why}
    assert job.batch is not None
    predictions, why = parse_predictions(answer.text, len(job.batch.texts))
    if why:
        return {"ok": False, "error": why}
    probs: list[float | None] = [None] * len(predictions)
    probs = list(probabilities(answer.logprobs, len(predictions)) or probs)
    return {"ok": True, "samples": [[a, p, q] for a, p, q in
                                    zip(job.batch.activating, predictions, probs, strict=True)]}


def dry_run(cfg: ExplainConfig, planner: Planner, latents: list[int]) -> None:
    """Print the first request and an estimate of the whole run; send nothing."""
    first, n_explain, n_score, tokens, known = None, 0, 0, 0, 0
    for i in latents:
        samples = planner.samples(i)
        job = planner.explain_job(samples)
        first = first or job
        scoring = planner.score_jobs(samples, "x " * 12, job.key)  # a 12-word explanation
        known += job.key in planner.done
        n_explain, n_score = n_explain + 1, n_score + len(scoring)
        tokens += job.estimate + sum(j.estimate for j in scoring)
    out = sys.stdout
    if first is None:
        out.write("no latent to explain: every chosen latent is dead\n")
        return
    out.write(f"POST {(cfg.endpoint or 'ENDPOINT').rstrip('/')}/chat/completions  "
              f"(key from ${cfg.api_key_env}: not shown)\n")
    out.write(orjson.dumps(first.body, option=orjson.OPT_INDENT_2).decode() + "\n")
    out.write(f"this request: ~{first.estimate:,} tokens (prompt estimated at 3 characters a "
              "token, plus the longest answer allowed)\n")
    out.write(f"whole run: {len(latents):,} latents, {n_explain:,} explanation and "
              f"{n_score:,} scoring requests ({known:,} explanations already answered), "
              f"~{tokens:,} tokens at most (scoring estimated with a 12-word explanation)\n")

