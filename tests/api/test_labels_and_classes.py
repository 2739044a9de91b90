"""Labels (append-only history) and the class vocabulary, through the API."""

from __future__ import annotations

from inspector import records
from tests.api.conftest import ADMIN, CAMERA, OPERATOR, keys
from tests.factories import metadata, part_image, upload_files


def _upload(client, label=None, seed=0):
    fields = metadata(part_id=f"p-{seed}", label=label)
    response = client.post(
        "/v1/images", headers=CAMERA, files=upload_files(part_image(seed=seed)), data=fields
    )
    assert response.status_code == 201, response.text
    return response.json()["image_id"]


def test_a_label_put_appends_and_the_newest_wins(client, store):
    image_id = _upload(client, label="ok")
    response = client.put(
        f"/v1/images/{image_id}/label",
        headers=OPERATOR,
        json={"label": "scratch", "reason": "seen at QA"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"] == "scratch"
    assert [(e["label"], e["source"], e["by"]) for e in body["history"]] == [
        ("ok", "upload", "cam-1"),
        ("scratch", "api", "alice"),
    ]
    client.put(f"/v1/images/{image_id}/label", headers=ADMIN, json={"label": "crack"})
    shown = client.get(f"/v1/images/{image_id}", headers=OPERATOR).json()
    assert shown["label"] == "crack"
    assert len(shown["label_history"]) == 3
    assert shown["ingest"]["state"] == "pending"
    assert records.current_labels(store) == {image_id: "crack"}


def test_labelling_an_unknown_image_or_with_an_unknown_class_changes_nothing(client, store):
    image_id = _upload(client)
    before = keys(store)
    missing = client.put(f"/v1/images/{'0' * 64}/label", headers=OPERATOR, json={"label": "ok"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "image_not_found")
    not_an_id = client.put("/v1/images/..%2Fetc/label", headers=OPERATOR, json={"label": "ok"})
    assert not_an_id.status_code == 404
    unknown = client.put(f"/v1/images/{image_id}/label", headers=OPERATOR, json={"label": "dent"})
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (422, "unknown_label")
    empty = client.put(f"/v1/images/{image_id}/label", headers=OPERATOR, json={})
    assert (empty.status_code, empty.json()["error"]["code"]) == (422, "invalid_request")
    assert keys(store) == before


def test_camera_tokens_cannot_use_operator_routes(client, store):
    image_id = _upload(client)
    before = keys(store)
    for method, path, body in [
        ("PUT", f"/v1/images/{image_id}/label", {"label": "ok"}),
        ("GET", f"/v1/images/{image_id}", None),
        ("POST", "/v1/classes", {"name": "dent"}),
    ]:
        response = client.request(method, path, headers=CAMERA, json=body)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "forbidden"
    assert keys(store) == before


def test_operators_extend_the_vocabulary_and_new_labels_are_accepted(client):
    names = {c["name"] for c in client.get("/v1/classes", headers=CAMERA).json()}
    assert names == {"ok", "scratch", "pit", "crack", "stain"}
    created = client.post(
        "/v1/classes", headers=OPERATOR, json={"name": "dent", "description": "pressed in"}
    )
    assert created.status_code == 201
    assert created.json()["defect"] is True and created.json()["added_by"] == "alice"
    again = client.post(
        "/v1/classes", headers=OPERATOR, json={"name": "dent", "description": "other"}
    )
    assert again.status_code == 200 and again.json()["description"] == "pressed in"
    image_id = _upload(client, label="dent", seed=3)
    assert client.get(f"/v1/images/{image_id}/label", headers=OPERATOR).json()["label"] == "dent"


def test_bad_class_names_are_refused(client, store):
    before = keys(store)
    for name in ["Dent", "1dent", "de nt", "../x", "a" * 33]:
        response = client.post("/v1/classes", headers=OPERATOR, json={"name": name})
        assert response.status_code == 422, name
        assert response.json()["error"]["code"] in ("invalid_class_name", "invalid_request")
    assert keys(store) == before


def test_unknown_routes_and_methods_answer_in_the_error_shape(client):
    assert client.get("/v1/nothing", headers=OPERATOR).json()["error"]["code"] == "not_found"
    assert (
        client.delete("/v1/classes", headers=OPERATOR).json()["error"]["code"]
        == "method_not_allowed"
    )


def test_health_and_readiness(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    checks = ready.json()["checks"]
    assert (checks["store"], checks["broker"]) == ("ok", "ok")
    assert checks["inference"].startswith("no inference worker")


def test_openapi_documents_the_upload(client):
    spec = client.get("/openapi.json").json()
    assert "/v1/images" in spec["paths"]
    assert client.get("/docs").status_code == 200
