"""The life of one export as a table (`core.lifecycle`): rows for each move, and Hypothesis runs
of random event sequences for the guide's rules (never two submits of one fingerprint, never a
replay the guard refuses, every life saved, ended with a reason, or waiting on an action)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reportexport_async.core.lifecycle import (
    Attached,
    Claim,
    Claimed,
    ClaimedElsewhere,
    Defer,
    Download,
    DownloadGone,
    Due,
    End,
    Event,
    Forget,
    Found,
    IllegalTransition,
    Inspect,
    JobUnknown,
    Life,
    NotReady,
    Phase,
    Replay,
    Replayed,
    Saved,
    Status,
    Submit,
    Submitted,
    Terms,
    Track,
    WaitForClaim,
    begin,
    step,
)
from reportexport_async.core.models import JobStatus
from reportexport_async.core.replay import ReplayPolicy, check_replay

T0 = datetime(2025, 3, 10, 13, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
S = JobStatus


def run(events: list[Event], terms: Terms | None = None, *, at: datetime = T0) -> Life:
    life = begin(terms or Terms("fp"))
    for event in events:
        life, _ = step(life, event, at)
    return life


def kinds(actions: tuple[object, ...]) -> list[type]:
    return [type(action) for action in actions]


SUBMITTED = [Found(), Claimed(), Submitted("j1")]
OLD_JOB = Found("j1", S.RUNNING, submitted_at=T0 - 2 * HOUR)


@pytest.mark.parametrize(
    ("before", "event", "phase", "actions"),
    [
        pytest.param([], Found(), Phase.PLANNED, [Claim], id="nothing-known-claims"),
        pytest.param(
            [], Found("j1", S.COMPLETED, T0 - HOUR, intact=True), Phase.SAVED, [], id="cached"
        ),
        pytest.param(
            [], Found("j1", S.COMPLETED, T0 - HOUR), Phase.SUBMITTED, [Track], id="file-lost"
        ),
        pytest.param([], OLD_JOB, Phase.SUBMITTED, [Track], id="known-job-reattached"),
        pytest.param([Found()], Claimed(), Phase.CLAIMED, [Submit], id="claim-then-submit"),
        pytest.param(
            [Found()], ClaimedElsewhere("w2"), Phase.PLANNED, [WaitForClaim], id="other-worker"
        ),
        pytest.param([Found()], Attached("j9"), Phase.SUBMITTED, [Track], id="attached"),
        pytest.param(SUBMITTED[:2], Submitted("j1"), Phase.SUBMITTED, [Track], id="submitted"),
        pytest.param(SUBMITTED, Status(S.RUNNING), Phase.RUNNING, [Track], id="running"),
        pytest.param(SUBMITTED, Status(S.ERROR), Phase.RUNNING, [Track], id="error-waits"),
        pytest.param(SUBMITTED, Status(S.COMPLETED), Phase.COMPLETED, [Download], id="done"),
        pytest.param(
            SUBMITTED, Status(S.FAILED), Phase.DEFERRED, [Defer], id="failed-right-after-submit"
        ),
        pytest.param([OLD_JOB], Status(S.FAILED), Phase.FAILED, [Replay], id="failed-replays"),
        pytest.param(
            [OLD_JOB], Status(S.CANCELLED), Phase.CANCELLED, [Replay], id="cancelled-replays"
        ),
        pytest.param([OLD_JOB], JobUnknown(), Phase.UNKNOWN_TO_SERVER, [Forget, Claim], id="404"),
        pytest.param(SUBMITTED, JobUnknown(), Phase.ENDED, [End], id="404-of-own-job"),
        pytest.param([OLD_JOB, Status(S.COMPLETED)], Saved(), Phase.SAVED, [], id="saved"),
        pytest.param(
            [OLD_JOB, Status(S.COMPLETED)], NotReady(), Phase.RUNNING, [Track], id="early-postback"
        ),
        pytest.param(
            [OLD_JOB, Status(S.COMPLETED)],
            DownloadGone(),
            Phase.RESULT_GONE,
            [Replay],
            id="expired-result-replays",
        ),
    ],
)
def test_each_move(before: list[Event], event: Event, phase: Phase, actions: list[type]) -> None:
    life, done = step(run(before), event, T0)
    assert life.phase is phase
    assert kinds(done) == actions
    assert life.pending == done


@pytest.mark.parametrize(
    ("before", "event"),
    [
        pytest.param([], Claimed(), id="claimed-before-found"),
        pytest.param([Found()], Submitted("j1"), id="submitted-without-claim"),
        pytest.param(SUBMITTED, Replayed("j2"), id="replayed-without-a-replay-asked"),
        pytest.param(SUBMITTED, Saved(), id="saved-before-completed"),
        pytest.param(SUBMITTED, Due(), id="due-without-deferral"),
        pytest.param([*SUBMITTED, Status(S.COMPLETED), Saved()], Status(S.FAILED), id="after-end"),
        pytest.param([OLD_JOB], Found(), id="found-twice"),
    ],
)
def test_an_illegal_move_raises_and_changes_nothing(before: list[Event], event: Event) -> None:
    life = run(before)
    copy = dataclasses.replace(life)
    with pytest.raises(IllegalTransition):
        step(life, event, T0)
    assert life == copy


def test_a_failed_job_is_replayed_once_allowed_never_straight_after_its_submit() -> None:
    life = run(SUBMITTED)
    life, actions = step(life, Status(S.FAILED), T0 + timedelta(minutes=5))
    (defer,) = actions
    assert isinstance(defer, Defer)
    assert defer.until == T0 + HOUR
    assert defer.decision.rule == "too_soon"
    life, actions = step(life, Due(), T0 + timedelta(minutes=30))
    assert life.phase is Phase.DEFERRED  # still too soon: deferred again
    life, actions = step(life, Due(), T0 + HOUR)
    (replay,) = actions
    assert isinstance(replay, Replay)
    assert replay.rule == "failed"
    life, actions = step(life, Replayed("j2"), T0 + HOUR)
    assert (life.phase, life.job_id, life.replays, kinds(actions)) == (
        Phase.SUBMITTED, "j2", 1, [Track],
    )  # fmt: skip


def test_replays_are_bounded() -> None:
    terms = Terms("fp", max_replays=1, policy=ReplayPolicy(max_per_day=5))
    life = run([OLD_JOB, Status(S.FAILED), Replayed("j2")], terms)
    life, actions = step(life, Status(S.FAILED), T0 + 2 * HOUR)
    assert life.phase is Phase.ENDED
    assert life.end is not None
    assert life.end.rule == "replays_exhausted"
    assert kinds(actions) == [End]


def test_once_a_day_counts_what_the_ledger_knew() -> None:
    known = Found("j1", S.RUNNING, submitted_at=T0 - 2 * HOUR, replays_today=1)
    life, _ = step(run([known]), Status(S.FAILED), T0)
    assert life.end is not None
    assert life.end.rule == "once_per_day"


@pytest.mark.parametrize(
    ("status", "fresh", "force", "range_end", "result"),
    [
        (S.COMPLETED, True, False, date(2025, 3, 9), "fresh_data"),
        (S.COMPLETED, True, False, date(2025, 1, 1), "not_justified"),
        (S.COMPLETED, False, True, date(2025, 1, 1), "forced"),
        (S.RUNNING, True, False, None, "in_progress"),
        (S.ERROR, False, True, None, "service_retries"),
    ],
)
def test_a_refresh_is_judged_by_the_guard(
    status: JobStatus, fresh: bool, force: bool, range_end: date | None, result: str
) -> None:
    terms = Terms("fp", range_end=range_end, fresh=fresh, force=force)
    known = Found("j1", S.COMPLETED, T0 - 2 * HOUR, T0 - 2 * HOUR, intact=True)
    life, actions = step(begin(terms), known, T0)
    assert kinds(actions) == [Inspect]  # an intact file is no answer to "fresh"
    life, actions = step(life, Status(status), T0)
    (action,) = actions
    if isinstance(action, Replay):
        assert action.rule == result
        life, actions = step(life, Replayed("j2"), T0)
        assert not life.wants_refresh
        life, actions = step(life, Status(S.COMPLETED), T0)
        assert kinds(actions) == [Download]  # refreshed once, then simply downloaded
    else:
        assert isinstance(action, End)
        assert action.rule == result


# ---- properties ------------------------------------------------------------------------------

STATUSES = st.sampled_from(list(JobStatus))
_ids = iter(range(10**9))


def any_event() -> st.SearchStrategy[Event]:
    """Any event at all: the table must refuse those its phase does not expect."""
    return st.one_of(
        st.builds(Found, st.none() | st.just("j0"), STATUSES, st.just(T0 - 2 * HOUR)),
        st.just(Claimed()),
        st.just(ClaimedElsewhere("w2")),
        st.builds(Attached, st.just("jx")),
        st.builds(Submitted, st.just("js")),
        st.builds(Status, STATUSES),
        st.just(JobUnknown()),
        st.just(DownloadGone()),
        st.just(NotReady()),
        st.just(Saved()),
        st.builds(Replayed, st.just("jr")),
        st.just(Due()),
    )


def answers(life: Life) -> st.SearchStrategy[Event]:
    """Events that answer the pending actions, as a server or another worker might."""
    options: list[st.SearchStrategy[Event]] = []
    for action in life.pending:
        if isinstance(action, Claim | WaitForClaim):
            options += [
                st.just(Claimed()),
                st.just(ClaimedElsewhere("w2")),
                st.builds(Attached, st.just("ja")),
            ]
        elif isinstance(action, Submit):
            options.append(st.builds(Submitted, st.just("js")))
        elif isinstance(action, Track | Inspect):
            options += [st.builds(Status, STATUSES), st.just(JobUnknown())]
        elif isinstance(action, Download):
            options += [st.just(Saved()), st.just(DownloadGone()), st.just(NotReady())]
            options.append(st.just(JobUnknown()))
        elif isinstance(action, Replay):
            options += [st.builds(Replayed, st.just("jr")), st.just(JobUnknown())]
        elif isinstance(action, Defer):
            options.append(st.just(Due()))
    return st.one_of(options) if options else any_event()


@settings(max_examples=200, deadline=None)
@given(
    st.builds(
        Terms,
        st.just("fp"),
        st.none() | st.dates(date(2025, 1, 1), date(2025, 4, 1)),
        st.booleans(),
        st.booleans(),
        st.integers(0, 3),
        st.builds(ReplayPolicy, max_per_day=st.integers(1, 3)),
        st.none(),
        st.booleans(),
    ),
    st.builds(
        Found,
        st.none() | st.just("j0"),
        STATUSES,
        st.just(T0 - 2 * HOUR),
        st.none(),
        st.booleans(),
        st.integers(0, 2),
    ),
    st.data(),
)
def test_random_lives_keep_the_guides_rules(
    terms: Terms, start: Found, data: st.DataObject
) -> None:
    life, actions = step(begin(terms), start, T0)
    now = T0
    submits = forgets = 0
    for _ in range(data.draw(st.integers(0, 40))):
        # Now and then an event out of turn; after the end, every event is one.
        stray = data.draw(st.integers(0, 9)) == 0 or life.terminal
        event = data.draw(any_event() if stray else answers(life))
        now += data.draw(
            st.sampled_from([timedelta(0), timedelta(minutes=10), HOUR, timedelta(days=1)])
        )
        try:
            after, actions = step(life, event, now)
        except IllegalTransition:
            assert stray, f"{event} answers {life.pending} yet was refused"
            continue  # refused: `life` is a frozen value, so nothing changed
        for action in actions:
            if isinstance(action, Submit):
                submits += 1
                # Never the same parameters twice, unless the server forgot the job.
                assert submits <= 1 + forgets
            elif isinstance(action, Forget):
                forgets += 1
            elif isinstance(action, Replay):
                # Never a replay the guard refuses, hence never straight after a submit.
                assert check_replay(action.request, terms.policy).allowed
                assert action.request.now - action.request.submitted_at >= terms.policy.min_age
                assert action.request.now == now
                assert after.replays <= terms.max_replays
            elif isinstance(action, Defer):
                assert action.until > now
        if after.phase is Phase.SAVED:
            assert not actions
        life = after
    # Saved, ended with a stated reason, or waiting on an action.
    if life.phase is Phase.ENDED:
        assert life.end is not None
        assert life.end.reason
        assert life.end.rule
    elif life.phase is not Phase.SAVED:
        assert life.pending


@settings(max_examples=200, deadline=None)
@given(
    st.lists(STATUSES, min_size=1, max_size=30),
    st.lists(st.sampled_from(["saved", "gone", "unknown", "not_ready"]), max_size=30),
    st.booleans(),
)
def test_a_cooperative_server_ends_every_life(
    statuses: list[JobStatus], downloads: list[str], trust: bool
) -> None:
    """Answering every action as a server would, each life ends (saved or with a reason) in a
    bounded number of steps, spending at most one submit per job the server forgot."""
    life, actions = step(begin(Terms("fp", trust_own_jobs=trust)), Found(), T0)
    now = T0
    statuses_left, downloads_left = iter(statuses), iter(downloads)
    submits = forgets = 0
    for _ in range(200):
        if life.terminal:
            break
        action = actions[-1]
        now += timedelta(minutes=20)
        event: Event
        if isinstance(action, Claim):
            event = Claimed()
        elif isinstance(action, Submit):
            submits += 1
            event = Submitted(f"j{next(_ids)}")
        elif isinstance(action, Track | Inspect):
            event = Status(next(statuses_left, S.COMPLETED))
        elif isinstance(action, Download):
            answer = next(downloads_left, "saved")
            event = {"saved": Saved(), "gone": DownloadGone(), "not_ready": NotReady()}.get(
                answer, JobUnknown()
            )
        elif isinstance(action, Replay):
            event = Replayed(f"j{next(_ids)}")
        elif isinstance(action, Defer):
            now = max(now, action.until)
            event = Due()
        else:
            raise AssertionError(f"unexpected action {action}")
        life, actions = step(life, event, now)
        forgets += any(isinstance(a, Forget) for a in actions)
    assert life.terminal
    assert submits <= 1 + forgets
    if life.phase is Phase.ENDED:
        assert life.end is not None
        assert life.end.reason


@settings(max_examples=50, deadline=None)
@given(st.dates(date(2025, 1, 1), date(2027, 1, 1)), st.integers(0, 3))
def test_a_default_range_export_is_a_new_life_only_on_a_new_day(day: date, later: int) -> None:
    """One life per fingerprint, one submit per life: a default-range export's fingerprint holds
    the account's day, so the same day is the same life (no second submit) and a new day a new
    one; an export with dates is the same life on every day."""
    from reportexport_async.core.fingerprint import fingerprint
    from reportexport_async.core.models import ExportRequest

    def key(request: ExportRequest, today: date) -> str:
        account = {"base_url": "https://api.impact.com", "account_sid": "IRabc"}
        return fingerprint(request, account_type="Mediapartners", today=today, **account).key

    default = ExportRequest(report_id="r1")
    dated = ExportRequest(report_id="r1", start=date(2025, 1, 1), end=date(2025, 1, 2))
    other = day + timedelta(days=later)
    assert (key(default, day) == key(default, other)) is (later == 0)
    assert key(dated, day) == key(dated, other)
    life = run([Found(), Claimed(), Submitted("j1")], Terms(key(default, day)))
    with pytest.raises(IllegalTransition):  # the same life never submits again
        step(life, Claimed(), T0)
