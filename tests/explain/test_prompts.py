"""Reading answers as real servers and models write them: reasoning blocks, Markdown, quotes,
a quoted example list before the answer, log-probabilities."""

from __future__ import annotations

import math

import pytest

from generator.explain.client import Answer
from generator.explain.prompts import (
    ScoreBatch,
    parse_explanation,
    parse_predictions,
    probabilities,
    read_answer,
)


@pytest.mark.parametrize("text, explanation", [
    ("Some thoughts.\n[EXPLANATION]: Commas in lists", "Commas in lists"),
    ("<think>maybe [EXPLANATION]: wrong</think>\n[EXPLANATION]: right", "right"),
    ("**[EXPLANATION]:** Python keywords", "Python keywords"),
    ("**[EXPLANATION]**: Python keywords", "Python keywords"),
    ("[Explanation]: lower case works", "lower case works"),
    ('[EXPLANATION]: "the word self"', "the word self"),
    ('[EXPLANATION]: "quoted" and "more"', '"quoted" and "more"'),
    ("[EXPLANATION]: first\n[EXPLANATION]: the last one", "the last one"),
])
def test_explanations(text: str, explanation: str) -> None:
    assert parse_explanation(text) == (explanation, "")


@pytest.mark.parametrize("text, why", [
    ("I think it is about cats.", "no [EXPLANATION]: line in the answer"),
    ("<think>long thoughts [EXPLANATION]: not yet", "no [EXPLANATION]: line in the answer"),
    ("[EXPLANATION]:   ", "the [EXPLANATION]: line is empty"),
])
def test_not_explanations(text: str, why: str) -> None:
    assert parse_explanation(text) == ("", why)


@pytest.mark.parametrize("text, n, values", [
    ("[1,0,1]", 3, [1, 0, 1]),
    ("```json\n[1, 0, 1]\n```", 3, [1, 0, 1]),
    ("<think>so far [1, 0]</think>\n[1,0,1,0,1]", 5, [1, 0, 1, 0, 1]),
    ("The format [1,0,0,1,0] from the instructions... my answer: [1,1,1,1,1]", 5,
     [1, 1, 1, 1, 1]),
])
def test_predictions_are_the_last_list(text: str, n: int, values: list[int]) -> None:
    assert parse_predictions(text, n) == (values, "")


@pytest.mark.parametrize("text, n, why", [
    ("[1,0]", 3, "expected 3 answers of 0 or 1, got [1,0]"),
    ("[1,2,0]", 3, "expected 3 answers of 0 or 1"),
    ("[0.5,1,0]", 3, "expected 3 answers of 0 or 1"),
    ("[yes,no,no]", 3, "is not a list of 0s and 1s"),
    ("none of them", 3, "no [...] list in the answer"),
])
def test_not_predictions(text: str, n: int, why: str) -> None:
    values, said = parse_predictions(text, n)
    assert values == [] and why in said


def step(token: str, **alts: float) -> dict:
    return {"token": token, "logprob": 0.0,
            "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in alts.items()]}


def test_probabilities_read_the_last_list_s_digits() -> None:
    steps = [step("<think>"), step("2"), step("1"), step("["), step("1", **{"1": 0.6, "0": 0.2}),
             step(","), step("0", **{"0": 0.5, "1": 0.5}), step("]")]
    assert probabilities(steps, 2) == pytest.approx([0.75, 0.5])
    assert probabilities(steps, 3) is None and probabilities(None, 2) is None


def test_a_cut_answer_says_so() -> None:
    batch = ScoreBatch("detection", 0, ["a", "b"], [True, False])
    cut = Answer("<think>hmm", "", 10, 1000, None, cut=True)
    assert read_answer("explain", None, cut)["error"].endswith(
        "(cut short at max_tokens: raise --answer-tokens)")
    assert read_answer("detection", batch, Answer("[1,0]", "", 1, 1, None))["samples"] == [
        [True, 1, None], [False, 0, None]]
