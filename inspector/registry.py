"""Model versions and aliases in the object store.

    models/numbers/<n:06d>                         claims version number n (create-if-absent)
    models/versions/<n:06d>/...                    the version's files (payload, written first)
    models/versions/<n:06d>/version.json           the version document (written last)
    models/run-keys/<run_key>.json                 run key → version, for idempotent runs
    models/aliases/<alias>.json                    small pointer documents (production, …)

Numbers are claimed with create-if-absent, so two runs finishing at once never get the
same number (a number whose version never completed is skipped, not reused). A version
is visible only once its ``version.json`` exists, and is never modified afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inspector import records
from inspector.errors import InspectorError
from storage import NotFound, ObjectStore

log = logging.getLogger(__name__)

NUMBERS_PREFIX = "models/numbers/"
VERSIONS_PREFIX = "models/versions/"
RUN_KEYS_PREFIX = "models/run-keys/"
ALIASES_PREFIX = "models/aliases/"
VERSION_DOC = "version.json"


class VersionNotFound(InspectorError):
    """No such model version (or it never finished publishing)."""

    code = "version_not_found"


def version_prefix(number: int) -> str:
    """The key prefix of a version's files."""
    return f"{VERSIONS_PREFIX}{number:06d}/"


def claim_version_number(store: ObjectStore) -> int:
    """The next free version number, claimed atomically."""
    taken = [int(records.id_from_key(info.key)) for info in store.list(NUMBERS_PREFIX)]
    number = max(taken, default=0) + 1
    while not store.put_if_absent(f"{NUMBERS_PREFIX}{number:06d}", b"", "text/plain"):
        number += 1
    return number


def publish_version(
    store: ObjectStore, number: int, files: Mapping[str, Path], doc: Mapping[str, Any]
) -> dict[str, Any]:
    """Upload a version's files, then its document; the version exists only after that."""
    prefix = version_prefix(number)
    names = sorted(files)
    # saved_model.pb last among the payload, as TFX's Pusher does: a loader that looks
    # for it never finds a half-copied SavedModel.
    names.sort(key=lambda name: name.endswith("saved_model.pb"))
    for name in names:
        store.put_file(prefix + name, files[name])
    full = {**doc, "version": number, "files": names, "published_at": records.now_utc().isoformat()}
    if not store.put_if_absent(prefix + VERSION_DOC, records.to_json(full), "application/json"):
        raise InspectorError(f"version {number} was published twice", code="version_exists")
    run_key = doc.get("run_key")
    if run_key:
        store.put_if_absent(
            f"{RUN_KEYS_PREFIX}{run_key}.json",
            records.to_json({"version": number}),
            "application/json",
        )
    log.info("published model version %d (%d files)", number, len(names))
    return full


def get_version(store: ObjectStore, number: int) -> dict[str, Any]:
    """A published version's document, or :class:`VersionNotFound`."""
    try:
        return records.read_json(store, version_prefix(number) + VERSION_DOC)
    except NotFound as exc:
        raise VersionNotFound(f"no model version {number}") from exc


def list_versions(store: ObjectStore) -> list[dict[str, Any]]:
    """Every published version, oldest first."""
    return [
        records.read_json(store, info.key)
        for info in store.list(VERSIONS_PREFIX)
        if info.key.endswith("/" + VERSION_DOC) and info.key.count("/") == 3
    ]


def version_for_run_key(store: ObjectStore, run_key: str) -> int | None:
    """The version a finished run with this key produced, if any."""
    try:
        return int(records.read_json(store, f"{RUN_KEYS_PREFIX}{run_key}.json")["version"])
    except NotFound:
        return None


def alias(store: ObjectStore, name: str) -> int | None:
    """The version an alias (``production``, ``previous``) points at, if set."""
    try:
        return int(records.read_json(store, f"{ALIASES_PREFIX}{name}.json")["version"])
    except NotFound:
        return None


def download_file(store: ObjectStore, number: int, name: str, dest: Path) -> Path:
    """One file of a version, downloaded to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    store.get_file(version_prefix(number) + name, dest)
    return dest


def download_directory(store: ObjectStore, number: int, name: str, dest: Path) -> Path:
    """A directory of a version (e.g. ``saved_model``), downloaded under ``dest``."""
    prefix = version_prefix(number) + name.rstrip("/") + "/"
    for info in store.list(prefix):
        target = dest / info.key[len(prefix) :]
        target.parent.mkdir(parents=True, exist_ok=True)
        store.get_file(info.key, target)
    return dest
