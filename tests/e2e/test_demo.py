"""`make demo`'s program, run as a user would: everything lands and the table is printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT

from harness import as_pop3, corpus_files

pytestmark = pytest.mark.e2e


def test_demo_drains_the_corpus_into_the_local_store(tmp_path: Path) -> None:
    """The demo starts its own servers, runs worker and beat, and stores every message."""
    out = tmp_path / "demo-out"
    result = subprocess.run(
        [sys.executable, "-m", "harness.demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "INGEST_DEMO_OUT": str(out), "COLUMNS": "120"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    raws = {p.read_bytes() for p in (out / "store").rglob("*.eml")}
    assert raws == {as_pop3(p.read_bytes()) for p in corpus_files()}
    assert len(list((out / "store").rglob("*.json"))) == len(raws)
    assert "What landed where" in result.stdout and "s3://YOUR-BUCKET" in result.stdout
