"""The registry through the API: roles, approvals, overrides, rollback, audit, reports."""

from __future__ import annotations

import pytest

from inspector import registry
from tests.api.conftest import ADMIN, CAMERA, OPERATOR
from tests.registry_support import CLASSES, candidate


def post(client, path, headers=OPERATOR, **body):
    return client.post(f"/v1/models/inspector{path}", headers=headers, json=body)


def test_approve_lists_reports_and_audits(client, store):
    candidate(store, 1, accuracy=0.9)
    listed = client.get("/v1/models", headers=OPERATOR).json()
    assert listed["versions"][0]["state"] == "awaiting_approval"
    assert listed["versions"][0]["report"]["blessed"] is True
    report = client.get("/v1/models/inspector/versions/1/report", headers=OPERATOR)
    assert report.status_code == 200 and report.json()["decision"]["mode"] == "floors_only"
    page = client.get("/v1/models/inspector/versions/1/report.html", headers=OPERATOR)
    assert (
        page.status_code == 200
        and page.headers["content-type"].startswith("text/html")
        and "<svg" in page.text
    )
    missing_reason = post(client, "/versions/1:approve")
    assert missing_reason.status_code == 422
    approved = post(client, "/versions/1:approve", reason="looks right on the line")
    assert approved.status_code == 200, approved.text
    assert approved.json()["version"]["state"] == "production"
    events = client.get("/v1/audit", headers=OPERATOR).json()
    assert (events[-1]["actor"], events[-1]["action"], events[-1]["reason"]) == (
        "alice",
        "approve",
        "looks right on the line",
    )
    assert events[-1]["report_id"] == "r1"


def test_a_failed_gate_is_refused_to_operators_and_overridable_by_admins_only(client, store):
    candidate(store, 1, accuracy=0.9)
    post(client, "/versions/1:approve", reason="first")
    candidate(store, 2, accuracy=0.2, production=1)
    refused = post(client, "/versions/2:approve", reason="please")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "gate_failed")
    operator_override = post(client, "/versions/2:approve", reason="please", override=True)
    assert (operator_override.status_code, operator_override.json()["error"]["code"]) == (
        403,
        "forbidden",
    )
    admin_override = post(
        client, "/versions/2:approve", headers=ADMIN, reason="customer demo", override=True
    )
    assert admin_override.status_code == 200
    assert admin_override.json()["event"]["override"] is True
    rolled = post(client, ":rollback", reason="escapes at station 2")
    assert rolled.status_code == 200 and rolled.json()["aliases"] == {
        "production": 1,
        "previous": 2,
    }
    again = post(client, ":rollback", reason="and back")
    assert again.json()["aliases"] == {"production": 2, "previous": 1}
    audit = [(e["action"], e["version"]) for e in client.get("/v1/audit", headers=OPERATOR).json()]
    assert audit[-3:] == [("override", 2), ("rollback", 1), ("rollback", 2)]


def test_rejections_and_illegal_transitions(client, store):
    candidate(store, 1, accuracy=0.9)
    rejected = post(client, "/versions/1:reject", reason="wrong lighting in training data")
    assert rejected.status_code == 200 and rejected.json()["version"]["state"] == "rejected"
    illegal = post(client, "/versions/1:approve", reason="changed my mind")
    assert (illegal.status_code, illegal.json()["error"]["code"]) == (409, "illegal_transition")
    nothing = post(client, ":rollback", reason="go back")
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (409, "nothing_to_roll_back")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/models"),
        ("GET", "/v1/models/inspector/versions/1"),
        ("GET", "/v1/models/inspector/versions/1/report"),
        ("GET", "/v1/models/inspector/versions/1/report.html"),
        ("POST", "/v1/models/inspector/versions/1:approve"),
        ("POST", "/v1/models/inspector/versions/1:reject"),
        ("POST", "/v1/models/inspector:rollback"),
        ("GET", "/v1/audit"),
    ],
)
def test_camera_tokens_cannot_read_reports_or_change_anything(client, store, method, path, caplog):
    candidate(store, 1, accuracy=0.9)
    before = registry.audit_log(store)
    with caplog.at_level("WARNING", logger="inspector.api.auth"):
        response = client.request(method, path, headers=CAMERA, json={"reason": "x"})
    assert response.status_code == 403
    assert "denied: cam-1 (role camera)" in caplog.text
    assert registry.audit_log(store) == before


def test_unknown_models_versions_and_reports(client, store):
    assert (
        client.get("/v1/models/other/versions/1", headers=OPERATOR).json()["error"]["code"]
        == "model_not_found"
    )
    assert (
        client.get("/v1/models/inspector/versions/7", headers=OPERATOR).json()["error"]["code"]
        == "version_not_found"
    )
    registry.publish_version(store, 1, {}, {"classes": CLASSES, "snapshot_id": "s"})
    unassessed = client.get("/v1/models/inspector/versions/1/report", headers=OPERATOR)
    assert (unassessed.status_code, unassessed.json()["error"]["code"]) == (404, "report_not_found")
