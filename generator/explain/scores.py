"""Explanation scores from a scorer's answers (definitions in docs/STATISTICS.md, "Explanation
scores"): pure Python, so render computes them from the answer log without torch.

    balanced accuracy   (TPR + TNR) / 2 over the examples the scorer answered for (an example of
                        a malformed answer counts nowhere); None when the answered examples lack
                        either class (delphi would count the missing rate as 0)
    AUROC               the probability that an activating example gets a higher P(1) than a
                        non-activating one (ties count one half: the Mann-Whitney U / (P x N)),
                        over examples with a probability; None without both classes
"""

from __future__ import annotations

from collections.abc import Sequence


def balanced_accuracy(activating: Sequence[bool], predicted: Sequence[int | None]) -> float | None:
    pairs = [(a, p) for a, p in zip(activating, predicted, strict=True) if p is not None]
    pos = [p for a, p in pairs if a]
    neg = [p for a, p in pairs if not a]
    if not pos or not neg:
        return None
    tpr = sum(1 for p in pos if p == 1) / len(pos)
    tnr = sum(1 for p in neg if p == 0) / len(neg)
    return (tpr + tnr) / 2


def auroc(activating: Sequence[bool], probability: Sequence[float | None]) -> float | None:
    pos = [p for a, p in zip(activating, probability, strict=True) if a and p is not None]
    neg = [p for a, p in zip(activating, probability, strict=True) if not a and p is not None]
    if not pos or not neg:
        return None
    wins = sum(1.0 if p > q else 0.5 if p == q else 0.0 for p in pos for q in neg)
    return wins / (len(pos) * len(neg))


def scorer_scores(name: str, rows: Sequence[tuple[bool, int | None, float | None]]
                  ) -> tuple[dict[str, float], int]:
    """A scorer's scores from its examples, (activating, answer 0/1 or None, P(1) or None) each:
    {name: balanced accuracy, name + "_auroc": AUROC}, each where defined, and how many examples
    it answered."""
    activating = [a for a, _, _ in rows]
    answered = [p for _, p, _ in rows]
    out = {name: balanced_accuracy(activating, answered),
           name + "_auroc": auroc(activating, [q for _, _, q in rows])}
    return ({k: v for k, v in out.items() if v is not None},
            sum(p is not None for p in answered))
