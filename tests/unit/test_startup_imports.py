"""Start-up of ``ingest poll``: the modules a JSON-logging command process leaves unimported."""

from __future__ import annotations

import subprocess
import sys

JSON_LOGS = "from ingest import logs; logs.configure(json=True)"


def _run(code: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout


def _modules_after(code: str) -> set[str]:
    return set(_run(f"{code}\nimport sys\nprint('\\n'.join(sys.modules))").split())


def test_json_logging_leaves_rich_out() -> None:
    """structlog set up for JSON lines does not import rich (only its pretty console uses it)."""
    modules = _modules_after(JSON_LOGS)
    assert "structlog" in modules
    assert "rich" not in modules


def test_pretty_logging_after_json_logging_is_the_usual_pretty_logging() -> None:
    """A pretty set-up after a JSON one in the same process gets rich tracebacks as ever."""
    out = _run(
        f"{JSON_LOGS}; logs.configure(json=False)\nimport structlog\n"
        "print(type(structlog.get_config()['processors'][-1].exception_formatter).__name__)"
    )
    assert out.strip() == "RichTracebackFormatter"


def test_a_poll_imports_no_module_only_some_polls_or_commands_need() -> None:
    """The progress bar, the index, OAuth2, the event sinks, the archive search and the
    message parser are imported by the commands, accounts and messages that use them, not
    at start-up (a poll that finds no new mail never parses)."""
    modules = _modules_after(f"{JSON_LOGS}\nimport ingest.cli, ingest.service")
    optional = {"rich", "ingest.progress", "ingest.index", "ingest.oauth", "ingest.events"}
    optional |= {"ingest.outbox", "ingest.sinks", "ingest.search", "ingest.parse", "ingest.mime"}
    assert modules & optional == set()


def test_a_directory_store_needs_no_botocore() -> None:
    """Opening a directory store (the laptop and demo default) for a poll imports neither
    boto3 nor botocore: only an S3 store pays for them."""
    modules = _modules_after(
        f"{JSON_LOGS}\nimport ingest.cli, ingest.service\n"
        "from ingest.config import StorageConfig\nfrom ingest.store import open_store\n"
        "open_store(StorageConfig(url='file:///tmp/ingest-startup-test'))"
    )
    assert "ingest.store_dir" in modules
    assert not {"boto3", "botocore", "ingest.store_s3"} & modules
