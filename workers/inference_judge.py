"""Judging one batch of inference requests: the inference worker's verdict path.

`BatchJudge.serve` picks the loaded version each request targets (production, the shadow
candidate, or a version by number), calls each model once on its requests' images,
answers every caller on its reply list, and only then records the verdicts (with the
shadow candidate's verdict beside each, in shadow mode) and counts them in Redis for the
console and /metrics. The worker's loop (workers/inference.py) hands it the batches and
swaps models between them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections import defaultdict
from typing import Any

import numpy as np
import redis as redis_lib

from inspector import images, records, verdicts
from inspector.config import Settings
from inspector.errors import ImageNotFound
from inspector.serving import LoadedModel, ModelHolder
from storage import ObjectStore, StoreError
from workers.inference_queue import REPLY_TTL_SECONDS, STATS_HOURLY, STATS_VERDICTS

log = logging.getLogger("inspector.inference")


class BatchJudge:
    """Answers batches of requests with the versions ``holder`` serves, and records them."""

    def __init__(
        self,
        settings: Settings,
        store: ObjectStore,
        redis: redis_lib.Redis,
        holder: ModelHolder,
    ) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self.holder = holder
        self.served = 0
        self.batches = 0

    def _model_for(self, target: Any) -> LoadedModel | None:
        current, shadow = self.holder.current, self.holder.shadow
        if target in ("production", None):
            return current
        if target == "candidate":
            return shadow
        for model in (current, shadow):
            if model is not None and str(model.version) == str(target):
                return model
        return None

    def _payload(self, request: dict[str, Any]) -> list[bytes]:
        if request["images"]:
            return list(request["images"])
        payload = []
        for image_id in request["image_ids"]:
            record = records.read_record(self.store, image_id)
            data = self.store.get_bytes(record.raw_key)
            if record.format == "tiff":  # the SavedModel decodes JPEG, PNG and BMP
                data = images.encode_png(images.decode(data, "tiff"))
            payload.append(data)
        return payload

    def serve(self, batch: list[dict[str, Any]]) -> None:
        """Answer one batch: one model call per target version, replies first, records after."""
        self.holder.swap_if_ready()
        groups: dict[int, list[tuple[dict[str, Any], list[bytes]]]] = defaultdict(list)
        models: dict[int, LoadedModel] = {}
        replies = []
        for request in batch:
            model = self._model_for(request.get("target"))
            if model is None:
                replies.append((request, self._not_found(request)))
                continue
            try:
                payload = self._payload(request)
            except (StoreError, ImageNotFound) as exc:
                replies.append(
                    (request, {"id": request["id"], "status": "error", "error": str(exc)})
                )
                continue
            models[model.version] = model
            groups[model.version].append((request, payload))
        to_record = []
        for version, items in groups.items():
            model = models[version]
            images = [image for _, payload in items for image in payload]
            started = time.perf_counter()
            try:
                outputs = model.predict(images)
            except Exception as exc:  # a request TensorFlow cannot decode fails alone
                log.warning("batch of %d failed (%s); answering one by one", len(images), exc)
                for request, payload in items:
                    replies.append((request, self._one_by_one(model, request, payload)))
                continue
            latency = (time.perf_counter() - started) * 1000
            row = 0
            for request, payload in items:
                rows = slice(row, row + len(payload))
                row += len(payload)
                replies.append((request, self._reply(model, request, outputs, rows, latency)))
                if request.get("record"):
                    to_record.append((model, request, outputs, rows, latency, payload))
        self._send(replies)
        self.served += sum(len(p) for items in groups.values() for _, p in items)
        self.batches += 1
        for model, request, outputs, rows, latency, payload in to_record:
            self._record(model, request, outputs, rows, latency, payload)

    def _not_found(self, request: dict[str, Any]) -> dict[str, Any]:
        target = request.get("target")
        if target in ("production", None) and self.holder.current is None:
            message = "no production model is being served yet"
        else:
            message = f"Servable not found for request: {target}"
        return {"id": request["id"], "status": "error", "code": "not_found", "error": message}

    def _reply(
        self,
        model: LoadedModel,
        request: dict[str, Any],
        outputs: dict[str, Any],
        rows: slice,
        latency: float,
    ) -> dict[str, Any]:
        probabilities, grids = _rows(outputs, rows)
        reply: dict[str, Any] = {
            "id": request["id"],
            "status": "ok",
            "version": model.version,
            "classes": model.classes,
            "threshold": model.threshold,
            "probabilities": probabilities.round(6).tolist(),
            "verdicts": [
                self._verdict(model, image_id, row, grid, latency)
                for image_id, row, grid in zip(
                    request["image_ids"], probabilities, grids, strict=True
                )
            ],
            "latency_ms": round(latency, 3),
            "queued_ms": round((time.time() - request["enqueued_at"]) * 1000, 3),
        }
        if request.get("maps"):  # TF Serving's defect_map output: every row's grid
            reply["defect_maps"] = [None if g is None else np.round(g, 4).tolist() for g in grids]
        return reply

    def _verdict(
        self,
        model: LoadedModel,
        image_id: str | None,
        probabilities: Any,
        grid: Any,
        latency: float | None,
    ) -> dict[str, Any]:
        return verdicts.make_verdict(
            image_id,
            model.version,
            model.classes,
            probabilities,
            ok_labels=model.good,
            threshold=model.threshold,
            defect_map=grid,
            review_margin=self.settings.review_margin,
            review_type_below=self.settings.review_confidence_below,
            latency_ms=latency,
        )

    def _one_by_one(
        self, model: LoadedModel, request: dict[str, Any], payload: list[bytes]
    ) -> dict[str, Any]:
        try:
            started = time.perf_counter()
            outputs = model.predict(payload)
            return self._reply(
                model,
                request,
                outputs,
                slice(0, len(payload)),
                (time.perf_counter() - started) * 1000,
            )
        except Exception as exc:
            return {
                "id": request["id"],
                "status": "error",
                "code": "invalid_argument",
                "error": str(exc)[:300],
            }

    def _send(self, replies: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
        pipe = self.redis.pipeline(transaction=False)
        for request, reply in replies:
            if request.get("reply_to"):
                pipe.lpush(request["reply_to"], json.dumps(reply))
                pipe.expire(request["reply_to"], REPLY_TTL_SECONDS)
        pipe.execute()

    def _record(
        self,
        model: LoadedModel,
        request: dict[str, Any],
        outputs: dict[str, Any],
        rows: slice,
        latency: float,
        payload: list[bytes],
    ) -> None:
        probabilities, grids = _rows(outputs, rows)
        shadow = self.holder.shadow
        shadow_out = None
        if shadow is not None and shadow.version != model.version:
            try:
                shadow_out = shadow.predict(payload)
            except Exception as exc:
                log.warning("shadow version %d failed on a batch: %s", shadow.version, exc)
        for i, image_id in enumerate(request["image_ids"]):
            if image_id is None:
                continue
            verdict = self._verdict(model, image_id, probabilities[i], grids[i], latency)
            try:
                created = verdicts.record(self.store, verdict)
                if created:
                    self._count(request, i, image_id, verdict)
                if shadow_out is not None and shadow is not None:
                    shadow_maps = shadow_out.get("defect_map")
                    candidate = self._verdict(
                        shadow,
                        image_id,
                        shadow_out["probabilities"][i],
                        None if shadow_maps is None else shadow_maps[i],
                        None,
                    )
                    verdicts.record_shadow(
                        self.store, {**candidate, "production_label": verdict["label"]}
                    )
            except StoreError as exc:
                log.warning(
                    "verdict on %s not stored (%s); the reconciler will ask again", image_id, exc
                )

    def _count(
        self, request: dict[str, Any], i: int, image_id: str, verdict: dict[str, Any]
    ) -> None:
        lines = request.get("lines") or []
        line = (
            lines[i]
            if i < len(lines) and lines[i]
            else records.read_record(self.store, image_id).line
        )
        hour = verdict["decided_at"][:13]
        pipe = self.redis.pipeline(transaction=False)
        pipe.hincrby(STATS_VERDICTS, f"{line}|{verdict['label']}", 1)
        pipe.hincrby(STATS_HOURLY + line, f"{hour}|parts", 1)
        if verdict["defect"]:
            pipe.hincrby(STATS_HOURLY + line, f"{hour}|defects", 1)
        # Counters are a view for the console and /metrics; the verdicts are stored.
        with contextlib.suppress(redis_lib.RedisError):
            pipe.execute()


def _rows(outputs: dict[str, Any], rows: slice) -> tuple[Any, Any]:
    """One request's rows of a batch's probabilities and defect maps (None each where the
    version has no map)."""
    probabilities = outputs["probabilities"][rows]
    maps = outputs.get("defect_map")
    return probabilities, (maps[rows] if maps is not None else [None] * len(probabilities))
