"""The explainer's and the scorers' requests and how their answers are read.

The scheme is delphi's (EleutherAI, "Automatically Interpreting Millions of Features in Large
Language Models", Paulo et al. 2024; github.com/EleutherAI/delphi), in our own words:

    explainer  the latent's top examples, the tokens at >= 0.3 x the example's highest
               activation between << and >>; the answer's last line is "[EXPLANATION]: ...".
    detection  the explanation and a batch of unmarked windows, activating and not, shuffled;
               the answer is a list of 0/1, one per window: does it have the latent?
    fuzzing    the same with marks: activating windows marked as the explainer's are, and
               non-activating ones with as many tokens marked, at random positions, as the
               activating windows have active tokens on average (rounded up); 1 when the marks
               are right.

Token counts before sending are estimates (characters / 3, rounded up: we do not have the
model's tokenizer); the budget counts what the server reports.
"""

from __future__ import annotations

import math
import random
import re
from dataclasses import dataclass
from typing import Any

import orjson

from generator.explain.client import Answer
from generator.explain.samples import LatentSamples, Window, marked, plain

MAX_EXPLANATION = 400
"""characters of an explanation kept (one short sentence is asked for)."""

EXPLAIN_SYSTEM = """You study the latents (features) of a sparse autoencoder trained on a language \
model's activations. You will see text examples on which one latent is active; the tokens where it \
is most active are marked between << and >> (a run of marked tokens shares one pair of marks).

Find what the marked tokens have in common, in themselves and in the text around them, and \
describe it in one short phrase or sentence. Do not mention the << >> marks, do not list \
alternatives, and do not quote the examples at length.

The last line of your answer must be the explanation, written as:
[EXPLANATION]: <your explanation>"""

DETECTION_SYSTEM = """You check explanations of a language model's latents (features). You get \
an explanation and numbered text examples; some of them contain the latent it describes, the \
others do not.

For each example in order, answer 1 if it contains the latent and 0 if it does not. Answer with \
a JSON list of 0s and 1s, one per example, and nothing else, e.g. [1,0,0,1,0]."""

FUZZING_SYSTEM = """You check explanations of a language model's latents (features). You get an \
explanation and numbered text examples with some tokens marked between << and >>. In some \
examples the marks are right: every marked token is one the explanation describes; in others \
they were put on tokens at random.

For each example in order, answer 1 if every marked token fits the explanation and 0 if not. \
Answer with a JSON list of 0s and 1s, one per example, and nothing else, e.g. [1,0,0,1,0]."""


@dataclass(frozen=True)
class ScoreBatch:
    """One scoring request's examples, in the order the prompt numbers them."""

    task: str
    """"detection" or "fuzzing"."""
    index: int
    texts: list[str]
    activating: list[bool]


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """Tokens of a request's messages, estimated (characters / 3 + 4 a message)."""
    return sum(math.ceil(len(m["content"]) / 3) + 4 for m in messages)


def explain_messages(samples: LatentSamples, context_tokens: int,
                     answer_tokens: int) -> list[dict[str, str]]:
    """The explainer's messages, with as many of the shown examples (in order) as fit
    `context_tokens` with room for an answer of `answer_tokens`."""
    lines = [f"Example {n}: {marked(w)}" for n, w in enumerate(samples.shown, 1)]
    while True:
        messages = [{"role": "system", "content": EXPLAIN_SYSTEM},
                    {"role": "user", "content": "\n".join(lines)}]
        if len(lines) <= 1 or estimate_tokens(messages) + answer_tokens <= context_tokens:
            return messages
        lines.pop()


def explain_body(model: str, messages: list[dict[str, str]], answer_tokens: int) -> dict[str, Any]:
    return {"model": model, "messages": messages, "temperature": 0.0, "max_tokens": answer_tokens}


def without_thinking(text: str) -> str:
    """The answer without a reasoning model's <think>...</think> (an unclosed one: all of it)."""
    text = re.sub(r"<think>.*?</think>", "", text, flags=re.S)
    return text.split("<think>")[0]


_EXPLANATION = re.compile(r"\[explanation\][*_]*\s*:[*_]*\s*(.*)", re.I)


def parse_explanation(text: str) -> tuple[str, str]:
    """(explanation, "") from an explainer's answer, or ("", why it is not one): the text after
    its last "[EXPLANATION]:" (any case, Markdown emphasis around the colon allowed), outside a
    <think> block, without surrounding emphasis or one pair of enclosing quotes."""
    found = _EXPLANATION.findall(without_thinking(text))
    if not found:
        return "", "no [EXPLANATION]: line in the answer"
    explanation = found[-1].strip().strip("*_").strip()
    if len(explanation) > 1 and explanation[0] == explanation[-1] == '"' and \
            '"' not in explanation[1:-1]:
        explanation = explanation[1:-1].strip()
    if not explanation:
        return "", "the [EXPLANATION]: line is empty"
    return explanation[:MAX_EXPLANATION], ""


def score_batches(samples: LatentSamples, task: str, size: int) -> list[ScoreBatch]:
    """The held-out windows (positives and negatives) shuffled by a seed of (latent, task) and
    cut into batches of `size`; as text for the task."""
    windows = samples.positives + samples.negatives
    rng = random.Random(f"{samples.latent}:{task}")
    rng.shuffle(windows)
    extra = _fuzz_marks(samples.positives)
    texts = [plain(w) if task == "detection" else
             marked(w, marks=None if w.activating else _random_marks(w, extra, rng))
             for w in windows]
    return [ScoreBatch(task, b, texts[k:k + size], [w.activating for w in windows[k:k + size]])
            for b, k in enumerate(range(0, len(windows), size))]


def _fuzz_marks(positives: list[Window]) -> int:
    """Tokens to mark in a non-activating window: the mean count of active tokens (> 0) in the
    activating windows, rounded up (at least 1), as delphi's fuzzing scorer does."""
    counts = [sum(1 for a in w.acts if a > 0) for w in positives]
    return max(1, math.ceil(sum(counts) / len(counts))) if counts else 1


def _random_marks(window: Window, n: int, rng: random.Random) -> set[int]:
    return set(rng.sample(range(len(window.tokens)), min(n, len(window.tokens))))


def score_messages(explanation: str, batch: ScoreBatch) -> list[dict[str, str]]:
    system = DETECTION_SYSTEM if batch.task == "detection" else FUZZING_SYSTEM
    examples = "\n".join(f"Example {n}: {text}" for n, text in enumerate(batch.texts, 1))
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"Explanation: {explanation}\n\n{examples}"}]


def score_body(model: str, messages: list[dict[str, str]], logprobs: bool,
               answer_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": 0.0,
                            "max_tokens": answer_tokens}
    if logprobs:
        body.update(logprobs=True, top_logprobs=5)
    return body


def parse_predictions(text: str, n: int) -> tuple[list[int], str]:
    """(the n 0/1 answers, "") from a scorer's answer, or ([], why it is not that): its last
    [...] list outside a <think> block (a model may quote the instructions' example first)."""
    lists = re.findall(r"\[[^\[\]]*\]", without_thinking(text))
    if not lists:
        return [], "no [...] list in the answer"
    last = lists[-1]
    try:
        values = orjson.loads(last)
    except orjson.JSONDecodeError:
        return [], f"{last[:60]} is not a list of 0s and 1s"
    if len(values) != n or any(v not in (0, 1) or isinstance(v, float) for v in values):
        return [], f"expected {n} answers of 0 or 1, got {last[:60]}"
    return [int(v) for v in values], ""


def probabilities(logprobs: list[dict[str, Any]] | None, n: int) -> list[float] | None:
    """P(1) / (P(0) + P(1)) at each answer digit of the answer's last list (the tokens after its
    last "["), from the top log-probabilities (delphi's reading); None unless there are exactly
    n such digits."""
    if not logprobs:
        return None
    out: list[float] = []
    for step in logprobs:
        token = str(step.get("token", ""))
        if "[" in token:  # a list starts: only the last one counts
            out = []
        if "0" not in token and "1" not in token:
            continue
        p = {"0": 0.0, "1": 0.0}
        for alt in step.get("top_logprobs") or []:
            digit = "1" if "1" in str(alt.get("token", "")) else "0" if "0" in str(
                alt.get("token", "")) else None
            if digit and isinstance(alt.get("logprob"), int | float):
                p[digit] += math.exp(alt["logprob"])
        out.append(p["1"] / (p["0"] + p["1"]) if p["0"] + p["1"] > 0 else 0.0)
    return out if len(out) == n else None


def read_answer(task: str, batch: ScoreBatch | None, answer: Answer) -> dict[str, Any]:
    """An answer read for its task: {"ok": True, "explanation" | "samples": ...} or
    {"ok": False, "error": why} (a server's refusal of the request, a model's refusal, an empty
    or malformed answer, one cut short at max_tokens)."""
    if answer.error:
        return {"ok": False, "error": answer.error}
    if answer.refusal:
        return {"ok": False, "error": f"refused: {answer.refusal[:200]}"}
    if not answer.text.strip():
        return {"ok": False, "error": "empty answer" + (CUT if answer.cut else "")}
    if task == "explain":
        explanation, why = parse_explanation(answer.text)
        return ({"ok": True, "explanation": explanation} if explanation else
                {"ok": False, "error": why + (CUT if answer.cut else "")})
    assert batch is not None
    predictions, why = parse_predictions(answer.text, len(batch.texts))
    if why:
        return {"ok": False, "error": why + (CUT if answer.cut else "")}
    probs: list[float | None] = [None] * len(predictions)
    probs = list(probabilities(answer.logprobs, len(predictions)) or probs)
    return {"ok": True, "samples": [[a, p, q] for a, p, q in
                                    zip(batch.activating, predictions, probs, strict=True)]}


CUT = " (cut short at max_tokens: raise --answer-tokens)"
