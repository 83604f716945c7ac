"""glibc malloc thresholds: MB-sized buffers are reused instead of faulted in anew."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import allocator

ROOT = Path(__file__).resolve().parents[2]

# Four threads allocate and free 30 buffers of 1-6 MB each, as store threads do with
# messages, base64 text and attachments; prints the minor page faults that cost.
_CHURN = """
import resource, sys, threading
from ingest import allocator
print(allocator.tune() if sys.argv[1] == "tune" else "untouched")

def work():
    for i in range(30):
        data = bytes((1 + (i * 7919) % 6) << 20)
        copy = data[:-1] + b"x"
        del data, copy

before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""

glibc_only = pytest.mark.skipif(
    not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"), reason="glibc only"
)


def _churn(mode: str, **env: str) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _CHURN, mode], env={**clean, **env}, cwd=ROOT,
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return out[0], int(out[1])


@glibc_only
def test_tuned_buffers_are_reused_instead_of_faulted_in_again() -> None:
    """Untuned, each MB buffer a thread allocates is fresh pages (about 180,000 faults
    here); tuned, the heaps keep them and the faults fall by far more than 5x."""
    applied, tuned = _churn("tune")
    _, untuned = _churn("none")
    assert applied == "True"
    assert tuned * 5 < untuned, (tuned, untuned)


@glibc_only
def test_an_operators_own_threshold_is_left_as_set() -> None:
    applied, _ = _churn("tune", MALLOC_MMAP_THRESHOLD_="131072")
    assert applied == "False"


def test_tune_is_a_no_op_outside_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "confstr", lambda name: None)
    assert allocator.tune() is False
