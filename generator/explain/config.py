"""`feature-browser explain`'s configuration: one frozen dataclass, documented field by field; the
CLI's `explain` options are generated from it (generator/cli.py), as `build`'s are from
BuildConfig."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generator.config import check_endpoint
from generator.errors import UserError

SCORES = ("detection", "fuzzing")
"""the scorers, as delphi names them (docs/STATISTICS.md, "Explanation scores")."""
_LATENTS = re.compile(r"^(all|\d+-\d+|\d+|top:\d+)$")


def _opt(help: str, **kw: Any) -> Any:
    return field(metadata={"help": help}, **kw)


@dataclass(frozen=True)
class ExplainConfig:
    store: Path = _opt("store folder (from `feature-browser build`)", default=Path("store"))
    endpoint: str | None = _opt(
        "OpenAI-compatible API base URL, e.g. https://api.openai.com/v1 or "
        "http://127.0.0.1:8000/v1 (vLLM, SGLang, llama.cpp, ollama)", default=None)
    model: str | None = _opt("the chat model's name at that endpoint", default=None)
    api_key_env: str = _opt(
        "environment variable holding the API key (sent as a Bearer token, never written "
        "anywhere; unset: no key, as local servers expect)", default="OPENAI_API_KEY")
    latents: str = _opt("which latents: all, an id, a range A-B (inclusive) or top:N (the N "
                        "densest)", default="all")
    scores: str = _opt("scorers to run after each explanation: detection,fuzzing or none",
                       default="detection,fuzzing")
    concurrency: int = _opt("requests in flight at once", default=4)
    timeout: float = _opt("seconds to wait for one answer before trying again", default=120.0)
    retries: int = _opt("tries again after a 429, a 5xx, a time-out or a lost connection",
                        default=6)
    backoff: float = _opt("first wait before trying again, in seconds (doubled each time, at "
                          "most 60 s; a Retry-After header is honoured)", default=1.0)
    max_tokens_total: int = _opt("stop cleanly once this many tokens (prompt + answer, as the "
                                 "server counts them) are spent by this run (0: no limit)",
                                 default=0)
    context_tokens: int = _opt("the model's context window: prompts are cut to fit it",
                               default=8192)
    answer_tokens: int = _opt("most tokens an answer may have (max_tokens): a reasoning model "
                              "needs room to think before its answer", default=1000)
    explain_examples: int = _opt("top examples the explainer sees", default=20)
    explain_per_interval: int = _opt("interval samples of each interval the explainer sees too "
                                     "(after the top examples, highest interval first)",
                                     default=1)
    window: int = _opt("tokens of each example shown (around its highest activation)",
                       default=32)
    score_examples: int = _opt("held-out activating examples each scorer sees per latent, taken "
                               "in turn from every interval (with the null sequences, up to 8)",
                               default=20)
    score_batch: int = _opt("examples per scoring request", default=5)
    logprobs: bool = _opt("ask scorers for log-probabilities too (AUROC; not every server gives "
                          "them)", default=False)
    retry_failed: bool = _opt("ask again for latents whose answer was malformed or a refusal "
                              "(a rerun asks nothing already answered otherwise)", default=False)
    dry_run: bool = _opt("print the first request, its size and an estimate of the whole run, "
                         "and send nothing", default=False)
    quiet: bool = _opt("no progress bar", default=False)

    def validate(self) -> None:
        """Refuse bad options in one line each, before the store is read."""
        if not self.dry_run and (not self.endpoint or not self.model):
            raise UserError("explain needs --endpoint URL and --model NAME (an OpenAI-compatible "
                            "server, e.g. --endpoint http://127.0.0.1:8000/v1 --model qwen3-8b)")
        if self.endpoint:
            check_endpoint(self.endpoint)
        if not _LATENTS.match(self.latents.strip()):
            raise UserError(f"--latents {self.latents!r} is not all, an id, A-B or top:N; pass "
                            "e.g. --latents 0-99 or --latents top:500")
        for name in self.score_names():
            if name not in SCORES:
                raise UserError(f"--scores {self.scores!r} names {name!r}; pass "
                                "detection,fuzzing, one of them, or none")
        for flag, value, low in (("--concurrency", self.concurrency, 1),
                                 ("--score-batch", self.score_batch, 1),
                                 ("--score-examples", self.score_examples, 1),
                                 ("--explain-examples", self.explain_examples, 1),
                                 ("--explain-per-interval", self.explain_per_interval, 0),
                                 ("--window", self.window, 4), ("--retries", self.retries, 0),
                                 ("--context-tokens", self.context_tokens, 512),
                                 ("--answer-tokens", self.answer_tokens, 16),
                                 ("--max-tokens-total", self.max_tokens_total, 0)):
            if value < low:
                raise UserError(f"{flag} {value} is below {low}; pass at least {low}")
        if self.timeout <= 0 or self.backoff < 0:
            raise UserError("--timeout must be over 0 and --backoff at least 0 seconds")

    def score_names(self) -> list[str]:
        """The scorers asked for, in SCORES order."""
        names = [s.strip() for s in self.scores.split(",") if s.strip()]
        return [] if names == ["none"] else names

