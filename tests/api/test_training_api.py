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


def test_snapshots_and_golden_sets(client, store):
    from tests.factories import fill_store

    empty = client.post("/v1/snapshots", headers=OPERATOR)
    assert (empty.status_code, empty.json()["error"]["code"]) == (409, "empty_snapshot")
    ids = fill_store(store, 12, mix={"ok": 0.5, "pit": 0.5}, seed=1, size=32)
    pinned = client.put("/v1/golden-sets/week1", headers=OPERATOR, json={"image_ids": ids[:3]})
    assert pinned.status_code == 200 and pinned.json()["pinned_by"] == "alice"
    clash = client.put("/v1/golden-sets/week1", headers=OPERATOR, json={"image_ids": ids[3:5]})
    assert clash.status_code == 409
    unknown = client.put("/v1/golden-sets/week2", headers=OPERATOR, json={"image_ids": ["0" * 64]})
    assert unknown.status_code == 404
    snapshot = client.post("/v1/snapshots", headers=OPERATOR).json()
    assert snapshot["total"] == 12 and snapshot["golden_sets"] == ["week1"]
    assert sum(snapshot["counts"]["heldout"].values()) >= 3
    assert "heldout" in snapshot["table"]
    again = client.get(f"/v1/snapshots/{snapshot['snapshot_id']}", headers=OPERATOR).json()
    assert again["counts"] == snapshot["counts"]
    assert client.get("/v1/snapshots/nope", headers=OPERATOR).status_code == 404
