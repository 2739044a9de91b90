"""From candidate to production: assess (evaluate, gate, infra check), then an operator's
approval or rejection, an admin's override, and rollback.

:func:`assess` runs in the train worker right after a run publishes a version: it scores
the candidate and the production model on the identical held-out set (and golden sets)
of the candidate's snapshot, asks the gate, loads the SavedModel in a separate process
to replay its warm-up requests, stores the report with the version, and moves the
version to ``awaiting_approval`` or ``gate_failed``. Nothing reaches production without
an approval that names who and why — unless a site turned auto-promotion on.

    models/versions/<n>/reports/<report_id>.json   one report per assessment (immutable)
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from inspector import datasets, evaluation, gating, records, registry, verdicts
from inspector.errors import InspectorError
from storage import NotFound, ObjectStore, Unavailable

log = logging.getLogger(__name__)


class ApprovalRefused(InspectorError):
    """An approval, rejection or rollback that the rules do not allow."""

    code = "approval_refused"


def report_key(number: int, report_id: str) -> str:
    """Where a report is stored."""
    return f"{registry.version_prefix(number)}reports/{report_id}.json"


def latest_report(store: ObjectStore, number: int) -> dict[str, Any] | None:
    """The newest report of a version, if it has been assessed."""
    keys = [info.key for info in store.list(f"{registry.version_prefix(number)}reports/")]
    return records.read_json(store, keys[-1]) if keys else None


def _ok_classes(store: ObjectStore) -> set[str]:
    return {c.name for c in records.list_classes(store) if not c.defect}


def _images(
    store: ObjectStore, parts: dict[str, list[datasets.ManifestEntry]], cache_dir: Path
) -> dict[str, bytes]:
    from inspector.pipeline_data import fetch_to_cache  # TensorFlow: train worker only

    entries = {e.image_id: e for group in parts.values() for e in group}
    paths = fetch_to_cache(store, list(entries.values()), cache_dir)
    return {e.image_id: p.read_bytes() for e, p in zip(entries.values(), paths, strict=True)}


def assess(
    store: ObjectStore,
    number: int,
    *,
    policy: gating.Policy | None,
    cache_dir: Path,
    infra_timeout: float = 120.0,
    auto_promote: bool = False,
    policy_source: str = "",
    again: bool = False,
    actor: str = "inspector",
) -> dict[str, Any]:
    """Evaluate, gate and infra-check a candidate; store the report; move its state.

    Idempotent: a version already assessed returns its report, unless ``again`` asks for
    a new assessment (e.g. production changed since the report was made).
    """
    state = registry.read_state(store)
    if number not in state.states:
        registry.transition(
            store, number, "register", actor="inspector", role="system", reason="training finished"
        )
    elif state.state_of(number) != "evaluating":
        existing = latest_report(store, number)
        if not again and existing is not None:
            return existing
        registry.transition(
            store, number, "reevaluate", actor=actor, role="system", reason="assess again"
        )
    doc = registry.get_version(store, number)
    snapshot = datasets.load_snapshot(store, doc["snapshot_id"])
    parts = evaluation.slices(snapshot)
    production = registry.alias(store, "production")
    work_dir = Path(tempfile.mkdtemp(prefix=f"inspector-assess-{number}-"))
    candidate = baseline = None
    decision: gating.GateDecision | None = None
    try:
        # The infra check first, in its own process: a SavedModel that cannot load or
        # serve is never loaded into this worker.
        from inspector.infracheck import run_isolated

        saved = registry.download_directory(
            store, number, "saved_model", work_dir / f"v{number}" / "saved_model"
        )
        warmup = registry.download_file(store, number, "warmup.json", work_dir / "warmup.json")
        infra = run_isolated(saved, warmup, infra_timeout)
        if infra.get("ok"):
            images = _images(store, parts, cache_dir)
            ok_classes = _ok_classes(store)

            def score(version: int) -> dict[str, Any]:
                # Each version at its own threshold, on the same images.
                return evaluation.score_version(
                    store,
                    version,
                    images,
                    parts,
                    work_dir,
                    ok_classes=ok_classes,
                    threshold=registry.effective_threshold(store, version, state),
                )

            candidate = score(number)
            baseline = (
                score(production) if production is not None and production != number else None
            )
            decision = gating.decide(
                candidate["slices"],
                baseline["slices"] if baseline else None,
                policy,
                candidate_version=number,
                baseline_version=baseline["version"] if baseline else None,
            )
    except Unavailable:
        raise  # transient: the task is retried and assesses again
    except Exception as exc:  # whatever breaks, the version must not stay "evaluating"
        log.exception("assessing version %d failed", number)
        infra = {"ok": False, "error": f"the candidate could not be evaluated: {exc}"}
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    blessed = bool(decision and decision.blessed and infra.get("ok"))
    if decision is not None:
        sentence = decision.sentence
    else:
        sentence = f"Not blessed: the infra check failed: {infra.get('error')}."
    report_id = f"{records.now_utc():%Y%m%dT%H%M%S}-v{number}"
    report = {
        "report_id": report_id,
        "candidate_version": number,
        "baseline_version": baseline["version"] if baseline else None,
        "snapshot_id": snapshot.snapshot_id,
        "created_at": records.now_utc().isoformat(),
        "policy_source": policy_source,
        "candidate": candidate,
        "production": baseline,
        "operating_point": doc.get("operating_point"),
        "decision": decision.to_doc() if decision else None,
        "infra_check": infra,
        "blessed": blessed,
        "sentence": sentence,
    }
    store.put_if_absent(report_key(number, report_id), records.to_json(report), "application/json")
    action = "gate_passed" if blessed else "gate_failed"
    registry.transition(
        store,
        number,
        action,
        actor="inspector",
        role="system",
        reason=sentence,
        report_id=report_id,
    )
    log.info("version %d assessed: %s", number, sentence)
    if blessed and auto_promote:
        registry.transition(
            store,
            number,
            "approve",
            actor="auto-promotion",
            role="system",
            reason="auto-promotion is on and the gate blessed this version",
            report_id=report_id,
            expected_production=baseline["version"] if baseline else None,
        )
    return report


def _threshold_change(store: ObjectStore, number: int, threshold: float | None) -> dict[str, Any]:
    """The audit fields of an approval that moves the version's threshold."""
    if threshold is None:
        return {}
    if not 0 < threshold < 1:
        raise ApprovalRefused(
            f"a threshold on P(defect) must be between 0 and 1, not {threshold}",
            code="invalid_threshold",
        )
    before = registry.effective_threshold(store, number)
    if before is None:
        raise ApprovalRefused(
            f"version {number} has no good class: it judges every part defective, and has no "
            "threshold to move",
            code="invalid_threshold",
        )
    return {"threshold": round(float(threshold), 6), "threshold_before": before}


def approve(
    store: ObjectStore,
    number: int,
    *,
    actor: str,
    role: str,
    reason: str,
    override: bool = False,
    threshold: float | None = None,
) -> dict[str, Any]:
    """An operator's approval (or an admin's override of a failed gate), with a reason;
    ``threshold`` moves the version's threshold on P(defect), recorded in the audit log."""
    if not reason.strip():
        raise ApprovalRefused("an approval needs a reason", code="reason_required")
    moved = _threshold_change(store, number, threshold)
    state = registry.read_state(store).state_of(number)
    report = latest_report(store, number)
    report_id = report["report_id"] if report else None
    if state == "gate_failed":
        if not override:
            raise ApprovalRefused(
                f"version {number} failed the gate "
                f"({report['sentence'] if report else 'no report'}); "
                "only an admin may override, with --override and a reason",
                code="gate_failed",
            )
        if role != "admin":
            raise ApprovalRefused(
                "only an admin may override a failed gate", code="override_needs_admin"
            )
        return registry.transition(
            store,
            number,
            "override",
            actor=actor,
            role=role,
            reason=reason,
            report_id=report_id,
            extra={"override": True, **moved},
        )
    if override:
        raise ApprovalRefused(
            f"version {number} did not fail the gate; approve it without --override",
            code="no_override_needed",
        )
    return registry.transition(
        store,
        number,
        "approve",
        actor=actor,
        role=role,
        reason=reason,
        report_id=report_id,
        expected_production=report["baseline_version"] if report is not None else "any",
        extra=moved,
    )


def reject(
    store: ObjectStore, number: int, *, actor: str, role: str, reason: str
) -> dict[str, Any]:
    """An operator's rejection, with a reason."""
    if not reason.strip():
        raise ApprovalRefused("a rejection needs a reason", code="reason_required")
    report = latest_report(store, number)
    return registry.transition(
        store,
        number,
        "reject",
        actor=actor,
        role=role,
        reason=reason,
        report_id=report["report_id"] if report else None,
    )


def rollback(store: ObjectStore, *, actor: str, role: str, reason: str) -> dict[str, Any]:
    """Put the previous production version back, in one step."""
    if not reason.strip():
        raise ApprovalRefused("a rollback needs a reason", code="reason_required")
    previous = registry.alias(store, "previous")
    if previous is None:
        raise ApprovalRefused(
            "there is no previous production version to roll back to", code="nothing_to_roll_back"
        )
    return registry.transition(store, previous, "rollback", actor=actor, role=role, reason=reason)


def version_view(
    store: ObjectStore, number: int, state: registry.RegistryState | None = None
) -> dict[str, Any]:
    """A version with its state, aliases and report summary, for lists and `show`."""
    state = state or registry.read_state(store)
    doc = registry.get_version(store, number)
    report = latest_report(store, number)
    aliases = sorted(name for name, v in state.aliases.items() if v == number)
    view = {
        "version": number,
        "state": state.state_of(number),
        "aliases": aliases,
        "created_by": doc.get("created_by"),
        "published_at": doc.get("published_at"),
        "parent_version": doc.get("parent_version"),
        "classes": doc.get("classes"),
        "snapshot_id": doc.get("snapshot_id"),
        "heldout": doc.get("heldout"),
        "input": doc.get("input"),
        "threshold": registry.effective_threshold(store, number, state),
        "operating_point": doc.get("operating_point"),
    }
    shadow = verdicts.shadow_summary(store, number)
    if shadow:
        view["shadow"] = shadow
    if report:
        view["report"] = {
            "report_id": report["report_id"],
            "baseline_version": report["baseline_version"],
            "blessed": report["blessed"],
            "sentence": report["sentence"],
        }
    return view


def list_views(store: ObjectStore) -> list[dict[str, Any]]:
    """Every version with its state, newest first."""
    state = registry.read_state(store)
    numbers = [int(doc["version"]) for doc in registry.list_versions(store)]
    return [version_view(store, n, state) for n in sorted(numbers, reverse=True)]


def read_report(store: ObjectStore, number: int, report_id: str | None = None) -> dict[str, Any]:
    """A version's report (the newest, or a given one)."""
    registry.get_version(store, number)
    try:
        if report_id:
            return records.read_json(store, report_key(number, report_id))
    except NotFound as exc:
        raise InspectorError(
            f"version {number} has no report {report_id}", code="report_not_found"
        ) from exc
    report = latest_report(store, number)
    if report is None:
        raise InspectorError(f"version {number} has not been assessed yet", code="report_not_found")
    # Shadow mode's results are live: they grow as traffic and labels arrive.
    return {**report, "shadow": verdicts.shadow_summary(store, number)}


def dumps(doc: Any) -> str:
    """Readable JSON for the CLI."""
    return json.dumps(doc, indent=2, default=str)
