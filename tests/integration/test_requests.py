"""The data-subject request registry: state machine, deadlines, isolation and audit, on both databases."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from shared.platform.errors import AppError
from shared.ports.tables import audit_log, dsr_requests
from shared.records import registry as dsr
from shared.records.audit import verify_chain

UTC = dt.UTC
T0 = dt.datetime(2027, 1, 31, 10, 0, tzinfo=UTC)


def new_account() -> str:
    return str(uuid.uuid4())


def create(engine, account_id: str | None = None, *, kind="erasure", channel="client_area", now=T0, **kw):
    with engine.begin() as conn:
        return dsr.create_request(
            conn, account_id=account_id or new_account(), kind=kind, channel=channel, now=now, **kw
        )


def move(engine, request_id: str, to_state: str, **kw):
    kw.setdefault("actor", "dpo")
    with engine.begin() as conn:
        return dsr.transition(conn, request_id, to_state, **kw)


def audit_rows(engine, request_id: str | None = None):
    query = sa.select(audit_log).order_by(audit_log.c.seq)
    if request_id:
        query = query.where(audit_log.c.request_id == request_id)
    with engine.connect() as conn:
        return conn.execute(query).all()


def count_requests(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(dsr_requests)).scalar()


def test_new_request_is_received_and_due_one_calendar_month_later(engine):
    account = new_account()
    record = create(engine, account, kind="access")

    assert record.state == dsr.RECEIVED
    assert record.received_at == T0
    assert record.due_at == dt.datetime(2027, 2, 28, 10, 0, tzinfo=UTC)
    assert record.effective_due_at == record.due_at
    assert record.to_json() == {
        "request_id": record.id,
        "kind": "access",
        "channel": "client_area",
        "state": "received",
        "received_at": "2027-01-31T10:00:00Z",
        "due_at": "2027-02-28T10:00:00Z",
        # A client-area request is verified by its step-up: until then it awaits identity.
        "identity": {"state": "awaiting_identity"},
    }
    [entry] = audit_rows(engine, record.id)
    assert (entry.action, entry.outcome) == ("request.created", "received")
    assert entry.subject_pseudonym == record.subject_pseudonym != account


def test_leap_year_deadline(engine):
    record = create(engine, now=dt.datetime(2028, 1, 31, tzinfo=UTC))
    assert record.due_at == dt.datetime(2028, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "channel", "code"),
    [("deletion", "client_area", "invalid_kind"), ("erasure", "fax", "invalid_channel")],
)
def test_unknown_kind_or_channel_is_a_400_and_writes_nothing(engine, kind, channel, code):
    with pytest.raises(AppError) as caught:
        create(engine, kind=kind, channel=channel)
    assert (caught.value.status, caught.value.code) == (400, code)
    assert count_requests(engine) == 0
    assert audit_rows(engine) == []


def test_request_and_audit_entry_share_the_transaction(engine):
    with pytest.raises(RuntimeError):
        with engine.begin() as conn:
            dsr.create_request(conn, account_id=new_account(), kind="access", channel="client_area", now=T0)
            raise RuntimeError("the caller fails after registering")
    assert count_requests(engine) == 0
    assert audit_rows(engine) == []


def test_full_erasure_lifecycle(engine):
    record = create(engine)
    for state in (dsr.VERIFIED, dsr.WAITING, dsr.IN_PROGRESS):
        record = move(engine, record.id, state, now=T0 + dt.timedelta(hours=1))
        assert record.closed_at is None
    record = move(
        engine, record.id, dsr.COMPLETED, details={"receipt": "receipts/x.json"}, now=T0 + dt.timedelta(days=8)
    )

    assert record.state == dsr.COMPLETED
    assert record.closed_at == T0 + dt.timedelta(days=8)
    assert record.details == {"receipt": "receipts/x.json"}
    assert record.to_json()["closed_at"] == "2027-02-08T10:00:00Z"
    transitions = [(r.details["from"], r.details["to"]) for r in audit_rows(engine, record.id)[1:]]
    assert transitions == [
        ("received", "verified"),
        ("verified", "waiting"),
        ("waiting", "in_progress"),
        ("in_progress", "completed"),
    ]
    with engine.connect() as conn:
        assert verify_chain(conn).ok


def test_forbidden_transition_is_409_and_changes_nothing(engine):
    record = create(engine)
    with pytest.raises(dsr.InvalidTransition) as caught:
        move(engine, record.id, dsr.COMPLETED)
    assert (caught.value.status, caught.value.code) == (409, "invalid_transition")
    with engine.connect() as conn:
        assert dsr.get_request(conn, record.id) == record
    assert len(audit_rows(engine, record.id)) == 1


@pytest.mark.parametrize("terminal", [dsr.COMPLETED, dsr.CANCELLED, dsr.REJECTED])
def test_terminal_states_cannot_be_overwritten(engine, terminal):
    record = create(engine, channel="retention")
    if terminal == dsr.COMPLETED:
        move(engine, record.id, dsr.IN_PROGRESS)
    closed = move(engine, record.id, terminal, reason="manifestly unfounded")
    for target in dsr.STATES:
        with pytest.raises(dsr.InvalidTransition):
            move(engine, record.id, target, reason="again")
    with engine.connect() as conn:
        assert dsr.get_request(conn, record.id) == closed


def test_identity_must_be_verified_before_work_starts(engine):
    client = create(engine, channel="client_area")
    with pytest.raises(dsr.InvalidTransition):
        move(engine, client.id, dsr.IN_PROGRESS)
    with pytest.raises(dsr.InvalidTransition):
        move(engine, client.id, dsr.WAITING)
    # The suite's own retention erasures need no identity proof.
    scheduled = create(engine, channel="retention")
    assert move(engine, scheduled.id, dsr.IN_PROGRESS).state == dsr.IN_PROGRESS


def test_rejection_needs_a_reason_that_is_not_personal_data(engine):
    record = create(engine)
    for reason, code in (
        (None, "reason_required"),
        ("   ", "reason_required"),
        ("call me on 06 12 34 56 78", "invalid_reason"),
    ):
        with pytest.raises(AppError) as caught:
            move(engine, record.id, dsr.REJECTED, reason=reason)
        assert (caught.value.status, caught.value.code) == (400, code)
    rejected = move(engine, record.id, dsr.REJECTED, reason="identity could not be verified")
    assert rejected.to_json()["reason"] == "identity could not be verified"


def test_unknown_target_state_is_a_400(engine):
    record = create(engine)
    with pytest.raises(AppError) as caught:
        move(engine, record.id, "done")
    assert (caught.value.status, caught.value.code) == (400, "invalid_state")


def test_another_accounts_request_looks_absent(engine):
    owner, other = new_account(), new_account()
    record = create(engine, owner)
    with engine.connect() as conn:
        assert dsr.get_request(conn, record.id, account_id=owner).id == record.id
        with pytest.raises(AppError) as foreign:
            dsr.get_request(conn, record.id, account_id=other)
        with pytest.raises(AppError) as absent:
            dsr.get_request(conn, str(uuid.uuid4()), account_id=other)
    assert foreign.value.status == absent.value.status == 404
    assert foreign.value.to_body() == absent.value.to_body()


def test_find_open_request_ignores_closed_ones_and_other_kinds(engine):
    account = new_account()
    first = create(engine, account, kind="access")
    with engine.connect() as conn:
        assert dsr.find_open_request(conn, account_id=account, kind="access").id == first.id
        assert dsr.find_open_request(conn, account_id=account, kind="erasure") is None
        assert dsr.find_open_request(conn, account_id=new_account(), kind="access") is None
    move(engine, first.id, dsr.CANCELLED)
    with engine.connect() as conn:
        assert dsr.find_open_request(conn, account_id=account, kind="access") is None


def test_one_open_request_per_account_and_kind(engine):
    account = new_account()
    first = create(engine, account, kind="erasure")
    with pytest.raises(AppError) as caught:
        create(engine, account, kind="erasure")
    assert (caught.value.status, caught.value.code) == (409, "request_already_open")
    assert create(engine, account, kind="access").kind == "access"
    move(engine, first.id, dsr.CANCELLED)
    assert create(engine, account, kind="erasure").state == dsr.RECEIVED


def test_concurrent_transitions_have_exactly_one_winner(engine):
    records = [create(engine) for _ in range(4)]
    for record in records:
        barrier = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def attempt(target: str, record=record, barrier=barrier, outcomes=outcomes) -> None:
            barrier.wait()
            try:
                outcomes[target] = move(engine, record.id, target, reason="duplicate")
            except AppError as exc:
                outcomes[target] = exc

        threads = [threading.Thread(target=attempt, args=(t,)) for t in (dsr.CANCELLED, dsr.REJECTED)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        winners = [state for state, outcome in outcomes.items() if isinstance(outcome, dsr.RequestRecord)]
        losers = [outcome for outcome in outcomes.values() if isinstance(outcome, AppError)]
        assert len(winners) == 1 and len(losers) == 1
        assert losers[0].status == 409 and losers[0].code in ("concurrent_update", "invalid_transition")
        with engine.connect() as conn:
            assert dsr.get_request(conn, record.id).state == winners[0]
        assert [r.details["to"] for r in audit_rows(engine, record.id)[1:]] == winners


def test_a_stale_writer_loses_on_the_version_check(engine, db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("needs row locks to hold the second writer at its update")
    record = create(engine)
    outcome: dict[str, object] = {}

    def second_writer() -> None:
        try:
            outcome["result"] = move(engine, record.id, dsr.CANCELLED)
        except AppError as exc:
            outcome["result"] = exc

    with engine.begin() as first:
        dsr.transition(first, record.id, dsr.VERIFIED, actor="client")
        thread = threading.Thread(target=second_writer)
        thread.start()
        # Wait until the second writer has read version 1 and waits on the row lock.
        # Up to 10 s: on a loaded machine (the suite runs on both cores) the thread may take a while to get there.
        with engine.connect() as probe:
            for _ in range(1000):
                waiting = probe.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
                    )
                ).scalar()
                # PostgreSQL caches pg_stat_activity for the rest of a transaction: end it to see fresh rows.
                probe.rollback()
                if waiting or not thread.is_alive():
                    break
                time.sleep(0.01)
        assert waiting, f"the second writer never blocked (it ended with {outcome.get('result')!r})"
    thread.join()

    assert isinstance(outcome["result"], AppError)
    assert (outcome["result"].status, outcome["result"].code) == (409, "concurrent_update")
    with engine.connect() as conn:
        assert dsr.get_request(conn, record.id).state == dsr.VERIFIED


def test_deadline_extension_once_or_twice_up_to_two_months(engine):
    record = create(engine)  # due 28 Feb 2027
    with engine.begin() as conn:
        once = dsr.extend_deadline(conn, record.id, months=1, reason="complex request", actor="dpo", now=T0)
    assert once.due_at == record.due_at
    assert once.extended_due_at == once.effective_due_at == dt.datetime(2027, 3, 28, 10, 0, tzinfo=UTC)
    assert once.to_json()["extended_due_at"] == "2027-03-28T10:00:00Z"
    assert once.to_json()["extension_reason"] == "complex request"

    with engine.begin() as conn:
        twice = dsr.extend_deadline(conn, record.id, months=1, reason="many requests", actor="dpo", now=T0)
    assert twice.extended_due_at == dt.datetime(2027, 4, 28, 10, 0, tzinfo=UTC)
    assert twice.extension_reason == "many requests"

    with pytest.raises(AppError) as caught, engine.begin() as conn:
        dsr.extend_deadline(conn, record.id, months=1, reason="more", actor="dpo", now=T0)
    assert (caught.value.status, caught.value.code) == (409, "extension_limit_reached")
    with engine.connect() as conn:
        assert dsr.get_request(conn, record.id) == twice
    extensions = [r for r in audit_rows(engine, record.id) if r.action == "request.deadline_extended"]
    assert [r.details["total_months"] for r in extensions] == [1, 2]


def test_two_month_extension_at_once_then_limit_reached(engine):
    record = create(engine, now=dt.datetime(2027, 2, 28, tzinfo=UTC))  # due 28 Mar
    with engine.begin() as conn:
        extended = dsr.extend_deadline(conn, record.id, months=2, reason="complex", actor="dpo", now=record.received_at)
    assert extended.extended_due_at == dt.datetime(2027, 5, 28, tzinfo=UTC)
    with pytest.raises(AppError) as caught, engine.begin() as conn:
        dsr.extend_deadline(conn, record.id, months=1, reason="complex", actor="dpo", now=record.received_at)
    assert caught.value.code == "extension_limit_reached"


@pytest.mark.parametrize(
    ("months", "reason", "status", "code"),
    [
        (3, "complex", 400, "invalid_months"),
        (0, "complex", 400, "invalid_months"),
        (1.5, "complex", 400, "invalid_months"),
        (1, "", 400, "reason_required"),
        (1, "ask jean.dupont@example.fr", 400, "invalid_reason"),
    ],
)
def test_bad_extension_is_refused_and_changes_nothing(engine, months, reason, status, code):
    record = create(engine)
    with pytest.raises(AppError) as caught, engine.begin() as conn:
        dsr.extend_deadline(conn, record.id, months=months, reason=reason, actor="dpo", now=T0)
    assert (caught.value.status, caught.value.code) == (status, code)
    with engine.connect() as conn:
        assert dsr.get_request(conn, record.id) == record


def test_extension_after_the_original_deadline_or_on_a_closed_request_is_refused(engine):
    late = create(engine)
    with pytest.raises(AppError) as caught, engine.begin() as conn:
        too_late = late.due_at + dt.timedelta(seconds=1)
        dsr.extend_deadline(conn, late.id, months=1, reason="complex", actor="dpo", now=too_late)
    assert (caught.value.status, caught.value.code) == (409, "extension_too_late")

    closed = create(engine)
    move(engine, closed.id, dsr.CANCELLED)
    with pytest.raises(AppError) as caught, engine.begin() as conn:
        dsr.extend_deadline(conn, closed.id, months=1, reason="complex", actor="dpo", now=T0)
    assert (caught.value.status, caught.value.code) == (409, "invalid_transition")
