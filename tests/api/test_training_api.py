"""Training runs through the API: validation, roles, state."""

from __future__ import annotations

from inspector import training
from tests.api.conftest import CAMERA, OPERATOR, keys


def test_an_operator_starts_a_run_and_it_is_recorded_and_queued(client, store):
    response = client.post(
        "/v1/training-runs",
        headers=OPERATOR,
        json={"reason": "new defects", "config": {"epochs": 3}},
    )
    assert response.status_code == 202, response.text
    run = response.json()
    assert run["url"] == f"/v1/training-runs/{run['run_id']}"
    assert run["config"]["epochs"] == 3 and run["requested_by"] == "alice"
    shown = client.get(run["url"], headers=OPERATOR).json()
    assert shown["state"] == "queued" and shown["result"] is None
    assert [r["run_id"] for r in client.get("/v1/training-runs", headers=OPERATOR).json()] == [
        run["run_id"]
    ]
    assert training.read_run(store, run["run_id"])["reason"] == "new defects"


def test_bad_training_requests_are_refused_and_record_nothing(client, store):
    before = keys(store)
    for body, code in [
        ({"config": {"architecture": "resnet9000"}}, "invalid_training_config"),
        ({"config": {"epochs": 0}}, "invalid_training_config"),
        ({"config": {"learning_rat": 0.1}}, "invalid_training_config"),
        ({"parent": "yesterday"}, "invalid_parent"),
        ({"parent": "42"}, "version_not_found"),
    ]:
        response = client.post("/v1/training-runs", headers=OPERATOR, json=body)
        assert response.status_code in (404, 422), (body, response.text)
        assert response.json()["error"]["code"] == code, body
    assert keys(store) == before


def test_cameras_cannot_start_or_read_runs(client):
    assert client.post("/v1/training-runs", headers=CAMERA, json={}).status_code == 403
    assert client.get("/v1/training-runs", headers=CAMERA).status_code == 403


def test_an_unknown_run_is_404(client):
    response = client.get("/v1/training-runs/20260101T000000-abcdef", headers=OPERATOR)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "run_not_found"
