"""The account's health, beside the session: whether a failure concerns the whole account.

Two kinds of failure stop a run at once instead of trying (and charging) chunk after chunk
(`AccountUnavailable`):

- one answer that says no call of the account can succeed: the credentials refused (401, or 403
  for a scoped token), no connection to the host at all, a TLS failure (`core.responses
  .account_problem`);
- an outage: every call has failed (no answer, or a 5xx) for longer than
  `RetryPolicy.outage_limit`, with at least `OUTAGE_MIN_FAILURES` failures in a row
  (`RetryPolicy.is_outage`): waited out that long, never for ever.

The session tells its watch about every answer of the API origin (`answered`, `unanswered`);
its retries ask `check` before each pause, and a run asks `account_wide` about each error. Time
is the machine's clock: a duration, not moved by a correction of the server's offset.
"""

from __future__ import annotations

from datetime import datetime

from ..core.policies import RetryPolicy
from ..core.responses import account_problem
from ..errors import AccountUnavailable, ReportExportError
from ..machine.clock import Clock

__all__ = ["OutageWatch"]


class OutageWatch:
    """Since when every call of one account has failed, and how many in a row; reset by any
    other answer."""

    def __init__(self, policy: RetryPolicy, clock: Clock) -> None:
        self.policy = policy
        self.clock = clock  # the machine's: durations only
        self.failing_since: datetime | None = None
        self.failures_in_a_row = 0

    def __repr__(self) -> str:
        return (
            f"OutageWatch(failing_for={self.failing_for():.0f}s, "
            f"failures_in_a_row={self.failures_in_a_row})"
        )

    def answered(self, status: int) -> None:
        """An answer arrived: a 5xx is one more failure, anything else ends the failing."""
        if status >= 500:
            self.unanswered()
        else:
            self.failing_since = None
            self.failures_in_a_row = 0

    def unanswered(self) -> None:
        """A call got no answer at all (no connection, a timeout, a cut)."""
        self.failures_in_a_row += 1
        if self.failing_since is None:
            self.failing_since = self.clock.now()

    def failing_for(self) -> float:
        """Seconds since every call began to fail; 0 while calls succeed."""
        if self.failing_since is None:
            return 0.0
        return max(0.0, (self.clock.now() - self.failing_since).total_seconds())

    def outage(self, error: ReportExportError, pause: float = 0.0) -> AccountUnavailable | None:
        """An `AccountUnavailable` when the policy calls the failures so far an outage, counting
        `pause` more seconds (a wait about to be made); else None."""
        failing = self.failing_for()
        if self.failing_since is not None and self.policy.is_outage(
            failing, self.failures_in_a_row, pause
        ):
            stop = AccountUnavailable("outage", error, failing_for=failing)
            stop.__cause__ = error  # as if raised from it, also when only returned
            return stop
        return None

    def check(self, error: ReportExportError, pause: float = 0.0) -> None:
        """Raise `outage(error, pause)` when there is one (before a retry's pause)."""
        stop = self.outage(error, pause)
        if stop is not None:
            raise stop from error

    def account_wide(
        self, error: ReportExportError, pause: float = 0.0
    ) -> AccountUnavailable | None:
        """Whether `error` stops the account's run at once: it is account-wide by itself
        (credentials, no connection, TLS), or an outage has lasted too long. The error to stop
        with, or None when the run goes on."""
        if isinstance(error, AccountUnavailable):
            return error
        problem = account_problem(error)
        if problem is not None:
            return AccountUnavailable(problem, error)
        return self.outage(error, pause)
