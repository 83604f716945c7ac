"""Throw-away system accounts for POP3 servers that only authenticate real users (PAM).

popa3d, solid-pop3d and courier's ``authpam`` take no private password file, so their tests
create real accounts: ``useradd`` + ``chpasswd`` with a unique prefixed name, removed again
(with their mail) by :meth:`SystemUsers.remove_all`. Needs root.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path

from harness.dovecot import MailUser


class SystemUsers:
    """Create accounts named ``PREFIX<hex>``; ``home`` (a format with ``{name}``) is made."""

    def __init__(self, prefix: str, home: str | None = None) -> None:
        self.prefix = prefix
        self.home = home
        self.names: list[str] = []

    def add(self, password: str | None = None) -> MailUser:
        """A new account (no login shell) with ``password`` (random unless given)."""
        name = f"{self.prefix}{secrets.token_hex(4)}"
        password = password or secrets.token_urlsafe(12)
        home = ["--home-dir", self.home.format(name=name)] if self.home else ["--no-create-home"]
        argv = ["useradd", *home, "--shell", "/usr/sbin/nologin", name]
        subprocess.run(argv, check=True, capture_output=True)
        self.names.append(name)
        subprocess.run(
            ["chpasswd"], input=f"{name}:{password}\n".encode(), check=True, capture_output=True
        )
        if self.home:
            self.make_owned(Path(self.home.format(name=name)), name, directory=True)
        return MailUser(name, password)

    @staticmethod
    def make_owned(path: Path, user: str, *, directory: bool = False, mode: int = 0o700) -> Path:
        """Create ``path`` (an empty file, or a directory) owned by ``user``, if missing."""
        if directory:
            path.mkdir(mode=mode, parents=True, exist_ok=True)
        else:
            path.touch(mode=mode)
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)
        return path

    def remove_all(self, *paths_of: str) -> None:
        """Delete every account made here, and for each the paths ``paths_of`` (formats with
        ``{name}``: files or directory trees). Idempotent."""
        for name in self.names:
            subprocess.run(["userdel", "--force", name], capture_output=True, check=False)
            for pattern in paths_of:
                path = Path(pattern.format(name=name))
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        self.names = []


def missing_as_root(what: str, binary: Path | str, *system_users: str) -> str:
    """Why ``what`` cannot run here (not root, ``binary`` not unpacked, a system user it
    runs as is missing), or "" if it can."""
    if os.geteuid() != 0:
        return f"{what} tests need root (system users)"
    if not os.access(binary, os.X_OK):
        return f"{binary} not found: run scripts/private-servers.sh"
    for name in system_users:
        try:
            pwd.getpwnam(name)
        except KeyError:
            return f"no system user {name} (scripts/private-servers.sh creates it)"
    return ""
