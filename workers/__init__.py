"""Celery wiring: the app, its tasks and the beat schedule. Thin by design.

Before anything imports ``prometheus_client``, make sure every process of this worker
writes its metrics into one directory (multiprocess mode): ``PROMETHEUS_MULTIPROC_DIR``
as given, or a private temporary directory removed when the main process exits.
"""

import atexit
import os
import shutil
import tempfile

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _dir = tempfile.mkdtemp(prefix="ingest-metrics-")
    _owner = os.getpid()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _dir

    @atexit.register
    def _remove_metrics_dir() -> None:
        """Only the process that made it (pool children inherit atexit handlers)."""
        if os.getpid() == _owner:
            shutil.rmtree(_dir, ignore_errors=True)
