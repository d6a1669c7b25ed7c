"""Facts about this machine that decide INT8 settings."""

from __future__ import annotations

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
