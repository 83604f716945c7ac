"""structlog set-up: JSON lines when not on a terminal, pretty output on one."""

from __future__ import annotations

import importlib
import importlib.util
import logging
import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from structlog.types import Processor


def configure(level: str = "INFO", *, json: bool | None = None) -> None:
    """Configure structlog and route stdlib logging (boto3, celery) through the same output."""
    if json is None:
        json = not sys.stderr.isatty()
    structlog = _structlog(pretty=not json)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")


def _structlog(*, pretty: bool) -> ModuleType:
    """structlog, imported without rich unless the pretty console output is wanted.

    ``import structlog`` imports its console renderer and its dict tracebacks, and both
    import rich when it is installed: a third of the start-up of ``ingest poll``, for output
    that JSON logging never uses. So when the first import of structlog is for JSON, rich is
    hidden from it; a later pretty set-up in the same process runs those two modules again
    with rich in sight, so the output is the same whichever came first.
    """
    if not pretty and "structlog" not in sys.modules and "rich" not in sys.modules:
        sys.modules["rich"] = None  # type: ignore[assignment] # makes `import rich` fail
        try:
            import structlog  # noqa: PLC0415 - the point of this function
        finally:
            del sys.modules["rich"]
    import structlog  # noqa: PLC0415

    if pretty and getattr(structlog.dev, "rich", None) is None and importlib.util.find_spec("rich"):
        importlib.reload(structlog.tracebacks)  # their functions read the module's `rich`
        importlib.reload(structlog.dev)
    return structlog
