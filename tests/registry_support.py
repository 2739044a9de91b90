"""Registry fixtures without TensorFlow: published versions with realistic reports."""

from __future__ import annotations

import numpy as np

from inspector import evaluation, gating, promotion, records, registry

CLASSES = ["ok", "pit", "scratch"]
POLICY = gating.Policy(floors=gating.Floors(accuracy=0.5))


def _scored(number: int, accuracy: float) -> dict:
    rng = np.random.default_rng(number)
    labels = [CLASSES[i % 3] for i in range(60)]
    predicted = [label if rng.random() < accuracy else "ok" for label in labels]
    probabilities = np.array([[0.8 if c == p else 0.1 for c in CLASSES] for p in predicted])
    held = evaluation.classification_metrics(
        [f"{i:064x}" for i in range(60)], labels, probabilities, CLASSES
    )
    return {
        "version": number,
        "classes": CLASSES,
        "latency_ms_per_image": 3.0,
        "model_bytes": 1000,
        "slices": {"heldout": held},
    }


def candidate(store, number: int, accuracy: float, production: int | None = None) -> dict:
    """A published version with a report, as the train worker leaves it."""
    registry.publish_version(store, number, {}, {"classes": CLASSES, "snapshot_id": "s1"})
    registry.transition(store, number, "register", actor="inspector", role="system")
    mine = _scored(number, accuracy)
    theirs = _scored(production, 0.7) if production else None
    decision = gating.decide(
        mine["slices"],
        theirs["slices"] if theirs else None,
        POLICY,
        candidate_version=number,
        baseline_version=production,
    )
    report = {
        "report_id": f"r{number}",
        "candidate_version": number,
        "baseline_version": production,
        "snapshot_id": "s1",
        "created_at": records.now_utc().isoformat(),
        "policy_source": "test",
        "candidate": mine,
        "production": theirs,
        "decision": decision.to_doc(),
        "infra_check": {"ok": True},
        "blessed": decision.blessed,
        "sentence": decision.sentence,
    }
    store.put_bytes(promotion.report_key(number, report["report_id"]), records.to_json(report))
    registry.transition(
        store,
        number,
        "gate_passed" if decision.blessed else "gate_failed",
        actor="inspector",
        role="system",
        report_id=report["report_id"],
    )
    return report
