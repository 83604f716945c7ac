"""Fixtures for the interoperability suite: a private GNU Mailutils pop3d per session."""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import MailUser
from harness.mailutils import MailutilsPop3d


@pytest.fixture(scope="session")
def mailutils(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MailutilsPop3d]:
    """A private pop3d for the whole session; its log is kept in pytest's temp dir.

    Its workdir comes from mkdtemp, not tmp_path: as root, sessions run as the mail user,
    which must traverse every parent directory, and pytest's are mode 0700.
    """
    workdir = Path(tempfile.mkdtemp(prefix="ingest-mailutils-"))
    server = MailutilsPop3d(workdir)
    try:
        with server:
            yield server
    finally:
        if server.log_path.exists():
            shutil.copy(server.log_path, tmp_path_factory.getbasetemp() / "pop3d.log")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def mu_user(mailutils: MailutilsPop3d) -> MailUser:
    """A fresh pop3d user (``u<hex>@mailutils.test``) with a random password, no mail."""
    return mailutils.add_user(f"u{secrets.token_hex(6)}", secrets.token_urlsafe(12))
