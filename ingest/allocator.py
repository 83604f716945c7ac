"""glibc malloc settings for a process that handles many megabyte-sized buffers.

A poll allocates and frees buffers of a few MB all the time: each message's bytes, its
base64 text and what that decodes to, its JSON. glibc's malloc serves an allocation above
its mmap threshold with fresh pages from the kernel. It also hands freed memory back at
the top of a heap (the trim threshold), and it does both per thread arena. Each new page is
then a page fault and a zeroed page. With four store threads that cost a poll of 500 mixed
messages about 85,000 page faults: a third of its kernel time with the store on tmpfs.
Fixed thresholds of 16 MiB (mmap) and 32 MiB (trim) keep such buffers in the heaps for
reuse (25,000 page faults in that poll). Peak RSS grows
by about the working set of the buffers in flight (25 MB in that poll), and it does not
grow with the number of messages.

Applied once at process start by the CLI and the Celery worker. An operator's own
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` (glibc reads them at start) is
left as set. Other C libraries (musl) are left alone.
"""

from __future__ import annotations

import ctypes
import os

MMAP_THRESHOLD = 16 * 1024 * 1024
TRIM_THRESHOLD = 32 * 1024 * 1024
_M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_OPERATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def tune() -> bool:
    """Set the thresholds above; False where nothing was changed (not glibc, or the
    operator set either threshold in the environment)."""
    if not _glibc() or any(os.environ.get(k) for k in _OPERATOR_SETTINGS):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(
        mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (ValueError, OSError):  # the name is unknown here
        return False
