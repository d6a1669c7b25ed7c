"""Facts about this machine that decide INT8 settings."""

from __future__ import annotations

import os
import platform
from functools import lru_cache


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def x86_without_vnni() -> bool:
    """x86 CPUs without VNNI multiply u8*s8 into saturating 16-bit sums: ONNX Runtime's INT8
    kernels then need 7-bit weights (``reduce_range``) to stay accurate."""
    if platform.machine().lower() not in ("x86_64", "amd64", "i686", "x86"):
        return False
    flags = cpu_flags()
    return bool(flags) and not ({"avx512_vnni", "avx_vnni", "amx_int8"} & flags)


# Instruction-set features that change INT8/BF16 kernels, and so results and timings.
RESULT_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                out.setdefault(k.strip(), v.strip())
    except OSError:
        pass
    return out


def physical_cores() -> int:
    """Cores per socket times sockets (/proc/cpuinfo), else the logical CPU count."""
    try:
        return int(_cpuinfo()["cpu cores"]) * len(_physical_ids())
    except (KeyError, ValueError):
        return os.cpu_count() or 1


def _physical_ids() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return {ln.split(":", 1)[1].strip() for ln in f if ln.startswith("physical id")} or {"0"}
    except OSError:
        return {"0"}


def cuda_device() -> str | None:
    """The CUDA GPU the GPU rows run on (torch's device 0), or None."""
    try:
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except Exception:  # a CPU build, a broken driver: no GPU row can run either
        return None


def machine_info() -> dict:
    """What a benchmark row's numbers depend on: CPU model, result-changing ISA flags, cores, threads,
    the per-CPU settings the suite resolves from them, and the GPU where one is visible."""
    return {"cpu": _cpuinfo().get("model name") or platform.processor() or platform.machine(),
            "arch": platform.machine(), "isa": sorted(set(RESULT_FLAGS) & cpu_flags()),
            "cores": physical_cores(), "threads": os.cpu_count() or 1, "reduce_range": x86_without_vnni(),
            "gpu": cuda_device()}


def cpu_label(machine: dict) -> str:
    """The CPU model and its result-changing ISA flags, e.g. ``AMD EPYC [avx2]``."""
    return f"{machine.get('cpu') or 'unknown CPU'} [{', '.join(machine.get('isa') or []) or 'no listed ISA flags'}]"


def describe(machine: dict | None) -> str:
    """One line for a report header: CPU, ISA flags, cores and threads, the resolved settings, the GPU."""
    if not machine:
        return "machine not recorded"
    text = cpu_label(machine)
    if machine.get("cores"):
        text += f", {machine['cores']} cores / {machine.get('threads')} threads"
    if machine.get("threads_used"):
        text += f", {machine['threads_used']} used"
    if "reduce_range" in machine:
        text += f", reduce_range {'on' if machine['reduce_range'] else 'off'}"
    return text + (f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU")
