"""A local server that behaves like impact.com's ReportExport and Jobs APIs.

It serves the three account types (`/Advertisers`, `/Mediapartners`, `/Agencies`), makes
deterministic synthetic data, runs jobs on a scalable clock, enforces the hourly and daily limits,
delivers job-completion postbacks, and injects faults on request. It imports nothing from the
client side of this package. It speaks the documentation examples' dialect, or a strict one built
from the published documents alone (`dialect="strict"`; see `reportexport_async.sandbox.dialect`).

    python -m reportexport_async.sandbox --port 0       # prints one JSON line, then serves

    async with Sandbox() as sandbox:                     # in process
        ...

The pytest plugin (`reportexport_async.sandbox.pytest_plugin`, registered automatically) gives
tests the `impact_sandbox` fixture.
"""

from .clock import ManualClock, SandboxClock, ScaledClock
from .config import FAULT_NAMES, SandboxAccount, SandboxConfig
from .server import ENDPOINTS, Sandbox, SandboxError

__all__ = [
    "ENDPOINTS",
    "FAULT_NAMES",
    "ManualClock",
    "Sandbox",
    "SandboxAccount",
    "SandboxClock",
    "SandboxConfig",
    "SandboxError",
    "ScaledClock",
]
