"""The inference queue's wire protocol, and the client the API uses to ask for verdicts.

A request is a JSON header and the raw image bytes after it (:func:`pack`), pushed on a
Redis list: images are not base64-encoded for the queue (for a 200 KB JPEG that saved
the API and the worker about 1.8 ms of CPU per image). The inference worker answers on a
per-request reply list the client waits on with BLPOP, so a reply cannot go to the
wrong caller and a caller that gave up leaves only a key that expires. Redis holds
nothing here that matters once answered: verdicts of uploads are stored by the worker,
and uploads that never got one are queued again by the verdict reconciler.

No TensorFlow here: the API imports this module.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import redis as redis_lib

QUEUE = "inspector:inference:requests"
STATUS = "inspector:inference:status"
REGISTRY_CHANNEL = "inspector:registry"
REPLY_PREFIX = "inspector:inference:reply:"
# Counters for the console and /metrics (rebuildable from the stored verdicts).
STATS_VERDICTS = "inspector:stats:verdicts"  # field "<line>|<label>"
STATS_HOURLY = "inspector:stats:hourly:"  # + line; fields "<YYYY-mm-ddTHH>|parts|defects"
REPLY_TTL_SECONDS = 60
STATUS_MAX_AGE_SECONDS = 15.0


def request(
    *,
    images: Sequence[bytes] = (),
    image_ids: Sequence[str | None] = (),
    lines: Sequence[str | None] = (),
    target: str = "production",
    reply: bool = True,
    record: bool = False,
    deadline: float | None = None,
    maps: bool = False,
) -> dict[str, Any]:
    """A request: encoded images (or ids of stored images) to judge. With ``maps`` the
    reply carries every image's defect map (TF Serving's ``defect_map`` output); without,
    only the verdicts of defective or unsure parts carry theirs."""
    return {
        "id": uuid.uuid4().hex,
        "images": [bytes(b) for b in images],
        "image_ids": list(image_ids) or [None] * len(images),
        "lines": list(lines) or [None] * max(len(images), len(image_ids)),
        "target": target,
        "reply_to": f"{REPLY_PREFIX}{uuid.uuid4().hex}" if reply else None,
        "record": record,
        "enqueued_at": time.time(),
        "deadline": deadline,
        "maps": maps,
    }


def pack(req: dict[str, Any]) -> bytes:
    """The request on the wire: its JSON header (image sizes instead of images), a
    newline, then the images' bytes back to back."""
    images: list[bytes] = req["images"]
    header = {**req, "images": [len(b) for b in images]}
    return b"".join([json.dumps(header).encode(), b"\n", *images])


def unpack(data: bytes) -> dict[str, Any]:
    """The request :func:`pack` made (ValueError if ``data`` is not one)."""
    head, sep, body = data.partition(b"\n")  # json.dumps never writes a raw newline
    if not sep:
        raise ValueError("not an inference request: no header")
    req: dict[str, Any] = json.loads(head)
    sizes = req["images"]
    if sum(sizes) != len(body):
        raise ValueError(f"inference request {req.get('id')}: images truncated")
    images, offset = [], 0
    for size in sizes:
        images.append(body[offset : offset + size])
        offset += size
    req["images"] = images
    return req


class InferenceClient:
    """Pushes requests and waits for their replies, with a deadline."""

    def __init__(self, redis_url: str, connect_timeout: float = 1.0) -> None:
        self._redis = redis_lib.Redis.from_url(
            redis_url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=90,
            health_check_interval=30,
        )
        self._status_cache: tuple[float, dict[str, dict[str, Any]]] = (0.0, {})

    def workers(self, max_age: float = STATUS_MAX_AGE_SECONDS) -> dict[str, dict[str, Any]]:
        """Status of every inference worker seen in the last ``max_age`` seconds (cached 1 s)."""
        fetched_at, cached = self._status_cache
        if time.monotonic() - fetched_at < 1.0:
            return cached
        now = time.time()
        statuses: dict[str, dict[str, Any]] = {}
        try:
            raw: dict[bytes, bytes] = self._redis.hgetall(STATUS)  # type: ignore[assignment]
        except redis_lib.RedisError:
            raw = {}  # remembered for a second too: an outage must not slow every upload
        for name, value in raw.items():
            status = json.loads(value)
            if now - status.get("updated_at", 0) <= max_age:
                statuses[name.decode()] = status
        self._status_cache = (time.monotonic(), statuses)
        return statuses

    def serving_version(self) -> int | None:
        """The production version some live worker is serving, if any."""
        versions = [
            s.get("version") for s in self.workers().values() if s.get("state") == "AVAILABLE"
        ]
        return max((v for v in versions if v is not None), default=None)

    def call(self, req: dict[str, Any], timeout: float) -> dict[str, Any] | None:
        """Push ``req`` and wait up to ``timeout`` seconds for its reply (None: no reply)."""
        try:
            self._redis.lpush(QUEUE, pack(req))
            if not req["reply_to"]:
                return None
            # Redis treats a blocking timeout under 1 ms as "forever"; it wakes the caller
            # as soon as the reply is pushed, so a small floor costs nothing.
            answer = self._redis.blpop([req["reply_to"]], timeout=max(timeout, 0.01))
        except redis_lib.RedisError:
            return None
        return json.loads(answer[1]) if answer else None

    def send(self, req: dict[str, Any]) -> bool:
        """Push ``req`` without waiting (e.g. the reconciler's requests)."""
        try:
            self._redis.lpush(QUEUE, pack(req))
        except redis_lib.RedisError:
            return False
        return True

    def verdict_counts(self) -> dict[tuple[str, str], int]:
        """(line, label) → verdicts recorded."""
        try:
            raw: dict[bytes, bytes] = self._redis.hgetall(STATS_VERDICTS)  # type: ignore[assignment]
        except redis_lib.RedisError:
            return {}
        counts = {}
        for field, value in raw.items():
            line, _, label = field.decode().partition("|")
            counts[(line, label)] = int(value)
        return counts

    def hourly(self, line: str) -> dict[str, dict[str, int]]:
        """hour → {"parts": n, "defects": m} for one line."""
        try:
            raw: dict[bytes, bytes] = self._redis.hgetall(STATS_HOURLY + line)  # type: ignore[assignment]
        except redis_lib.RedisError:
            return {}
        series: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            hour, _, kind = field.decode().partition("|")
            series.setdefault(hour, {"parts": 0, "defects": 0})[kind] = int(value)
        return dict(sorted(series.items()))

    def queue_lengths(self, names: Sequence[str]) -> dict[str, int]:
        """Messages waiting in each Redis list (Celery queues, the inference queue)."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            for name in names:
                pipe.llen(name)
            return {name: int(n) for name, n in zip(names, pipe.execute(), strict=True)}
        except redis_lib.RedisError:
            return {}

    def get_json(self, key: str) -> dict[str, Any] | None:
        """A JSON document workers published in Redis (e.g. a run's progress), if any."""
        try:
            raw = self._redis.get(key)
        except redis_lib.RedisError:
            return None
        return dict(json.loads(raw)) if raw else None

    def notify_registry_change(self) -> None:
        """Tell inference workers to re-read the registry now (they also poll)."""
        # If this fails they still poll the production alias every few seconds.
        with contextlib.suppress(redis_lib.RedisError):
            self._redis.publish(REGISTRY_CHANNEL, b"changed")
