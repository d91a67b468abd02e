"""What the numbers were measured on: cores, CPU model, memory, GPU, and how busy the machine was."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def cuda_available() -> bool:
    """True when torch is importable and sees a GPU; decides without importing torch when no driver exists."""
    import importlib.util

    if importlib.util.find_spec("torch") is None or os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return False
    if not (Path("/proc/driver/nvidia/version").exists() or Path("/dev/nvidia0").exists()):
        return False
    import torch

    return bool(torch.cuda.is_available())


def gpu_name() -> str | None:
    if not cuda_available():
        return None
    import torch

    return str(torch.cuda.get_device_name(0))


def busy_processes(exclude: set[int] | None = None, min_cpu: float = 20.0) -> list[str]:
    """Other processes using CPU right now (``ps`` %CPU), so a report says when the machine was shared."""
    exclude = exclude or set()
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,ppid,pcpu,args", "--sort=-pcpu", "--no-headers"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4:
            continue
        pid, ppid, cpu, args = int(parts[0]), int(parts[1]), float(parts[2]), parts[3]
        if cpu < min_cpu or pid in exclude or ppid in exclude or pid == os.getpid():
            continue
        rows.append(f"{cpu:.0f}% {args[:100]}")
    return rows[:8]


def machine_info() -> dict[str, Any]:
    load = os.getloadavg()
    return {
        "cores": usable_cores(),
        "cpu_model": cpu_model(),
        "memory_gib": memory_gib(),
        "gpu": gpu_name(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_avg_1m_at_start": round(load[0], 2),
    }
