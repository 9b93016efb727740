"""Which requests a latent needs (its explanation, then its scorers' batches), each known by its
key, and which of them the answer log already answered.

Memory: one latent's samples at a time, plus the log's keys (about 100 bytes an answer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from generator.errors import UserError
from generator.explain.answers import iter_log, request_key, store_identity
from generator.explain.config import ExplainConfig
from generator.explain.prompts import (
    ScoreBatch,
    estimate_tokens,
    explain_body,
    explain_messages,
    score_batches,
    score_body,
    score_messages,
)
from generator.explain.samples import LatentSamples, samples_of
from generator.store.schema import StoreData


@dataclass(frozen=True)
class Job:
    """One request to make."""

    latent: int
    task: str
    """"explain", "detection" or "fuzzing"."""
    body: dict[str, Any]
    key: str
    estimate: int
    """tokens it may spend: the prompt (estimated) + the answer's max_tokens."""
    batch: ScoreBatch | None = None
    of: str = ""
    """a scoring job's explanation: the key of the explain request."""


class Pending(NamedTuple):
    """A latent's unanswered requests, as Planner.pending finds them."""

    jobs: list[Job]
    failed: bool
    """the log holds a failed explanation of it (left alone unless --retry-failed)."""


class Planner:
    """Requests of the chosen latents of `data` under `cfg`."""

    def __init__(self, cfg: ExplainConfig, data: StoreData):
        self.cfg, self.data = cfg, data
        self.model = cfg.model or "MODEL"
        self.store = store_identity(data.meta)
        self.done = answered(cfg.store, self.store, cfg.retry_failed)

    def samples(self, latent: int) -> LatentSamples:
        return samples_of(self.data, latent, self.cfg.explain_examples, self.cfg.window,
                          self.cfg.explain_per_interval, self.cfg.score_examples)

    def explain_job(self, samples: LatentSamples) -> Job:
        answer = self.cfg.answer_tokens
        messages = explain_messages(samples, self.cfg.context_tokens, answer)
        body = explain_body(self.model, messages, answer)
        return Job(samples.latent, "explain", body, request_key(samples.latent, body),
                   estimate_tokens(messages) + answer)

    def score_jobs(self, samples: LatentSamples, explanation: str, of: str) -> list[Job]:
        """The scorers' requests for an explanation; none without both kinds of held-out
        examples (no score could be defined)."""
        if not samples.positives or not samples.negatives:
            return []
        jobs = []
        for task in self.cfg.score_names():
            for batch in score_batches(samples, task, self.cfg.score_batch):
                messages = score_messages(explanation, batch)
                body = score_body(self.model, messages, self.cfg.logprobs,
                                  self.cfg.answer_tokens)
                jobs.append(Job(samples.latent, task, body, request_key(samples.latent, body),
                                estimate_tokens(messages) + self.cfg.answer_tokens, batch, of))
        return jobs

    def pending(self, samples: LatentSamples, explanation: str = "") -> Pending:
        """The latent's requests the log has not answered: its explanation's, else (once it is
        answered) its scorers'; none after a failed explanation (unless --retry-failed).
        `explanation`: what to score when the log has none yet (the dry run's stand-in)."""
        job = self.explain_job(samples)
        done = self.done.get(job.key)
        if done is None and not explanation:
            return Pending([job], False)
        if done is not None and not done.get("ok"):
            return Pending([], True)
        text = done["explanation"] if done is not None else explanation
        first = [] if done is not None else [job]
        return Pending(first + self.unanswered(samples, text, job.key), False)

    def unanswered(self, samples: LatentSamples, explanation: str, of: str) -> list[Job]:
        """The scorers' requests for an explanation that the log has not answered."""
        return [j for j in self.score_jobs(samples, explanation, of) if j.key not in self.done]


def answered(store: Path, me: str, retry_failed: bool) -> dict[str, dict[str, Any]]:
    """The log's answers about this store by request key (the last one wins); failures left out
    with --retry-failed, so that they are asked again."""
    out: dict[str, dict[str, Any]] = {}
    for record in iter_log(store, me, drop=("text", "samples")):
        out[record["key"]] = record
    return {k: r for k, r in out.items() if r.get("ok") or not retry_failed}


def choose_latents(data: StoreData, which: str) -> list[int]:
    """The latents `--latents` names that have examples to show (dead ones have none)."""
    n_active = np.asarray(data.latents.n_active)
    d_sae, which = len(n_active), which.strip()
    if which == "all":
        chosen = np.arange(d_sae)
    elif which.startswith("top:"):
        chosen = np.lexsort((np.arange(d_sae), -n_active))[:int(which[4:])]
    else:
        lo, _, hi = which.partition("-")
        first, last = int(lo), int(hi or lo)
        if not 0 <= first <= last < d_sae:
            raise UserError(f"--latents {which} is outside this SAE's latents 0..{d_sae - 1}; "
                            "pass a range inside it")
        chosen = np.arange(first, last + 1)
    return [int(i) for i in chosen if n_active[i] > 0]
