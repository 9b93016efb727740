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
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from tqdm import tqdm

from generator.errors import UserError
from generator.explain.answers import AnswerLog, log_path
from generator.explain.client import Answer, Client, GaveUp
from generator.explain.config import ExplainConfig
from generator.explain.plan import Job, Planner, choose_latents
from generator.explain.prompts import read_answer
from generator.explain.samples import LatentSamples
from generator.store.io import read_store

log = logging.getLogger(__name__)

TEXT_KEPT = 2000
"""characters of each raw answer kept in the log (for reading what a model said)."""
FIRST_ANSWERS = 20
"""a run whose first this many answers all failed stops: the model or its settings are wrong,
and every further request would fail the same way."""
RESUME = "run the same command again to go on"


@dataclass(frozen=True)
class ExplainReport:
    latents: int
    """latents chosen (with examples)."""
    asked: int
    """requests sent and answered in this run."""
    failed: int
    """of those, answers recorded as failures (malformed, empty, refused, cut)."""
    tokens: int
    """tokens this run spent (as the server counted them, else estimated)."""
    stopped: str
    """why the run stopped before the end ("" when it did not)."""


def explain(cfg: ExplainConfig, resume: str = RESUME) -> ExplainReport:
    """`resume`: how to go on after a stop, as the messages say it (build has its own)."""
    cfg.validate()
    data = read_store(cfg.store)
    latents = choose_latents(data, cfg.latents)
    planner = Planner(cfg, data)
    if cfg.dry_run:
        from generator.explain.dryrun import dry_run

        dry_run(cfg, planner, latents)
        return ExplainReport(len(latents), 0, 0, 0, "dry run")
    if cfg.score_names() and data.latents.null_seqs is None:
        log.warning("this store has no non-activating sequences (it was built before they were "
                    "kept): explanations only, no scores; rebuild it to score them")
    client = Client(cfg.endpoint or "", os.environ.get(cfg.api_key_env) or None, cfg.timeout,
                    cfg.retries, cfg.backoff)
    return Runner(cfg, planner, client, resume).run(latents)


class Runner:
    """One run over the chosen latents (see the module docstring)."""

    def __init__(self, cfg: ExplainConfig, planner: Planner, client: Client, resume: str):
        self.cfg, self.planner, self.client, self.resume = cfg, planner, client, resume
        self.jobs: queue.Queue[Job] = queue.Queue()
        self.results: queue.Queue[tuple[Job, Answer | None, BaseException | None]] = queue.Queue()
        self.ready: deque[Job] = deque()
        self.samples: dict[int, LatentSamples] = {}
        self.left: dict[int, int] = {}
        self.used = self.reserved = self.asked = self.failed = self.flight = 0
        self.failed_latents: set[int] = set()
        self.over_budget: Job | None = None
        """the request the token budget held back (the run then stops)."""

    def run(self, latents: list[int]) -> ExplainReport:
        for _ in range(self.cfg.concurrency):
            threading.Thread(target=self._work, daemon=True).start()
        self.log = AnswerLog(self.cfg.store)
        self.bar = tqdm(total=len(latents), desc="explain", unit="latent", disable=self.cfg.quiet)
        try:
            self._loop(iter(latents))
        finally:
            self.bar.close()
            self.log.close()
        stopped = self._budget_message()
        if stopped:
            log.warning("%s; %s", stopped, self.resume.replace("the same command", "it"))
        if self.failed_latents:
            log.warning("%d latents have a failed explanation (malformed, empty, refused or cut "
                        "short: the log in %s says which): --retry-failed asks them again",
                        len(self.failed_latents), log_path(self.cfg.store))
        return ExplainReport(len(latents), self.asked, self.failed, self.used, stopped)

    def _budget_message(self) -> str:
        job, limit = self.over_budget, self.cfg.max_tokens_total
        if job is None:
            return ""
        if self.used == 0 and job.estimate > limit:
            return (f"--max-tokens-total {limit:,} is below one request's ~{job.estimate:,} "
                    "tokens (its prompt and --answer-tokens): nothing was sent; raise it")
        return f"stopped at the token budget: {self.used:,} of --max-tokens-total {limit:,} spent"

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
                if self.over_budget or (not self.ready and not more):
                    return
                continue
            self._receive()

    def _start(self, latent: int) -> None:
        """Queue the latent's unanswered requests (or finish it when there are none)."""
        samples = self.samples[latent] = self.planner.samples(latent)
        self.left[latent] = 0
        pending = self.planner.pending(samples)
        if pending.failed:
            self.failed_latents.add(latent)
        self._queue(pending.jobs)
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
        """Send queued requests while fewer than `concurrency` are in flight, and while what the
        server reported, plus the estimates of those in flight and of the next, fits the
        budget."""
        limit = self.cfg.max_tokens_total
        while self.ready and self.flight < self.cfg.concurrency and not self.over_budget:
            job = self.ready[0]
            if limit and self.used + self.reserved + job.estimate > limit:
                self.over_budget = job
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
        if isinstance(err, GaveUp):
            raise UserError(f"no usable answer from the server: {err}; the answers so far are in "
                            f"{log_path(self.cfg.store)}: {self.resume}") from None
        if err is not None:
            raise err
        assert answer is not None
        self._record(job, answer)
        self.left[job.latent] -= 1
        self._finish_if_done(job.latent)

    def _record(self, job: Job, answer: Answer) -> None:
        record = read_answer(job.task, job.batch, answer)
        self.log.append({"key": job.key, "task": job.task, "latent": job.latent,
                         "store": self.planner.store, "model": self.planner.model, "of": job.of,
                         "text": answer.text[:TEXT_KEPT], "prompt_tokens": answer.prompt_tokens,
                         "completion_tokens": answer.completion_tokens, **record})
        self.asked += 1
        self.used += ((answer.prompt_tokens or 0) + (answer.completion_tokens or 0)
                      if answer.prompt_tokens is not None else job.estimate)
        if not record["ok"]:
            self._failure(job, record["error"])
        elif job.task == "explain":
            self._queue(self.planner.unanswered(self.samples[job.latent], record["explanation"],
                                                job.key), first=True)

    def _failure(self, job: Job, why: str) -> None:
        self.failed += 1
        if job.task == "explain":
            self.failed_latents.add(job.latent)
        if self.failed == self.asked == FIRST_ANSWERS:
            raise UserError(f"the first {FIRST_ANSWERS} answers all failed (the last: {why}); "
                            "check --model, or give a reasoning model room with --answer-tokens; "
                            f"they are logged, and --retry-failed asks them again") from None

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
