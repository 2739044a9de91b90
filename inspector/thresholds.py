"""The operating threshold: a verdict is a decision on P(defect) = 1 − P(ok) at a threshold.

Pure NumPy, no TensorFlow. :func:`choose` picks a version's threshold on its validation
images, at training; :func:`judge` turns one row of class probabilities into a verdict
at a threshold; :func:`curves` draws the ROC and precision–recall curves the report shows.

The rule of :func:`choose`, with n defective validation images and the target escape
rate r (``INSPECTOR_TARGET_ESCAPE_RATE``):

* allowed escapes e = floor(r · n) when n ≥ 1/r (an escape rate of r is then observable);
  with fewer ("too few defective validation images to estimate the escape rate"), e is
  the number of escapes that best separates defective from good images: the e that
  maximises recall − false-reject rate (Youden's J), the smallest such e on a tie. So every
  defective image is caught unless catching the last ones would reject more of the good
  parts than it gains of the defective ones: one mislabelled or freak defect in five does
  not make the version reject every good part;
* t_max = the (e + 1)-th lowest P(defect) among the defective images: any threshold up to
  t_max lets at most e escape, and t_max rejects the fewest good parts;
* every threshold in (g, t_max], g the highest good part's P(defect) below t_max, rejects
  the same validation parts; the threshold is a quarter of the way from g to t_max in
  log-odds (the scale the model's logits live on): an escape costs a plant more than a
  false reject, so the margin left to unseen defects is three times the margin left to
  unseen good parts. With no good part below t_max it is t_max;
* with n < 1/r the threshold is also capped at 0.5, so that a part the model finds more
  likely defective than not is never passed; with n = 0 it is 0.5;
* with n < 1/r and a false-reject ceiling c (``false_reject_ceiling``, 5 %): where the
  threshold rejects more than c of the good validation parts (and there are at least
  1/c of them), it is raised to the lowest that rejects at most c, if that rejects
  fewer and stays at most 0.5 — the last one or two of a handful of defects are not
  caught at the price of every c-th good part.

A model without a good class (every class is a defect) judges every part defective,
by its most probable class; it has no threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

FALLBACK_THRESHOLD = 0.5
CURVE_POINTS = 101
GOOD_SIDE = 0.25  # where in the free interval, from the good part (0) to the defect (1)

Rule = Literal["target", "few_defects", "no_defects", "no_ok_class", "operator"]


@dataclass(frozen=True)
class OperatingPoint:
    """A version's threshold on P(defect), how it was chosen, and what it gave on the
    validation images."""

    threshold: float | None
    rule: Rule
    target_escape_rate: float
    validation_defective: int = 0
    validation_good: int = 0
    escape_rate: float | None = None
    false_reject_rate: float | None = None
    note: str = ""

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: dict[str, Any]) -> OperatingPoint:
        """Read a stored document."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in doc.items() if k in names})


def min_defects_for(target: float) -> int:
    """The fewest defective images on which an escape rate of ``target`` is observable."""
    return math.ceil(1 / target - 1e-9)


def _rates(
    p: np.ndarray, defective: np.ndarray, threshold: float
) -> tuple[float | None, float | None]:
    flagged = p >= threshold
    n_d, n_g = int(defective.sum()), int((~defective).sum())
    escape = float((~flagged & defective).sum() / n_d) if n_d else None
    false_reject = float((flagged & ~defective).sum() / n_g) if n_g else None
    return escape, false_reject


def choose(
    p_defect: Sequence[float],
    defective: Sequence[bool],
    target_escape_rate: float,
    false_reject_ceiling: float | None = None,
) -> OperatingPoint:
    """The threshold that meets ``target_escape_rate`` on these (validation) images with
    the fewest false rejects (the rule in the module docstring; ``false_reject_ceiling``
    bounds what the last few defects may cost where they are too few for the target)."""
    p = np.asarray(p_defect, np.float64)
    d = np.asarray(defective, bool)
    n_d, n_g = int(d.sum()), int((~d).sum())
    enough = min_defects_for(target_escape_rate)
    if n_d == 0:
        escape, false_reject = _rates(p, d, FALLBACK_THRESHOLD)
        return OperatingPoint(
            FALLBACK_THRESHOLD,
            "no_defects",
            target_escape_rate,
            0,
            n_g,
            escape,
            false_reject,
            "no defective validation images: the escape rate cannot be estimated, so the "
            f"threshold is the fallback {FALLBACK_THRESHOLD}",
        )
    defects = np.sort(p[d])
    allowed = (
        math.floor(target_escape_rate * n_d + 1e-9)
        if n_d >= enough
        else _best_separating(defects, p[~d])
    )
    t_max = float(defects[allowed])
    passing = p[~d][p[~d] < t_max]
    threshold = _into_interval(float(passing.max()), t_max) if len(passing) else t_max
    rule: Rule = "target"
    note = (
        f"meets the target escape rate {target_escape_rate:.2%} on {n_d} defective "
        f"validation images ({allowed} may escape) with the fewest false rejects"
    )
    if n_d < enough:
        rule = "few_defects"
        threshold, note = _few_defects(
            p, d, threshold, allowed, target_escape_rate, false_reject_ceiling
        )
    escape, false_reject = _rates(p, d, threshold)
    return OperatingPoint(
        round(threshold, 6), rule, target_escape_rate, n_d, n_g, escape, false_reject, note
    )


def _into_interval(passed: float, caught: float) -> float:
    """A threshold :data:`GOOD_SIDE` of the way, in log-odds, from the highest score it
    passes to the lowest it catches."""
    low = logit(passed)
    return _sigmoid(low + GOOD_SIDE * (logit(caught) - low))


def _few_defects(
    p: np.ndarray,
    defective: np.ndarray,
    threshold: float,
    allowed: int,
    target_escape_rate: float,
    false_reject_ceiling: float | None,
) -> tuple[float, str]:
    """The few-defects rule's threshold and note, from the separating ``threshold`` (which
    lets ``allowed`` validation defects pass): capped at 0.5, then raised to the
    false-reject ceiling where that applies."""
    n_d, n_g = int(defective.sum()), int((~defective).sum())
    capped = min(threshold, FALLBACK_THRESHOLD)
    caught = (
        "catches every defective validation image"
        if not allowed
        else f"lets {allowed} of them pass, the best separation from the good parts "
        "(largest recall − false-reject rate)"
    )
    note = (
        f"only {n_d} defective validation images: an escape rate of "
        f"{target_escape_rate:.2%} needs at least {min_defects_for(target_escape_rate)} to "
        "be estimated, so the threshold "
        + caught
        + (f", capped at {FALLBACK_THRESHOLD}" if capped < threshold else "")
    )
    raised = _under_ceiling(p, defective, capped, false_reject_ceiling)
    if raised is None:
        return capped, note
    return raised, note + (
        f"; raised to {raised:.3g}, where it rejects at most {false_reject_ceiling:.0%} of the "
        f"{n_g} good validation parts and lets {int((p[defective] < raised).sum())} of the "
        "defective ones pass"
    )


def _under_ceiling(
    p: np.ndarray, defective: np.ndarray, threshold: float, ceiling: float | None
) -> float | None:
    """Where the defects are too few to estimate the escape rate, catching the last of
    them may reject a share of the good parts a plant would not accept: a threshold that
    rejects more than ``ceiling`` of the good validation parts (a rate observable from
    1 / ``ceiling`` good parts on) is raised to the lowest that rejects at most that share
    — a quarter of the way, in log-odds, from the highest good part it passes to the next
    validation score — if that lowers the false rejects and stays at most 0.5. None: the
    threshold stays. (On KolektorSDD one of five validation cracks scored inside the good
    parts' range on every model, and catching it rejected a quarter to half of the unseen
    good parts: BENCHMARKS.md, "Test-time flips".)"""
    goods = np.sort(p[~defective])
    if not ceiling or len(goods) < min_defects_for(ceiling):
        return None
    rejected = float((goods >= threshold).mean())
    if rejected <= ceiling:
        return None
    passed = float(goods[len(goods) - math.floor(ceiling * len(goods) + 1e-9) - 1])
    above = p[p > passed]
    upper = float(above.min()) if len(above) else _sigmoid(logit(passed) + 1.0)
    raised = min(_into_interval(passed, upper), FALLBACK_THRESHOLD)
    return round(raised, 6) if float((goods >= raised).mean()) < rejected else None


def _best_separating(defects: np.ndarray, goods: np.ndarray) -> int:
    """How many of the lowest-scored defects to let pass for the largest recall − false-
    reject rate (``defects`` sorted ascending); the fewest on a tie."""
    best, best_j = 0, -math.inf
    for k, t in enumerate(defects):
        recall = (len(defects) - k) / len(defects)
        false_reject = float((goods >= t).mean()) if len(goods) else 0.0
        if recall - false_reject > best_j + 1e-12:
            best, best_j = k, recall - false_reject
    return best


def no_ok_class(target_escape_rate: float) -> OperatingPoint:
    """The operating point of a model whose every class is a defect."""
    return OperatingPoint(
        None,
        "no_ok_class",
        target_escape_rate,
        note="the model has no good class: every part is judged defective, by its most "
        "probable class",
    )


@dataclass(frozen=True)
class Judgement:
    """One part's verdict at a threshold."""

    label: str
    defect: bool
    p_defect: float
    confidence: float  # P(label)
    type_confidence: float  # P(label | defective) for a defect, P(label | good) for a good part


def p_defect_of(probabilities: Sequence[float], classes: Sequence[str], ok: Iterable[str]) -> float:
    """1 − the probability of the good classes."""
    good = set(ok)
    return 1.0 - float(sum(p for c, p in zip(classes, probabilities, strict=True) if c in good))


def judge(
    probabilities: Sequence[float],
    classes: Sequence[str],
    ok: Iterable[str],
    threshold: float | None,
) -> Judgement:
    """Defective when P(defect) ≥ ``threshold``, whichever class is most probable; the
    label is then the most probable defect class, else the most probable good class."""
    good = set(ok)
    probs = [float(p) for p in probabilities]
    has_good = any(c in good for c in classes)
    p_def = p_defect_of(probs, classes, good) if has_good else 1.0
    defect = (not has_good) or threshold is None or p_def >= threshold
    side = [i for i, c in enumerate(classes) if (c in good) != defect]
    best = max(side, key=lambda i: probs[i])
    mass = p_def if defect else 1.0 - p_def
    return Judgement(
        classes[best],
        defect,
        round(p_def, 6),
        round(probs[best], 6),
        round(probs[best] / mass, 6) if mass > 0 else 0.0,
    )


def logit(p: float) -> float:
    """log(p / (1 − p)), clipped away from ±∞."""
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def near_threshold(p_defect: float, threshold: float | None, margin: float) -> bool:
    """Whether P(defect) lies within ``margin`` log-odds of the threshold (unsure)."""
    if threshold is None:
        return False
    return abs(logit(p_defect) - logit(threshold)) < margin


# --- curves for the report --------------------------------------------------------------


def curves(p_defect: Sequence[float], defective: Sequence[bool]) -> dict[str, Any]:
    """ROC and precision–recall points (at most :data:`CURVE_POINTS` each), AUROC and
    average precision of P(defect) for telling defective parts from good ones."""
    p = np.asarray(p_defect, np.float64)
    d = np.asarray(defective, bool)
    n_d, n_g = int(d.sum()), int((~d).sum())
    if not n_d or not n_g:
        return {"auroc": None, "average_precision": None, "roc": [], "pr": []}
    order = np.argsort(-p, kind="stable")
    ps, ds = p[order], d[order]
    tp, fp = np.cumsum(ds), np.cumsum(~ds)
    last = np.r_[np.nonzero(np.diff(ps))[0], len(ps) - 1]  # the last index of each distinct score
    tpr, fpr, thr = tp[last] / n_d, fp[last] / n_g, ps[last]
    precision = tp[last] / (tp[last] + fp[last])
    auroc = float(np.trapezoid(np.r_[0, tpr], np.r_[0, fpr]))
    ap = float(np.sum(np.diff(np.r_[0, tpr]) * precision))
    keep = _thin(len(thr))
    return {
        "auroc": round(auroc, 6),
        "average_precision": round(ap, 6),
        "roc": [
            {
                "threshold": round(float(thr[i]), 6),
                "fpr": round(float(fpr[i]), 6),
                "tpr": round(float(tpr[i]), 6),
            }
            for i in keep
        ],
        "pr": [
            {
                "threshold": round(float(thr[i]), 6),
                "precision": round(float(precision[i]), 6),
                "recall": round(float(tpr[i]), 6),
            }
            for i in keep
        ],
    }


def _thin(n: int) -> list[int]:
    if n <= CURVE_POINTS:
        return list(range(n))
    return sorted({round(i * (n - 1) / (CURVE_POINTS - 1)) for i in range(CURVE_POINTS)})


def trade_off(
    p_defect: Sequence[float], defective: Sequence[bool], threshold: float
) -> list[dict[str, float | None]]:
    """Escape and false-reject rates at the threshold and at thresholds around it (its odds
    × ¼, ½, 1, 2, 4), so a reader sees what moving it would cost."""
    p = np.asarray(p_defect, np.float64)
    d = np.asarray(defective, bool)
    rows = []
    for factor in (0.25, 0.5, 1.0, 2.0, 4.0):
        odds = threshold / (1 - threshold) * factor if threshold < 1 else math.inf
        t = odds / (1 + odds) if math.isfinite(odds) else 1.0
        escape, false_reject = _rates(p, d, t)
        rows.append(
            {
                "threshold": round(t, 6),
                "odds_factor": factor,
                "escape_rate": escape,
                "false_reject_rate": false_reject,
            }
        )
    return rows
