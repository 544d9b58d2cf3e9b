"""What every benchmark prints about the machine it ran on (scripts in bench/ import it as `benchlib`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo, or what `platform` knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_line() -> str:
    """CPU, cores, load average and Python version: enough to compare two BENCHMARKS.md entries."""
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{cpu_name()}, {os.cpu_count()} cores, load average {load}, Python {platform.python_version()}"
