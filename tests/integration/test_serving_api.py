"""TF Serving's REST API (written from its documentation), verdicts on upload, the review
queue and shadow mode — against a real inference worker process."""

from __future__ import annotations

import base64
import subprocess
import sys

import httpx
import pytest

from inspector import registry
from inspector.model_input import SIGNATURE_OUTPUTS
from tests.factories import metadata, part_image, upload_files
from tests.processes import ServiceProcess, wait_for
from tests.servers import free_port
from tests.training_support import clone_version, copy_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]
CAMERA = {"Authorization": "Bearer dev-camera"}
OPERATOR = {"Authorization": "Bearer dev-operator"}
CLASSES = ["ok", "pit", "scratch"]
OUTPUTS = SIGNATURE_OUTPUTS


def b64(label: str = "pit", seed: int = 1) -> dict[str, str]:
    return {"b64": base64.b64encode(part_image(label, seed=seed, size=48)).decode()}


@pytest.fixture(scope="module")
def service(trained_template, tmp_path_factory, redis_server):
    """API and an inference worker in shadow mode: version 1 in production, version 2 a
    candidate awaiting approval."""
    root, _ = trained_template
    tmp = tmp_path_factory.mktemp("serving")
    store = copy_store(root, tmp)
    for action in ("register", "gate_passed", "approve"):
        registry.transition(store, 1, action, actor="setup", role="operator", reason="first")
    candidate = clone_version(store, 1)
    for action in ("register", "gate_passed"):
        registry.transition(store, candidate, action, actor="setup", role="system")
    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp / "data"),
        "INSPECTOR_STORE_URL": store.url,
        "INSPECTOR_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/11",
        "INSPECTOR_VERDICT_DEADLINE_MS": "10000",
        "INSPECTOR_SHADOW_MODE": "true",
        # Every verdict within 50 log-odds of its threshold is unsure: all go to review.
        "INSPECTOR_REVIEW_MARGIN": "50",
        "INSPECTOR_INFERENCE_POLL_SECONDS": "1",
    }
    api = ServiceProcess("api", ["api", "--port", str(port)], env, tmp).start()
    worker = ServiceProcess("inference", ["worker", "inference"], env, tmp).start()
    base_url = f"http://127.0.0.1:{port}"
    api.wait_http(f"{base_url}/healthz")
    worker.wait_for_output("ready (serving version 1)")
    client = httpx.Client(base_url=base_url, headers=CAMERA, timeout=60)
    wait_for(
        lambda: len(client.get("/v1/models/inspector").json()["model_version_status"]) == 2,
        60,
        "shadow",
        worker.log,
    )
    yield client, store, candidate, base_url
    client.close()
    worker.stop()
    api.stop()


def test_model_status(service):
    client, _, candidate, _ = service
    status = client.get("/v1/models/inspector").json()
    assert status == {
        "model_version_status": [
            {
                "version": str(candidate),
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            },
        ]
    }
    assert (
        client.get("/v1/models/inspector/labels/production").json()["model_version_status"][0][
            "version"
        ]
        == "1"
    )
    assert client.get("/v1/models/inspector/labels/candidate").json()["model_version_status"][0][
        "version"
    ] == str(candidate)
    one = client.get("/v1/models/inspector/versions/1", headers=OPERATOR).json()
    assert one["model_version_status"][0]["state"] == "AVAILABLE" and one["state"] == "production"


def test_model_metadata(service):
    client, *_ = service
    meta = client.get("/v1/models/inspector/metadata").json()
    assert meta["model_spec"] == {"name": "inspector", "signature_name": "", "version": "1"}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["images"]["dtype"] == "DT_STRING"
    assert set(signature["outputs"]) == set(OUTPUTS)
    assert signature["outputs"]["defect_map"]["dtype"] == "DT_FLOAT"
    assert signature["method_name"] == "tensorflow/serving/predict"
    assert client.get("/v1/models/inspector/versions/1/metadata").status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [b64("pit", 1), b64("ok", 2)]},
        {
            "signature_name": "serving_default",
            "instances": [{"images": b64("pit", 1)}, {"images": b64("ok", 2)}],
        },
    ],
    ids=["row", "row-named"],
)
def test_predict_row_format(service, body):
    client, store, *_ = service
    answer = client.post("/v1/models/inspector:predict", json=body)
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert len(predictions) == 2
    threshold = registry.get_version(store, 1)["operating_point"]["threshold"]
    for row in predictions:
        assert set(row) == set(OUTPUTS)
        assert row["class_names"] == CLASSES and row["label"] in CLASSES
        assert abs(sum(row["probabilities"]) - 1) < 1e-4
        assert abs(row["confidence"] - row["probabilities"][CLASSES.index(row["label"])]) < 1e-5
        # The verdict is a decision at the version's threshold on P(defect) = 1 − P(ok).
        assert abs(row["p_defect"] - (1 - row["probabilities"][0])) < 1e-4
        assert row["defect"] == (row["p_defect"] >= threshold) == (row["label"] != "ok")
        # The defect map: a grid over the 48×48 canvas, one cell per 8 pixels.
        assert len(row["defect_map"]) == 6 and len(row["defect_map"][0]) == 6


def test_a_malformed_queue_item_is_dropped_and_serving_goes_on(service, redis_server):
    """Anything on the queue that is not a request (a stray LPUSH, an older format) is
    logged and dropped: it has nobody to answer, and it must not stop the worker."""
    import redis as redis_lib

    from workers.inference_queue import QUEUE

    client, *_ = service
    redis = redis_lib.Redis.from_url(redis_server.url.rsplit("/", 1)[0] + "/11")
    redis.lpush(QUEUE, b"", b"not a request", b'{"id": "x", "images": [99]}\nshort')
    answer = client.post("/v1/models/inspector:predict", json={"instances": [b64("pit", 3)]})
    assert answer.status_code == 200, answer.text
    assert redis.llen(QUEUE) == 0


@pytest.mark.parametrize(
    "inputs",
    [{"images": [b64("pit", 1), b64("ok", 2)]}, [b64("pit", 1), b64("ok", 2)]],
    ids=["named", "bare"],
)
def test_predict_columnar_format(service, inputs):
    client, *_ = service
    answer = client.post("/v1/models/inspector:predict", json={"inputs": inputs})
    assert answer.status_code == 200, answer.text
    outputs = answer.json()["outputs"]
    assert (
        len(outputs["probabilities"]) == 2
        and len(outputs["label"]) == 2
        and outputs["class_names"][0] == CLASSES
    )
    row = client.post(
        "/v1/models/inspector:predict", json={"instances": [b64("pit", 1), b64("ok", 2)]}
    ).json()
    assert outputs["label"] == [p["label"] for p in row["predictions"]]


def test_versions_and_labels_route_to_the_right_model(service):
    client, _, candidate, _ = service
    body = {"instances": [b64()]}
    assert (
        client.post("/v1/models/inspector/versions/1:predict", json=body).json()["model_spec"][
            "version"
        ]
        == "1"
    )
    assert (
        client.post(f"/v1/models/inspector/versions/{candidate}:predict", json=body).status_code
        == 200
    )
    assert client.post("/v1/models/inspector/labels/candidate:predict", json=body).json()[
        "model_spec"
    ]["version"] == str(candidate)
    missing = client.post("/v1/models/inspector/versions/99:predict", json=body)
    assert missing.status_code == 404 and "Servable not found" in missing.json()["error"]
    bad_label = client.post("/v1/models/inspector/labels/stable:predict", json=body)
    assert bad_label.status_code == 404 and isinstance(bad_label.json()["error"], str)


def test_classify(service):
    client, *_ = service
    answer = client.post(
        "/v1/models/inspector:classify",
        json={"examples": [{"images": b64("pit", 1)}, {"image": b64("ok", 3)}]},
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert len(result) == 2
    assert [label for label, _ in result[0]] == CLASSES
    assert abs(sum(score for _, score in result[0]) - 1) < 1e-4


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/v1/models/nope:predict", {"instances": [{"b64": "AA=="}]}, 404, "Servable not found"),
        ("/v1/models/inspector:predict", {"instances": [{"b64": "%%%"}]}, 400, "base64"),
        ("/v1/models/inspector:predict", {"instances": ["not an image"]}, 400, "b64"),
        ("/v1/models/inspector:predict", {}, 400, "instances"),
        ("/v1/models/inspector:predict", {"instances": [], "inputs": []}, 400, "instances"),
        (
            "/v1/models/inspector:predict",
            {"signature_name": "other", "instances": [{"b64": "AA=="}]},
            400,
            "signature",
        ),
        (
            "/v1/models/inspector:predict",
            {"instances": [{"b64": base64.b64encode(b"text").decode()}]},
            400,
            "",
        ),
        ("/v1/models/inspector:classify", {"examples": []}, 400, "examples"),
    ],
)
def test_errors_look_like_tf_serving_errors(service, path, body, status, fragment):
    client, *_ = service
    answer = client.post(path, json=body)
    assert answer.status_code == status, answer.text
    assert isinstance(answer.json()["error"], str) and fragment in answer.json()["error"]


def test_tf_serving_routes_need_a_token_and_say_so_in_their_shape(service):
    _, _, _, base_url = service
    answer = httpx.post(f"{base_url}/v1/models/inspector:predict", json={"instances": [b64()]})
    assert answer.status_code == 401 and isinstance(answer.json()["error"], str)
    unknown = httpx.get(f"{base_url}/v1/models/nope", headers=CAMERA)
    assert unknown.status_code == 404 and isinstance(unknown.json()["error"], str)


def test_uploads_get_a_verdict_unsure_ones_go_to_review_and_shadow_mode_compares(service, tmp_path):
    client, _store, candidate, base_url = service
    ids, unsure = [], set()
    for n in range(6):  # stains: a class this model never learned, so it is often unsure
        answer = client.post(
            "/v1/images",
            files=upload_files(part_image("stain", seed=500 + n, size=48)),
            data=metadata(part_id=f"r{n}"),
        )
        assert answer.status_code == 201, answer.text
        body = answer.json()
        assert body["verdict_status"] == "done" and body["verdict"]["model_version"] == 1
        assert body["verdict"]["label"] in CLASSES and isinstance(body["verdict"]["defect"], bool)
        ids.append(body["image_id"])
        if body["verdict"]["unsure"]:
            unsure.add(body["image_id"])
    again = client.post(
        "/v1/images",
        files=upload_files(part_image("stain", seed=500, size=48)),
        data=metadata(part_id="r0"),
    )
    assert again.json()["duplicate"] and again.json()["verdict"]["model_version"] == 1
    polled = client.get(f"/v1/images/{ids[0]}/verdict").json()
    assert polled["verdict_status"] == "done" and polled["verdict"]["model_version"] == 1
    wait_for(
        lambda: len(client.get("/v1/review", headers=OPERATOR).json()) >= 6, 30, "review queue"
    )
    queue = client.get("/v1/review", headers=OPERATOR).json()
    assert {item["image_id"] for item in queue} >= set(ids)
    assert client.get(queue[0]["image_url"], headers=OPERATOR).status_code == 200
    # `inspector review`: label the first, skip the second, quit.
    cli = subprocess.run(
        [sys.executable, "-m", "inspector", "review", "--url", base_url],
        input="dent\nscratch\n\nq\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "'dent' is not a class" in cli.stdout and "1 labelled" in cli.stdout
    assert len(client.get("/v1/review", headers=OPERATOR).json()) == len(queue) - 1
    # Shadow mode: the candidate judged the same uploads; its summary is on the version.
    wait_for(
        lambda: (
            (
                client.get(f"/v1/models/inspector/versions/{candidate}", headers=OPERATOR)
                .json()
                .get("shadow")
                or {}
            ).get("images", 0)
            >= 6
        ),
        30,
        "shadow verdicts",
    )
    shadow = client.get(f"/v1/models/inspector/versions/{candidate}", headers=OPERATOR).json()[
        "shadow"
    ]
    assert shadow["agreement"] == 1.0  # a clone of production agrees with it everywhere
    assert shadow["labelled"] >= 1


def test_an_approval_that_moves_the_threshold_is_served_and_audited(service):
    """Runs last: it promotes the candidate. Its threshold is moved to 0.999 at approval, so
    a part is judged defective only when P(defect) ≥ 0.999."""
    client, _store, candidate, _ = service
    answer = client.post(
        f"/v1/models/inspector/versions/{candidate}:approve",
        headers=OPERATOR,
        json={"reason": "fewer false rejects at station 3", "threshold": 0.999},
    )
    assert answer.status_code == 200, answer.text
    event = answer.json()["event"]
    assert event["threshold"] == 0.999 and event["threshold_before"] < 0.999
    assert answer.json()["version"]["threshold"] == 0.999
    wait_for(
        lambda: (
            client.post("/v1/models/inspector:predict", json={"instances": [b64("pit", 7)]}).json()[
                "model_spec"
            ]["version"]
            == str(candidate)
        ),
        60,
        "the approved version to serve",
    )
    rows = client.post(
        "/v1/models/inspector:predict", json={"instances": [b64("pit", 7), b64("ok", 8)]}
    ).json()["predictions"]
    for row in rows:
        assert row["defect"] == (row["p_defect"] >= 0.999)
    upload = client.post(
        "/v1/images",
        files=upload_files(part_image("pit", seed=901, size=48)),
        data=metadata(part_id="t1"),
    ).json()
    assert upload["verdict"]["threshold"] == 0.999
    assert upload["verdict"]["defect"] == (upload["verdict"]["p_defect"] >= 0.999)
    audit = client.get("/v1/audit", headers=OPERATOR).json()
    assert audit[-1]["threshold"] == 0.999 and audit[-1]["actor"] == "dev-operator"
