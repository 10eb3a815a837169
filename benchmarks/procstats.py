"""What the operating system says about this process: resident memory (now and at its peak) and
CPU time. Only the standard library, so that a baseline child measured with it carries no more
than what it imports itself."""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path

__all__ = [
    "cpu_seconds",
    "peak_rss_kib",
    "proc_status_kib",
    "process_cpu_seconds",
    "reset_peak_rss",
]


def proc_status_kib(name: str) -> int:
    """A `/proc/self/status` figure in KiB (`VmRSS`, `VmHWM`); 0 where there is no /proc."""
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset `VmHWM` to the current RSS (Linux >= 4.0), so that the peak of the download is not
    the peak of the imports."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        return False
    return True


def peak_rss_kib() -> int:
    """The whole process's peak RSS since it started: `VmHWM`, or `ru_maxrss` without /proc."""
    return proc_status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_times() -> tuple[float, float]:
    """User + system CPU time of this process, all its threads, and the system (kernel) share
    of it (system calls: sockets, writes, fsyncs), from one `getrusage`."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime, usage.ru_stime


def cpu_seconds() -> float:
    """User + system CPU time of this process, all its threads."""
    return cpu_times()[0]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (all its threads), from /proc; NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
