"""glibc malloc settings that keep the server's RSS near what it uses, not its historic peak.

With onnxruntime's CPU arena off (see Settings.cpu_mem_arena) every tensor of a model call is a plain malloc: a
detector call on a page allocates ~1 GB in tensors of a few MB to a few hundred MB and frees them when it returns.
glibc serves such blocks from its heaps once its dynamic mmap threshold has grown (it rises to 32 MB after the first
big free), then keeps the freed pages, one heap per thread that touched them (up to 8 x cores arenas): RSS ratchets
up to the sum of past peaks (issue 20: 454 MiB -> 1.7-2.9 GiB after 2,000 requests). A fixed mmap threshold gives
big blocks back to the kernel on free, two arenas bound the per-thread heaps, and ``malloc_trim`` after a big call
returns what fragmentation left behind. Measured (int8 det, 12 calls 416x736..3008x2112, `bench/det_memory.py`):
RSS after the calls 109 MiB by default (74 after a trim), 75 MiB with the fixed threshold; call time unchanged
within the host's noise. Not glibc (musl, macOS): nothing to do, the functions report that.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("ocrnet.api.memory")

M_MMAP_THRESHOLD = -3  # glibc malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 256 * 1024
ARENA_MAX = 2

_libc: ctypes.CDLL | None = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        try:
            lib = ctypes.CDLL(name or "libc.so.6")
            lib.mallopt, lib.malloc_trim  # noqa: B018 - both exist only on glibc
        except (OSError, AttributeError):
            return None
        _libc = lib
    return _libc


def tune_malloc() -> bool:
    """Fixed mmap threshold and at most two arenas for this process; True when glibc took both."""
    libc = _glibc()
    if libc is None:
        log.info("not glibc: malloc left as it is")
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX))
    log.info("malloc: mmap threshold %d KiB, %d arenas (%s)", MMAP_THRESHOLD_BYTES // 1024, ARENA_MAX,
             "set" if ok else "refused")
    return ok


def trim() -> None:
    """Give free heap pages back to the kernel (cheap next to a big model call)."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
