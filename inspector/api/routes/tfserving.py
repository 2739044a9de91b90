"""TensorFlow Serving's REST API, so existing TF Serving clients work unchanged.

    GET  /v1/models/{name}[/versions/{v}|/labels/{label}]              model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{label}]/metadata     signatures
    POST /v1/models/{name}[/versions/{v}|/labels/{label}]:predict      row or columnar
    POST /v1/models/{name}[/versions/{v}|/labels/{label}]:classify     [[label, score], …]

Labels: ``production`` and ``candidate`` (the candidate running in shadow mode).
Images travel as ``{"b64": "…"}``. Errors are ``{"error": "…"}``, as TF Serving's are.
Requests go through the inference queue to the inference workers, which hold the models.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Depends, Request

from inspector import promotion, registry
from inspector.api.deps import AnyRole, InferenceDep, SettingsDep, StoreDep
from inspector.api.errors import TFServingError
from inspector.model_input import SIGNATURE_OUTPUTS
from workers import inference_queue


def _tf_style_errors(request: Request) -> None:
    # Read by the app's error handlers: errors on these routes take TF Serving's shape.
    request.state.tf_serving = True


router = APIRouter(tags=["TF Serving"], dependencies=[Depends(_tf_style_errors)])
INPUT = "images"
OUTPUTS = SIGNATURE_OUTPUTS
PREDICT_TIMEOUT_SECONDS = 30.0


def _check_model(name: str, settings: SettingsDep) -> None:
    if name != settings.model_name:
        raise TFServingError(404, f"Servable not found for request: Latest({name})")


def _target(store: StoreDep, version: str | None, label: str | None) -> str:
    if label is not None:
        if label not in ("production", "candidate"):
            raise TFServingError(404, f"Unrecognized servable version label: {label}")
        return label
    if version is not None:
        if not version.isdigit():
            raise TFServingError(400, f"Invalid version: {version}")
        return version
    return "production"


def _loaded(inference: InferenceDep) -> dict[int, str]:
    """version → TF Serving state, over every live inference worker."""
    states: dict[int, str] = {}
    for status in inference.workers().values():
        if status.get("version") is not None:
            states[int(status["version"])] = "AVAILABLE"
        if status.get("shadow_version") is not None:
            states[int(status["shadow_version"])] = "AVAILABLE"
        if status.get("loading_version") is not None:
            states.setdefault(int(status["loading_version"]), "LOADING")
        if status.get("unloading_version") is not None:
            states.setdefault(int(status["unloading_version"]), "UNLOADING")
    return states


def _resolve(store: StoreDep, inference: InferenceDep, target: str) -> int | None:
    if target == "production":
        return inference.serving_version() or registry.alias(store, "production")
    if target == "candidate":
        shadows = [
            int(s["shadow_version"])
            for s in inference.workers().values()
            if s.get("shadow_version")
        ]
        return shadows[0] if shadows else None
    return int(target)


def _status(
    name: str, store: StoreDep, inference: InferenceDep, target: str | None
) -> dict[str, Any]:
    loaded = _loaded(inference)
    if target is None:
        versions = sorted(loaded, reverse=True)
    else:
        number = _resolve(store, inference, target)
        if number is None or (number not in loaded and target in ("production", "candidate")):
            raise TFServingError(404, f"Servable not found for request: {target}({name})")
        versions = [number]
    rows = []
    for number in versions:
        state = loaded.get(number)
        if state is None:
            registry.get_version(store, number)  # 404 for a version that does not exist
            registry_state = registry.read_state(store).state_of(number)
            error = "version failed to load" if registry_state == "load_failed" else ""
            rows.append(
                {
                    "version": str(number),
                    "state": "END",
                    "status": {"error_code": "UNKNOWN" if error else "OK", "error_message": error},
                }
            )
        else:
            rows.append(
                {
                    "version": str(number),
                    "state": state,
                    "status": {"error_code": "OK", "error_message": ""},
                }
            )
    return {"model_version_status": rows}


@router.get("/v1/models/{name}", summary="Model status (TF Serving)")
def model_status(
    name: str, store: StoreDep, settings: SettingsDep, inference: InferenceDep, _: AnyRole
) -> dict[str, Any]:
    """Every version the inference workers hold, with its state."""
    _check_model(name, settings)
    return _status(name, store, inference, None)


@router.get("/v1/models/{name}/labels/{label}", summary="Model status of a label (TF Serving)")
def label_status(
    name: str,
    label: str,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    _: AnyRole,
) -> dict[str, Any]:
    """Status of the version behind ``production`` or ``candidate``."""
    _check_model(name, settings)
    return _status(name, store, inference, _target(store, None, label))


def version_status(
    name: str, version: int, store: StoreDep, inference: InferenceDep
) -> dict[str, Any]:
    """TF Serving's status of one version, plus the registry's view of it."""
    try:
        status = _status(name, store, inference, str(version))
    except TFServingError:
        status = {"model_version_status": []}
    return {**status, **promotion.version_view(store, version)}


def _signature_def(classes: int | str) -> dict[str, Any]:
    def tensor(dtype: str, dims: list[str], name: str) -> dict[str, Any]:
        return {
            "dtype": dtype,
            "tensor_shape": {"dim": [{"size": d, "name": ""} for d in dims], "unknown_rank": False},
            "name": name,
        }

    c = str(classes)
    return {
        "inputs": {INPUT: tensor("DT_STRING", ["-1"], "serving_default_images:0")},
        "outputs": {
            "class_names": tensor("DT_STRING", ["-1", c], "StatefulPartitionedCall:0"),
            "confidence": tensor("DT_FLOAT", ["-1"], "StatefulPartitionedCall:1"),
            "defect": tensor("DT_BOOL", ["-1"], "StatefulPartitionedCall:2"),
            "defect_map": tensor("DT_FLOAT", ["-1", "-1", "-1"], "StatefulPartitionedCall:3"),
            "label": tensor("DT_STRING", ["-1"], "StatefulPartitionedCall:4"),
            "p_defect": tensor("DT_FLOAT", ["-1"], "StatefulPartitionedCall:5"),
            "probabilities": tensor("DT_FLOAT", ["-1", c], "StatefulPartitionedCall:6"),
        },
        "method_name": "tensorflow/serving/predict",
    }


def _metadata(name: str, store: StoreDep, inference: InferenceDep, target: str) -> dict[str, Any]:
    number = _resolve(store, inference, target)
    if number is None:
        raise TFServingError(404, f"Servable not found for request: {target}({name})")
    doc = registry.get_version(store, number)
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(number)},
        "metadata": {
            "signature_def": {
                "signature_def": {"serving_default": _signature_def(len(doc["classes"]))}
            }
        },
    }


@router.get("/v1/models/{name}/metadata", summary="Model metadata (TF Serving)")
def metadata(
    name: str, store: StoreDep, settings: SettingsDep, inference: InferenceDep, _: AnyRole
) -> dict[str, Any]:
    """The serving signature of the production version."""
    _check_model(name, settings)
    return _metadata(name, store, inference, "production")


@router.get(
    "/v1/models/{name}/versions/{version}/metadata", summary="Version metadata (TF Serving)"
)
def version_metadata(
    name: str,
    version: str,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    _: AnyRole,
) -> dict[str, Any]:
    """The serving signature of one version."""
    _check_model(name, settings)
    return _metadata(name, store, inference, _target(store, version, None))


@router.get("/v1/models/{name}/labels/{label}/metadata", summary="Label metadata (TF Serving)")
def label_metadata(
    name: str,
    label: str,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    _: AnyRole,
) -> dict[str, Any]:
    """The serving signature of the version behind a label."""
    _check_model(name, settings)
    return _metadata(name, store, inference, _target(store, None, label))


# --- predict and classify ---------------------------------------------------------------


def _image(value: Any, where: str) -> bytes:
    if isinstance(value, dict) and len(value) == 1 and "b64" not in value:
        value = next(iter(value.values()))  # {"images": {"b64": …}}: the input named
    if not isinstance(value, dict) or set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise TFServingError(400, f'{where}: an image must be given as {{"b64": "<base64 bytes>"}}')
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TFServingError(400, f"{where}: invalid base64: {exc}") from exc


def _parse_predict(body: dict[str, Any]) -> tuple[list[bytes], bool]:
    signature = body.get("signature_name", "serving_default") or "serving_default"
    if signature != "serving_default":
        raise TFServingError(
            400, f'Serving signature name: "{signature}" not found in signature def'
        )
    if ("instances" in body) == ("inputs" in body):
        raise TFServingError(400, "Missing 'instances' or 'inputs' key (exactly one is required)")
    if "instances" in body:
        instances = body["instances"]
        if not isinstance(instances, list) or not instances:
            raise TFServingError(400, "'instances' must be a non-empty list")
        return [_image(item, f"instances[{i}]") for i, item in enumerate(instances)], False
    inputs = body["inputs"]
    if isinstance(inputs, dict) and "b64" not in inputs:
        if set(inputs) != {INPUT}:
            raise TFServingError(
                400, f"unknown inputs {sorted(inputs)}; the signature takes '{INPUT}'"
            )
        inputs = inputs[INPUT]
    if isinstance(inputs, dict):
        inputs = [inputs]
    if not isinstance(inputs, list) or not inputs:
        raise TFServingError(400, "'inputs' must be a non-empty list of images")
    return [_image(item, f"inputs[{i}]") for i, item in enumerate(inputs)], True


def _call(inference: InferenceDep, images: list[bytes], target: str) -> dict[str, Any]:
    if not inference.workers():
        raise TFServingError(503, "no inference worker is running")
    req = inference_queue.request(images=images, target=target, maps=True)
    reply = inference.call(req, timeout=PREDICT_TIMEOUT_SECONDS)
    if reply is None:
        raise TFServingError(504, "the inference workers did not answer in time")
    if reply.get("status") != "ok":
        status = 404 if reply.get("code") == "not_found" else 400
        raise TFServingError(status, str(reply.get("error")))
    return reply


def _outputs(reply: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per image: the SavedModel's outputs, judged at the threshold the version
    serves with now (an operator may have moved it at approval)."""
    classes = reply["classes"]
    maps = reply.get("defect_maps") or [None] * len(reply["probabilities"])
    return [
        {
            "probabilities": probabilities,
            "class_names": classes,
            "label": verdict["label"],
            "confidence": verdict["confidence"],
            "p_defect": verdict["p_defect"],
            "defect": verdict["defect"],
            "defect_map": grid,
        }
        for probabilities, verdict, grid in zip(
            reply["probabilities"], reply["verdicts"], maps, strict=True
        )
    ]


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise TFServingError(400, f"JSON Parse error: {exc}") from exc
    if not isinstance(body, dict):
        raise TFServingError(400, "the request body must be a JSON object")
    return body


async def _predict(
    request: Request, name: str, target: str, settings: SettingsDep, inference: InferenceDep
) -> dict[str, Any]:
    _check_model(name, settings)
    images, columnar = _parse_predict(await _body(request))
    from starlette.concurrency import run_in_threadpool

    reply = await run_in_threadpool(_call, inference, images, target)
    rows = _outputs(reply)
    # TF Serving's gRPC answer names the version (model_spec); its REST answer does not.
    # The key is extra, so TF Serving clients read the answer as before.
    spec = {"model_spec": {"name": name, "version": str(reply["version"])}}
    if columnar:
        return {"outputs": {key: [row[key] for row in rows] for key in OUTPUTS}, **spec}
    return {"predictions": rows, **spec}


async def _classify(
    request: Request, name: str, target: str, settings: SettingsDep, inference: InferenceDep
) -> dict[str, Any]:
    _check_model(name, settings)
    body = await _body(request)
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise TFServingError(400, "'examples' must be a non-empty list of objects")
    context = body.get("context") or {}
    images = []
    for i, example in enumerate(examples):
        features = {**context, **example} if isinstance(example, dict) else example
        if not isinstance(features, dict) or len(features) != 1:
            raise TFServingError(
                400, f'examples[{i}] must have exactly one feature: the image as {{"b64": …}}'
            )
        images.append(_image(next(iter(features.values())), f"examples[{i}]"))
    from starlette.concurrency import run_in_threadpool

    rows = _outputs(await run_in_threadpool(_call, inference, images, target))
    return {
        "result": [
            [[c, p] for c, p in zip(row["class_names"], row["probabilities"], strict=True)]
            for row in rows
        ]
    }


async def predict(
    request: Request,
    name: str,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    _: AnyRole,
) -> dict[str, Any]:
    """Row (``instances``) or columnar (``inputs``) prediction; images as ``{"b64": …}``."""
    return await _predict(request, name, _path_target(request, store), settings, inference)


async def classify(
    request: Request,
    name: str,
    store: StoreDep,
    settings: SettingsDep,
    inference: InferenceDep,
    _: AnyRole,
) -> dict[str, Any]:
    """``[[label, score], …]`` per example."""
    return await _classify(request, name, _path_target(request, store), settings, inference)


def _path_target(request: Request, store: StoreDep) -> str:
    params = request.path_params
    return _target(store, params.get("version"), params.get("label"))


# The same two verbs under the model, one of its versions, or one of its labels.
for _prefix, _what in (
    ("", "the production version"),
    ("/versions/{version}", "a version"),
    ("/labels/{label}", "a label"),
):
    for _verb, _handler in (("predict", predict), ("classify", classify)):
        router.add_api_route(
            f"/v1/models/{{name}}{_prefix}:{_verb}",
            _handler,
            methods=["POST"],
            summary=f"{_verb.capitalize()} with {_what} (TF Serving)",
            name=f"{_verb}{_prefix.split('/')[1] if _prefix else ''}",
        )
