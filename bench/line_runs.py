"""The two ways bench/real_lines.py plays a line: through the running service's public
API, exactly as a plant would (:class:`ServiceLine`), and the same steps in one process
through the domain functions (:class:`InProcessLine`), for the same images and so the
same split (the split is a function of each image's content hash).

A day: add the day's new classes, upload its labelled parts, start a training run from
the production model, wait for it and its assessment, approve the version (an admin's
override, recorded as such, when the gate fails), then send the held-back parts
unlabelled and keep their verdicts.
"""

from __future__ import annotations

import base64
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.line_scoring import Judged
from bench.lines import Item
from bench.service import Service
from inspector.defect_maps import DefectMap

CAPTURED_AT = "2026-12-01T08:00:00Z"
TOKENS = {"camera": "dev-camera", "operator": "dev-operator", "admin": "dev-admin"}


@dataclass(frozen=True)
class DayResult:
    """What one day's training run gave."""

    state: str  # succeeded | failed
    version: int | None
    run_seconds: float | None
    assess_seconds: float | None
    sentence: str
    blessed: bool
    approved_by: str  # approve | override | -
    message: str = ""
    threshold: float | None = None
    spec: dict[str, int] | None = None


@dataclass(frozen=True)
class Retrained:
    """A run from scratch on every day's parts, for comparison with the last warm start."""

    seconds: float
    version: int


def _metadata(item: Item) -> dict[str, str]:
    return {
        "line": "bench-line",
        "station": "st-1",
        "camera_id": "cam-1",
        "part_id": item.name[:64],
        "captured_at": CAPTURED_AT,
    }


# --- through the public API ------------------------------------------------------------


class ServiceLine:
    """`inspector run` on a fresh data directory, driven over HTTP. Only production's
    verdicts can be asked for, so the retrain is not scored."""

    def __init__(self, workdir: Path, policy: Path, config: dict[str, Any]) -> None:
        self.service = Service({"INSPECTOR_GATE_POLICY": str(policy)}, workdir)
        self.config = config
        self.http = httpx.Client(timeout=60)

    def __enter__(self) -> ServiceLine:
        self.service.start()
        self.url = self.service.base_url
        return self

    def __exit__(self, *_: Any) -> None:
        self.http.close()
        self.service.stop()

    def _call(self, method: str, path: str, role: str = "operator", **kw: Any) -> Any:
        headers = {"Authorization": f"Bearer {TOKENS[role]}"}
        response = self.http.request(method, f"{self.url}{path}", headers=headers, **kw)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()

    def _post_image(self, item: Item, label: str | None) -> dict[str, Any]:
        data = {**_metadata(item), **({"label": label} if label else {})}
        files = {"file": (item.path.name, item.path.read_bytes())}
        with httpx.Client(timeout=60) as client:
            response = client.post(
                f"{self.url}/v1/images",
                headers={"Authorization": f"Bearer {TOKENS['camera']}"},
                data=data,
                files=files,
            )
        if response.status_code not in (200, 201):
            raise RuntimeError(f"upload of {item.path}: {response.status_code} {response.text}")
        return dict(response.json())

    def upload_day(self, items: tuple[Item, ...], classes: list[str]) -> None:
        """New classes, then the day's labelled parts (4 cameras at once); waits for ingest."""
        for name in classes:
            self._call("POST", "/v1/classes", json={"name": name})
        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(lambda i: self._post_image(i, i.label)["image_id"], items))
        pending = set(ids)
        deadline = time.monotonic() + 600
        while pending and time.monotonic() < deadline:
            with ThreadPoolExecutor(4) as pool:
                states = dict(
                    zip(
                        pending,
                        pool.map(
                            lambda i: self._call("GET", f"/v1/images/{i}")["ingest"]["state"],
                            list(pending),
                        ),
                        strict=True,
                    )
                )
            pending = {i for i, state in states.items() if state != "done"}
            if pending:
                time.sleep(1)
        if pending:
            raise RuntimeError(f"{len(pending)} uploads were not ingested within 10 minutes")

    def train(self, reason: str) -> DayResult:
        """A run from production, its assessment, and the approval (or an override)."""
        run = self._call(
            "POST",
            "/v1/training-runs",
            json={"parent": "production", "reason": reason, "config": self.config},
        )
        run = self._wait_run(run["url"])
        result = run.get("result") or {}
        if run["state"] != "succeeded":
            return DayResult("failed", None, None, None, "", False, "-", result.get("message", ""))
        number = int(result["version"])
        started = time.monotonic()
        path = f"/v1/models/inspector/versions/{number}"
        while (view := self._call("GET", path))["state"] in ("evaluating", "training"):
            time.sleep(2)
        assessed = time.monotonic() - started
        report = self._call("GET", f"{path}/report")
        blessed = bool(report["blessed"])
        body: dict[str, Any] = {"reason": "bench/real_lines.py: the plant approves"}
        if not blessed:
            body = {
                "reason": "bench/real_lines.py: gate failed; admin override to measure it",
                "override": True,
            }
        self._call(
            "POST", f"{path}:approve", role="admin" if not blessed else "operator", json=body
        )
        self._wait_serving(number)
        doc = self._call("GET", path)
        return DayResult(
            "succeeded",
            number,
            float(result.get("seconds") or 0),
            round(assessed, 1),
            report["sentence"],
            blessed,
            "approve" if blessed else "override",
            threshold=view.get("threshold"),
            spec=doc.get("input"),
        )

    def retrain(self, reason: str) -> Retrained | None:
        """A run from scratch on everything labelled (not approved)."""
        run = self._call(
            "POST",
            "/v1/training-runs",
            json={"parent": "none", "reason": reason, "config": self.config},
        )
        run = self._wait_run(run["url"])
        result = run.get("result") or {}
        if run["state"] != "succeeded":
            return None
        return Retrained(float(result["seconds"]), int(result["version"]))

    def _wait_run(self, url: str) -> dict[str, Any]:
        while (run := self._call("GET", url))["state"] in ("queued", "running"):
            time.sleep(2)
        return dict(run)

    def _wait_serving(self, number: int) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            status = self._call("GET", "/v1/models/inspector", role="camera")
            if any(
                row["version"] == str(number) and row["state"] == "AVAILABLE"
                for row in status["model_version_status"]
            ):
                return
            time.sleep(1)
        raise RuntimeError(f"version {number} was not served within 5 minutes")

    def judge(self, items: tuple[Item, ...]) -> list[Judged]:
        """Send the held-back parts unlabelled; their verdicts. An upload of bytes seen
        before answers with the verdict stored then (a camera's retry is idempotent), so a
        part judged by an earlier version is judged again by production's ``:predict``."""
        status = self._call("GET", "/v1/models/inspector/labels/production", role="camera")
        serving = str(status["model_version_status"][0]["version"])

        def one(item: Item) -> Judged:
            answer = self._post_image(item, None)
            stored = answer.get("verdict")
            if answer["duplicate"] and stored and str(stored["model_version"]) != serving:
                return Judged(item, self._predict(item))
            verdict, url = stored, answer["verdict_url"]
            # Only the upload's reply names the verdict's URL; the URL's replies do not.
            deadline = time.monotonic() + 120
            while verdict is None or answer.get("verdict_status") == "pending":
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no verdict for {item.name} within 120 s: {answer}")
                time.sleep(0.2)
                answer = self._call("GET", url, role="camera")
                verdict = answer.get("verdict")
            return Judged(item, verdict)

        with ThreadPoolExecutor(4) as pool:
            return list(pool.map(one, items))

    def _predict(self, item: Item) -> dict[str, Any]:
        """Production's verdict on one image through the TF Serving-style API, in the
        fields the upload's verdict has."""
        image = base64.b64encode(item.path.read_bytes()).decode()
        answer = self._call(
            "POST",
            "/v1/models/inspector:predict",
            role="camera",
            json={"instances": [{"b64": image}]},
        )
        row = answer["predictions"][0]
        verdict = {key: row[key] for key in ("label", "confidence", "p_defect", "defect")}
        verdict["model_version"] = int(answer["model_spec"]["version"])
        if row.get("defect_map") is not None:
            verdict["defect_map"] = DefectMap.from_grid(np.array(row["defect_map"])).to_doc()
        return verdict


# --- in one process, through the domain functions ----------------------------------------


class InProcessLine:
    """The same steps on a LocalStore in this process (TensorFlow loads here). Any
    version's verdicts can be had here, not only production's: the retrain is scored."""

    def __init__(self, workdir: Path, policy: Path, config: dict[str, Any]) -> None:
        from inspector import gating
        from inspector.train_config import TrainConfig
        from storage.local import LocalStore

        self.store = LocalStore(workdir / "store")
        self.cache = workdir / "cache"
        self.policy = gating.load_policy(policy)
        self.policy_source = str(policy)
        self.config = TrainConfig(**config)

    def __enter__(self) -> InProcessLine:
        return self

    def __exit__(self, *_: Any) -> None:
        pass

    def upload_day(self, items: tuple[Item, ...], classes: list[str]) -> None:
        """New classes, then the day's labelled parts, accepted and ingested."""
        from inspector import ingest, records
        from inspector.records import UploadMetadata
        from inspector.uploads import accept_upload

        for name in classes:
            records.add_class(self.store, name, "", "bench")
        for item in items:
            meta = UploadMetadata.parse(**_metadata(item))
            result = accept_upload(
                self.store, item.path.read_bytes(), meta, uploaded_by="bench", label=item.label
            )
            ingest.ingest_image(self.store, result.record.image_id, ingest.CanonicalSpec())

    def train(self, reason: str) -> DayResult:
        """A run from production, its assessment, and the approval (or an override)."""
        from inspector import promotion, registry, training

        request = training.request_run(self.store, by="bench", config=self.config, reason=reason)
        result = training.execute_run(self.store, request["run_id"], cache_dir=self.cache)
        if result["state"] != "succeeded":
            return DayResult("failed", None, None, None, "", False, "-", result.get("message", ""))
        number = int(result["version"])
        started = time.monotonic()
        report = promotion.assess(
            self.store,
            number,
            policy=self.policy,
            cache_dir=self.cache,
            policy_source=self.policy_source,
        )
        assessed = time.monotonic() - started
        blessed = bool(report["blessed"])
        promotion.approve(
            self.store,
            number,
            actor="bench",
            role="admin" if not blessed else "operator",
            reason="bench/real_lines.py",
            override=not blessed,
        )
        doc = registry.get_version(self.store, number)
        return DayResult(
            "succeeded",
            number,
            float(result["seconds"]),
            round(assessed, 1),
            report["sentence"],
            blessed,
            "approve" if blessed else "override",
            threshold=registry.effective_threshold(self.store, number),
            spec=doc["input"],
        )

    def retrain(self, reason: str) -> Retrained | None:
        """A run from scratch on everything labelled (not approved)."""
        from inspector import training

        request = training.request_run(
            self.store, by="bench", config=self.config, parent="none", reason=reason
        )
        result = training.execute_run(self.store, request["run_id"], cache_dir=self.cache)
        if result["state"] != "succeeded":
            return None
        return Retrained(float(result["seconds"]), int(result["version"]))

    def judge(self, items: tuple[Item, ...], version: int | None = None) -> list[Judged]:
        """The verdicts of ``version`` (default: production's) on the held-back parts, made
        as the inference worker makes them."""
        from inspector import registry, serving, verdicts
        from inspector.export import ServingModel

        number = version or registry.alias(self.store, "production")
        assert number is not None, "no production version"
        doc = registry.get_version(self.store, number)
        saved = registry.download_directory(
            self.store, number, "saved_model", self.cache.parent / f"v{number}" / "saved_model"
        )
        model = ServingModel(saved)
        threshold = registry.effective_threshold(self.store, number)
        judged = []
        for start in range(0, len(items), 16):
            chunk = items[start : start + 16]
            out = model.predict_bytes([i.path.read_bytes() for i in chunk])
            for k, item in enumerate(chunk):
                verdict = verdicts.make_verdict(
                    None,
                    number,
                    doc["classes"],
                    out["probabilities"][k],
                    ok_labels=serving.good_classes(doc),
                    threshold=threshold,
                    defect_map=out["defect_map"][k],
                )
                judged.append(Judged(item, verdict))
        return judged
