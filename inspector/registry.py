"""Model versions and aliases in the object store.

    models/numbers/<n:06d>                         claims version number n (create-if-absent)
    models/versions/<n:06d>/...                    the version's files (payload, written first)
    models/versions/<n:06d>/version.json           the version document (written last)
    models/run-keys/<run_key>.json                 run key → version, for idempotent runs
    models/registry/<seq>.json                     the append-only log of state changes

Numbers are claimed with create-if-absent, so two runs finishing at once never get the
same number (a number whose version never completed is skipped, not reused). A version
is visible only once its ``version.json`` exists, and is never modified afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspector import records
from inspector.errors import InspectorError
from storage import NotFound, ObjectStore

log = logging.getLogger(__name__)

NUMBERS_PREFIX = "models/numbers/"
VERSIONS_PREFIX = "models/versions/"
RUN_KEYS_PREFIX = "models/run-keys/"
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
    return read_state(store).aliases.get(name)


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


# --- states, transitions and the audit log ----------------------------------------------
#
# Every registry change is one event, appended to models/registry/<seq>.json with
# create-if-absent on the next sequence number: that is the single-writer lock. Two
# writers racing for a number cannot both win; the loser re-reads the log, re-checks
# that its change is still legal, and tries the next number. The current state of
# every version and the aliases are a fold over the log; nothing in it is rewritten,
# so the log is also the audit trail. Redis is not involved: losing it loses nothing.

LOG_PREFIX = "models/registry/"
STATES = (
    "training",
    "evaluating",
    "gate_failed",
    "awaiting_approval",
    "rejected",
    "production",
    "retired",
    "load_failed",
)

# action → (states it may start from, state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "register": (frozenset({"training"}), "evaluating"),
    "gate_passed": (frozenset({"evaluating"}), "awaiting_approval"),
    "gate_failed": (frozenset({"evaluating"}), "gate_failed"),
    "reevaluate": (frozenset({"awaiting_approval", "gate_failed"}), "evaluating"),
    "approve": (frozenset({"awaiting_approval"}), "production"),
    "override": (frozenset({"gate_failed"}), "production"),
    "reject": (frozenset({"awaiting_approval", "gate_failed"}), "rejected"),
    "rollback": (frozenset({"retired"}), "production"),
    "load_failed": (frozenset({"awaiting_approval", "production"}), "load_failed"),
}


class IllegalTransition(InspectorError):
    """The change is not allowed from the version's current state."""

    code = "illegal_transition"


class RegistryBusy(InspectorError):
    """Too many concurrent changes; try again."""

    code = "registry_busy"


@dataclass(frozen=True)
class RegistryState:
    """The fold of the log: each version's state, the aliases, the thresholds operators
    set when approving, and the last sequence."""

    states: dict[int, str]
    aliases: dict[str, int]
    seq: int
    events: tuple[dict[str, Any], ...]
    thresholds: dict[int, float] = field(default_factory=dict)

    def state_of(self, number: int) -> str:
        """A version's state; a published version with no event yet is being evaluated."""
        return self.states.get(number, "evaluating")


def _apply(
    states: dict[int, str],
    aliases: dict[str, int],
    thresholds: dict[int, float],
    event: dict[str, Any],
) -> None:
    number = int(event["version"])
    states[number] = event["to_state"]
    if event.get("threshold") is not None:
        thresholds[number] = float(event["threshold"])
    aliases.clear()
    aliases.update({k: int(v) for k, v in event.get("aliases", {}).items()})
    for other, state in list(states.items()):
        if other != number and state == "production" and aliases.get("production") != other:
            states[other] = "retired"
    if "production" in aliases:  # e.g. handed back after the production version failed to load
        states[aliases["production"]] = "production"


def read_state(store: ObjectStore) -> RegistryState:
    """The registry now, folded from its log."""
    states: dict[int, str] = {}
    aliases: dict[str, int] = {}
    thresholds: dict[int, float] = {}
    events = []
    for info in store.list(LOG_PREFIX):
        event = records.read_json(store, info.key)
        _apply(states, aliases, thresholds, event)
        events.append(event)
    seq = int(events[-1]["seq"]) if events else 0
    return RegistryState(states, aliases, seq, tuple(events), thresholds)


# Versions from before operating thresholds were judged by their most probable class;
# judged on P(defect) they get the threshold that is closest to that.
LEGACY_THRESHOLD = 0.5


def version_threshold(doc: Mapping[str, Any]) -> float | None:
    """The threshold a version was exported with (None: it has no good class)."""
    point = doc.get("operating_point")
    if point is None:
        return LEGACY_THRESHOLD
    return None if point.get("threshold") is None else float(point["threshold"])


def effective_threshold(
    store: ObjectStore, number: int, state: RegistryState | None = None
) -> float | None:
    """The threshold a version judges with now: the one an operator set when approving
    it, else the one chosen at training."""
    state = state or read_state(store)
    if number in state.thresholds:
        return state.thresholds[number]
    return version_threshold(get_version(store, number))


def _next_aliases(current: dict[str, int], action: str, number: int) -> dict[str, int]:
    aliases = dict(current)
    if action in ("approve", "override"):
        if "production" in aliases:
            aliases["previous"] = aliases["production"]
        aliases["production"] = number
    elif action == "rollback":
        aliases["previous"], aliases["production"] = aliases["production"], number
    elif action == "load_failed" and aliases.get("production") == number:
        # A production version that cannot load hands production back to the previous one.
        if "previous" in aliases:
            aliases["production"] = aliases.pop("previous")
        else:
            aliases.pop("production")
    return aliases


def transition(
    store: ObjectStore,
    number: int,
    action: str,
    *,
    actor: str,
    role: str,
    reason: str = "",
    report_id: str | None = None,
    extra: Mapping[str, Any] | None = None,
    expected_production: int | str | None = "any",
    attempts: int = 50,
) -> dict[str, Any]:
    """Apply one change atomically and append it to the audit log; the event written.

    ``expected_production`` (a version, or None for "no production") is checked against
    the same state the change is made from, so an approval based on a comparison with
    one production version cannot land after another one took its place.
    """
    if action not in TRANSITIONS:
        raise IllegalTransition(f"unknown action {action!r}")
    if action != "register":
        get_version(store, number)
    allowed, to_state = TRANSITIONS[action]
    for _ in range(attempts):
        state = read_state(store)
        current = (
            "training"
            if action == "register" and number not in state.states
            else state.state_of(number)
        )
        if current not in allowed:
            raise IllegalTransition(
                f"cannot {action} version {number}: it is {current}; {action} needs "
                f"{' or '.join(sorted(allowed))}"
            )
        if expected_production != "any" and state.aliases.get("production") != expected_production:
            raise IllegalTransition(
                f"cannot {action} version {number}: it was compared with production version "
                f"{expected_production}, but production is now {state.aliases.get('production')}; "
                "assess it again first",
                code="stale_report",
            )
        if action == "rollback" and state.aliases.get("previous") != number:
            raise IllegalTransition(
                f"cannot roll back to version {number}: the previous production version is "
                f"{state.aliases.get('previous', 'none')}"
            )
        aliases = _next_aliases(state.aliases, action, number)
        event = {
            "seq": state.seq + 1,
            "action": action,
            "version": number,
            "from_state": current,
            "to_state": to_state,
            "actor": actor,
            "role": role,
            "at": records.now_utc().isoformat(),
            "reason": reason,
            "report_id": report_id,
            "aliases": aliases,
            "production_before": state.aliases.get("production"),
            **dict(extra or {}),
        }
        if store.put_if_absent(
            f"{LOG_PREFIX}{event['seq']:010d}.json", records.to_json(event), "application/json"
        ):
            log.info(
                "registry: %s version %d (%s → %s) by %s: %s",
                action,
                number,
                current,
                to_state,
                actor,
                reason,
            )
            return event
    raise RegistryBusy("the registry changed too often while trying; try again")


def audit_log(store: ObjectStore) -> list[dict[str, Any]]:
    """Every registry change, oldest first."""
    return list(read_state(store).events)
