"""The registry's state machine, aliases and audit log, on both real stores."""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest

from inspector import records, registry
from inspector.registry import TRANSITIONS, IllegalTransition


@pytest.fixture(params=["local", "s3"])
def store(request):
    return request.getfixturevalue(f"{request.param}_store")


def publish(store, n_versions: int) -> None:
    for _ in range(n_versions):
        number = registry.claim_version_number(store)
        registry.publish_version(store, number, {}, {"classes": ["ok", "pit"], "snapshot_id": "s"})


def go(store, number, *actions, role="operator"):
    for action in actions:
        registry.transition(store, number, action, actor="alice", role=role, reason=f"{action} it")


def put_in_state(store, number: int, state: str) -> None:
    """Drive version ``number`` into ``state`` by legal steps."""
    paths = {
        "evaluating": ["register"],
        "gate_failed": ["register", "gate_failed"],
        "awaiting_approval": ["register", "gate_passed"],
        "rejected": ["register", "gate_passed", "reject"],
        "production": ["register", "gate_passed", "approve"],
        "load_failed": ["register", "gate_passed", "load_failed"],
    }
    go(store, number, *paths[state])


def test_version_numbers_are_claimed_once_even_concurrently(local_store):
    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(lambda _: registry.claim_version_number(local_store), range(40)))
    assert sorted(numbers) == list(range(1, 41))


def test_a_version_is_visible_only_with_its_document(local_store, tmp_path):
    payload = tmp_path / "model.keras"
    payload.write_bytes(b"weights")
    number = registry.claim_version_number(local_store)
    assert registry.list_versions(local_store) == []
    registry.publish_version(local_store, number, {"model.keras": payload}, {"run_key": "k1"})
    assert [v["version"] for v in registry.list_versions(local_store)] == [number]
    assert registry.version_for_run_key(local_store, "k1") == number


@pytest.mark.parametrize(
    ("start", "action"),
    [
        (state, action)
        for state, action in itertools.product(
            [
                "evaluating",
                "gate_failed",
                "awaiting_approval",
                "rejected",
                "production",
                "load_failed",
            ],
            TRANSITIONS,
        )
        if state not in TRANSITIONS[action][0] and action != "register"
    ],
)
def test_every_illegal_transition_is_refused_and_logs_nothing(local_store, start, action):
    publish(local_store, 1)
    put_in_state(local_store, 1, start)
    before = registry.audit_log(local_store)
    with pytest.raises(IllegalTransition):
        registry.transition(local_store, 1, action, actor="mallory", role="operator", reason="try")
    assert registry.audit_log(local_store) == before
    assert registry.read_state(local_store).state_of(1) == start


def test_approve_then_approve_retires_and_rollback_restores(store):
    publish(store, 3)
    for number in (1, 2, 3):
        go(store, number, "register", "gate_passed")
    go(store, 1, "approve")
    assert registry.read_state(store).aliases == {"production": 1}
    go(store, 2, "approve")
    state = registry.read_state(store)
    assert state.aliases == {"production": 2, "previous": 1}
    assert (state.state_of(1), state.state_of(2), state.state_of(3)) == (
        "retired",
        "production",
        "awaiting_approval",
    )
    with pytest.raises(IllegalTransition, match="rollback needs retired"):
        go(store, 3, "rollback")
    go(store, 1, "rollback")
    state = registry.read_state(store)
    assert state.aliases == {"production": 1, "previous": 2}
    assert (state.state_of(1), state.state_of(2)) == ("production", "retired")
    assert [s for s in state.states.values()].count("production") == 1


def test_a_production_version_that_fails_to_load_hands_back_to_the_previous(local_store):
    publish(local_store, 2)
    put_in_state(local_store, 1, "production")
    put_in_state(local_store, 2, "production")
    go(local_store, 2, "load_failed")
    state = registry.read_state(local_store)
    assert state.aliases == {"production": 1}
    assert (state.state_of(1), state.state_of(2)) == ("production", "load_failed")


def test_the_audit_log_records_who_when_what_and_why(local_store):
    publish(local_store, 1)
    registry.transition(
        local_store, 1, "register", actor="inspector", role="system", reason="trained"
    )
    registry.transition(
        local_store, 1, "gate_passed", actor="inspector", role="system", reason="ok", report_id="r1"
    )
    registry.transition(
        local_store,
        1,
        "approve",
        actor="alice",
        role="operator",
        reason="looks good",
        report_id="r1",
    )
    log = registry.audit_log(local_store)
    assert [e["seq"] for e in log] == [1, 2, 3]
    last = log[-1]
    assert (
        last["actor"],
        last["role"],
        last["from_state"],
        last["to_state"],
        last["reason"],
        last["report_id"],
    ) == ("alice", "operator", "awaiting_approval", "production", "looks good", "r1")
    assert last["at"] and last["production_before"] is None
    # Append-only: an event's key can never be written again.
    assert not local_store.put_if_absent(
        "models/registry/0000000003.json", records.to_json({"forged": True})
    )


def test_concurrent_approvals_and_rollbacks_leave_exactly_one_production(local_store):
    publish(local_store, 6)
    for number in range(1, 7):
        go(local_store, number, "register", "gate_passed")
    go(local_store, 1, "approve")

    def attempt(job):
        action, number = job
        try:
            if action == "rollback":
                previous = registry.alias(local_store, "previous")
                if previous is not None:
                    registry.transition(
                        local_store, previous, "rollback", actor="bob", role="operator", reason="r"
                    )
            else:
                registry.transition(
                    local_store, number, "approve", actor="alice", role="operator", reason="a"
                )
        except IllegalTransition:
            pass

    jobs = [("approve", n) for n in range(2, 7)] + [("rollback", 0)] * 5
    with ThreadPoolExecutor(10) as pool:
        list(pool.map(attempt, jobs))
    state = registry.read_state(local_store)
    assert list(state.states.values()).count("production") == 1
    assert state.state_of(state.aliases["production"]) == "production"
    log = registry.audit_log(local_store)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    # Replaying the log event by event, every change started from the state it says.
    states: dict[int, str] = {}
    aliases: dict[str, int] = {}
    for event in log:
        assert states.get(event["version"], "training") == event["from_state"]
        registry._apply(states, aliases, {}, event)


def test_rollback_goes_only_to_the_previous_production_version(local_store):
    publish(local_store, 3)
    for number in (1, 2, 3):
        put_in_state(local_store, number, "production")
    with pytest.raises(IllegalTransition, match="previous production version is 2"):
        go(local_store, 1, "rollback")
