"""The gate: a pure function of (candidate metrics, production metrics, policy).

No TensorFlow, no store: :func:`decide` gets numbers and returns a decision that lists
every check (metric, slice, threshold, observed value, pass/fail) and one sentence
saying why. Safe defaults, as TFX's Evaluator has them: no policy → nothing is
blessed; no production model → absolute floors only, and the decision says so.

The formulas, with c = candidate and p = production measured on the same images:

* floors:        c.metric ≥ floor (accuracy, macro-F1), c.rate ≤ ceiling (escape,
                 false reject), on the held-out set and on every golden set;
* change:        c.accuracy − p.accuracy ≥ −max_accuracy_drop,
                 c.escape_rate − p.escape_rate ≤ max_escape_rate_increase,
                 c.false_reject_rate − p.false_reject_rate ≤ max_false_reject_rate_increase;
* per class:     c.recall[k] − p.recall[k] ≥ −max_recall_drop for every class k that
                 production knows and the held-out set contains (this catches forgetting);
* significance:  McNemar's exact test on the paired outcomes (b = images only the
                 candidate gets right, n01 = images only production gets right);
                 ``require = "better"``: b > n01 with p < alpha; ``"not_worse"``: fails
                 only when n01 > b with p < alpha.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from inspector.errors import InspectorError

HELDOUT = "heldout"


class PolicyError(InspectorError):
    """The gate policy file is missing, unreadable or has unknown keys."""

    code = "invalid_gate_policy"


@dataclass(frozen=True)
class Floors:
    """Absolute requirements, whatever production does."""

    accuracy: float | None = None
    macro_f1: float | None = None
    max_escape_rate: float | None = None
    max_false_reject_rate: float | None = None


@dataclass(frozen=True)
class Change:
    """How much worse than production the candidate may be, on the same images."""

    max_accuracy_drop: float | None = None
    max_escape_rate_increase: float | None = None
    max_false_reject_rate_increase: float | None = None


@dataclass(frozen=True)
class Significance:
    """A paired test so that noise is not promoted."""

    alpha: float = 0.05
    require: Literal["better", "not_worse"] = "not_worse"


@dataclass(frozen=True)
class Policy:
    """The whole gate policy (from a TOML file; see deploy/gate-policy.toml)."""

    floors: Floors = field(default_factory=Floors)
    change: Change = field(default_factory=Change)
    max_recall_drop: float | None = None
    significance: Significance | None = None
    golden_floors: bool = True


def _section(doc: Mapping[str, Any], name: str, cls: type) -> Any:
    raw = doc.get(name, {})
    known = {f.name for f in fields(cls)}
    unknown = set(raw) - known
    if unknown:
        raise PolicyError(
            f"gate policy [{name}] has unknown keys {sorted(unknown)}; known: {sorted(known)}"
        )
    return cls(**raw)


def parse_policy(doc: Mapping[str, Any]) -> Policy:
    """A policy from a parsed TOML document."""
    unknown = set(doc) - {"floors", "change", "per_class", "significance", "golden"}
    if unknown:
        raise PolicyError(f"gate policy has unknown sections {sorted(unknown)}")
    per_class = doc.get("per_class", {})
    if set(per_class) - {"max_recall_drop"}:
        raise PolicyError("gate policy [per_class] knows only max_recall_drop")
    significance = _section(doc, "significance", Significance) if "significance" in doc else None
    if significance and significance.require not in ("better", "not_worse"):
        raise PolicyError("gate policy [significance] require must be 'better' or 'not_worse'")
    return Policy(
        floors=_section(doc, "floors", Floors),
        change=_section(doc, "change", Change),
        max_recall_drop=per_class.get("max_recall_drop"),
        significance=significance,
        golden_floors=bool(doc.get("golden", {}).get("apply_floors", True)),
    )


def load_policy(path: str | Path | None) -> Policy | None:
    """The policy in ``path``; None when no path is configured (then nothing is blessed)."""
    if not path:
        return None
    try:
        return parse_policy(tomllib.loads(Path(path).read_text()))
    except FileNotFoundError as exc:
        raise PolicyError(f"gate policy file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PolicyError(f"gate policy file {path} is not valid TOML: {exc}") from exc


@dataclass(frozen=True)
class Check:
    """One comparison the gate made."""

    metric: str
    slice: str
    threshold: float
    observed: float
    passed: bool
    rule: str


@dataclass(frozen=True)
class GateDecision:
    """What the gate decided, and every reason."""

    blessed: bool
    mode: Literal["no_policy", "floors_only", "against_production"]
    sentence: str
    checks: tuple[Check, ...] = ()
    candidate_version: int | None = None
    baseline_version: int | None = None
    mcnemar: dict[str, float] | None = None

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for b and c discordant pairs."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def _floor_checks(metrics: Mapping[str, Any], floors: Floors, slice_name: str) -> list[Check]:
    checks = []
    for metric, floor in (("accuracy", floors.accuracy), ("macro_f1", floors.macro_f1)):
        if floor is not None:
            value = float(metrics[metric])
            checks.append(
                Check(metric, slice_name, floor, value, value >= floor, f"{metric} ≥ {floor}")
            )
    for metric, ceiling in (
        ("escape_rate", floors.max_escape_rate),
        ("false_reject_rate", floors.max_false_reject_rate),
    ):
        if ceiling is not None:
            value = float(metrics[metric])
            checks.append(
                Check(metric, slice_name, ceiling, value, value <= ceiling, f"{metric} ≤ {ceiling}")
            )
    return checks


def _change_checks(c: Mapping[str, Any], p: Mapping[str, Any], change: Change) -> list[Check]:
    checks = []
    if change.max_accuracy_drop is not None:
        delta = float(c["accuracy"]) - float(p["accuracy"])
        checks.append(
            Check(
                "accuracy_change",
                HELDOUT,
                -change.max_accuracy_drop,
                delta,
                delta >= -change.max_accuracy_drop,
                f"candidate − production accuracy ≥ −{change.max_accuracy_drop}",
            )
        )
    for metric, limit in (
        ("escape_rate", change.max_escape_rate_increase),
        ("false_reject_rate", change.max_false_reject_rate_increase),
    ):
        if limit is not None:
            delta = float(c[metric]) - float(p[metric])
            checks.append(
                Check(
                    f"{metric}_change",
                    HELDOUT,
                    limit,
                    delta,
                    delta <= limit,
                    f"candidate − production {metric} ≤ {limit}",
                )
            )
    return checks


def _recall_checks(c: Mapping[str, Any], p: Mapping[str, Any], max_drop: float) -> list[Check]:
    checks = []
    for label, stats in p["per_class"].items():
        theirs = c["per_class"].get(label)
        if theirs is None or not stats.get("support"):
            continue
        delta = float(theirs["recall"]) - float(stats["recall"])
        checks.append(
            Check(
                "recall_change",
                f"class:{label}",
                -max_drop,
                delta,
                delta >= -max_drop,
                f"candidate − production recall of {label} ≥ −{max_drop}",
            )
        )
    return checks


def _significance(
    c: Mapping[str, Any], p: Mapping[str, Any], rule: Significance
) -> tuple[Check, dict[str, float]]:
    if list(c["image_ids"]) != list(p["image_ids"]):
        raise InspectorError(
            "candidate and production were scored on different images", code="unpaired"
        )
    only_candidate = sum(1 for a, b in zip(c["correct"], p["correct"], strict=True) if a and not b)
    only_production = sum(1 for a, b in zip(c["correct"], p["correct"], strict=True) if b and not a)
    p_value = mcnemar_exact(only_candidate, only_production)
    stats = {
        "only_candidate_right": only_candidate,
        "only_production_right": only_production,
        "p_value": p_value,
    }
    if rule.require == "better":
        passed = only_candidate > only_production and p_value < rule.alpha
        text = f"McNemar: candidate better than production with p < {rule.alpha}"
    else:
        passed = not (only_production > only_candidate and p_value < rule.alpha)
        text = f"McNemar: candidate not worse than production with p < {rule.alpha}"
    return Check("mcnemar_p", HELDOUT, rule.alpha, p_value, passed, text), stats


def _describe(check: Check) -> str:
    percent = (
        check.metric.endswith("rate") or "accuracy" in check.metric or "recall" in check.metric
    )
    fmt = (
        (lambda v: f"{v:+.1%}" if "change" in check.metric else f"{v:.1%}")
        if percent
        else (lambda v: f"{v:.3g}")
    )
    where = "" if check.slice == HELDOUT else f" on {check.slice}"
    return f"{check.metric.replace('_', ' ')}{where} is {fmt(check.observed)} (rule: {check.rule})"


def decide(
    candidate: Mapping[str, Mapping[str, Any]],
    production: Mapping[str, Mapping[str, Any]] | None,
    policy: Policy | None,
    *,
    candidate_version: int | None = None,
    baseline_version: int | None = None,
) -> GateDecision:
    """Judge a candidate. ``candidate`` and ``production`` map slice names (``heldout``,
    ``golden:<name>``) to metrics as :mod:`inspector.evaluation` computes them."""
    if policy is None:
        return GateDecision(
            False,
            "no_policy",
            "Not blessed: no gate policy is configured "
            "(set INSPECTOR_GATE_POLICY to a policy file).",
            candidate_version=candidate_version,
            baseline_version=baseline_version,
        )
    held = candidate[HELDOUT]
    checks = _floor_checks(held, policy.floors, HELDOUT)
    if policy.golden_floors:
        for name, metrics in candidate.items():
            if name != HELDOUT and metrics.get("count"):
                checks += _floor_checks(metrics, policy.floors, name)
    mcnemar = None
    if production is not None:
        base = production[HELDOUT]
        checks += _change_checks(held, base, policy.change)
        if policy.max_recall_drop is not None:
            checks += _recall_checks(held, base, policy.max_recall_drop)
        if policy.significance is not None:
            check, mcnemar = _significance(held, base, policy.significance)
            checks.append(check)
    if not checks:
        return GateDecision(
            False,
            "no_policy",
            "Not blessed: the gate policy has no checks that apply.",
            candidate_version=candidate_version,
            baseline_version=baseline_version,
        )
    failed = [c for c in checks if not c.passed]
    mode: Literal["floors_only", "against_production"] = (
        "against_production" if production else "floors_only"
    )
    prefix = "" if production else "No production model yet: judged on absolute floors only. "
    versus = f" against production v{baseline_version}" if production and baseline_version else ""
    if failed:
        more = (
            f" (and {len(failed) - 1} more failed check{'s' if len(failed) > 2 else ''})"
            if len(failed) > 1
            else ""
        )
        sentence = f"{prefix}Not blessed: {_describe(failed[0])}{more}."
    else:
        sentence = (
            f"{prefix}Blessed: passes {'all ' if len(checks) > 1 else 'its '}{len(checks)} "
            f"check{'s' if len(checks) > 1 else ''}{versus} "
            f"on {held['count']} held-out images."
        )
    return GateDecision(
        not failed,
        mode,
        sentence,
        tuple(checks),
        candidate_version=candidate_version,
        baseline_version=baseline_version,
        mcnemar=mcnemar,
    )


def summarize(checks: Sequence[Check]) -> str:
    """A compact text table of checks, for the CLI."""
    rows = [f"{'':2}{'check':<24}{'slice':<18}{'observed':>10}{'threshold':>11}"]
    for check in checks:
        rows.append(
            f"{'✓' if check.passed else '✗':<2}{check.metric:<24}{check.slice:<18}"
            f"{check.observed:>10.4f}{check.threshold:>11.4f}"
        )
    return "\n".join(rows)
