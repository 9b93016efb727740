"""`feature-browser explain --dry-run`: the first request as it would be sent, and an estimate of
the whole run (what the answer log lacks), with nothing sent.

Memory: one latent's samples at a time.
"""

from __future__ import annotations

import sys

import orjson

from generator.explain.config import ExplainConfig
from generator.explain.plan import Job, Planner

STAND_IN = "x " * 12
"""the explanation scoring is estimated with where the log has none yet (12 words)."""


def dry_run(cfg: ExplainConfig, planner: Planner, latents: list[int]) -> None:
    """Print the first request and an estimate of the run; send nothing."""
    first: Job | None = None
    n_explain = n_score = tokens = 0
    for i in latents:
        jobs = planner.pending(planner.samples(i), STAND_IN).jobs
        first = first or next(iter(jobs), None)
        n_explain += sum(j.task == "explain" for j in jobs)
        n_score += sum(j.task != "explain" for j in jobs)
        tokens += sum(j.estimate for j in jobs)
    out = sys.stdout
    if first is None:
        out.write(f"nothing to ask: the log in {cfg.store} answers all {len(latents):,} chosen "
                  "latents (dead ones have no examples)\n")
        return
    out.write(f"POST {(cfg.endpoint or 'ENDPOINT').rstrip('/')}/chat/completions  "
              f"(key from ${cfg.api_key_env}: not shown)\n")
    out.write(orjson.dumps(first.body, option=orjson.OPT_INDENT_2).decode() + "\n")
    out.write(f"this request: ~{first.estimate:,} tokens at most (its prompt at 3 characters a "
              "token, plus --answer-tokens)\n")
    prompts = tokens - (n_explain + n_score) * cfg.answer_tokens
    out.write(f"whole run: {len(latents):,} latents, {n_explain:,} explanation and {n_score:,} "
              f"scoring requests not answered yet: ~{prompts:,} prompt tokens (scoring estimated "
              "with a 12-word explanation where there is none yet) and answers of up to "
              f"{cfg.answer_tokens:,} tokens each, ~{tokens:,} at most\n")
