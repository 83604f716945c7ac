"""`ingest export`: mbox, zip and Maildir give back exactly the bytes that were stored."""

from __future__ import annotations

import hashlib
import re
import secrets
import zipfile
from pathlib import Path

import pytest
from support import account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser, as_pop3, corpus_files

FROM_LINES = (
    b"From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: from lines\r\n"
    b"Date: Mon, 2 Jan 2023 10:00:00 +0000\r\nMessage-ID: <from-lines@example.com>\r\n\r\n"
    b"From the start of a line\r\n>From quoted once\r\n>>From quoted twice\r\n"
    b"From\r\n Fromage\r\nFrom \r\n"
)


@pytest.fixture
def archive(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> tuple[Path, dict[str, str], dict[str, bytes]]:
    """A polled mailbox (corpus sample plus a message full of From lines), indexed; returns
    the config, the environment and the original messages as RETR gave them, by sha256."""
    originals = [p.read_bytes() for p in corpus_files()[20:35]] + [FROM_LINES]
    for raw in originals:
        dovecot.deliver(mail_user.name, raw)
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=tmp_path / "store",
                       index=True, accounts=[account_entry(dovecot, mail_user)])  # fmt: skip
    env = {password_env("support"): mail_user.password}
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    served = [as_pop3(raw) for raw in originals]
    return cfg, env, {hashlib.sha256(r).hexdigest(): r for r in served}


def read_mboxrd(data: bytes, eol: bytes) -> list[bytes]:
    """The messages of an mboxrd file: From_ lines and separators removed, quoting undone."""
    messages: list[list[bytes]] = []
    for line in re.findall(rb"[^\n]*\n|[^\n]+$", data):
        if line.startswith(b"From "):
            messages.append([])
        else:
            messages[-1].append(re.sub(rb"^>(>*From )", rb"\1", line))
    assert all(lines[-1] == eol for lines in messages)
    bodies = [b"".join(lines[:-1]) for lines in messages]
    return [b.replace(b"\n", b"\r\n") for b in bodies] if eol == b"\n" else bodies


@pytest.mark.parametrize("eol", ["crlf", "lf"])
def test_mbox_round_trips_every_message_byte_for_byte(
    archive: tuple[Path, dict[str, str], dict[str, bytes]], tmp_path: Path, eol: str
) -> None:
    """mboxrd: From lines are quoted, and reading back gives each original message exactly."""
    cfg, env, originals = archive
    out = tmp_path / f"all-{eol}.mbox"
    result = run_cli(cfg, "export", "support", "--format", "mbox", "--out", str(out),
                     "--eol", eol, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    data = out.read_bytes()
    assert b"\n>From the start" in data and b"\n>>>From quoted twice" in data
    messages = read_mboxrd(data, b"\r\n" if eol == "crlf" else b"\n")
    assert sorted(messages) == sorted(originals.values())


def test_zip_holds_each_selected_message_byte_for_byte(
    archive: tuple[Path, dict[str, str], dict[str, bytes]], tmp_path: Path
) -> None:
    """A zip export selected by subject word holds exactly those messages, named date + sha."""
    cfg, env, originals = archive
    out = tmp_path / "sel.zip"
    result = run_cli(cfg, "export", "support", "--subject", "lines", "--format", "zip",
                     "--out", str(out), env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    sha = hashlib.sha256(as_pop3(FROM_LINES)).hexdigest()
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == [f"support/20230102-100000-{sha}.eml"]
        assert zf.read(zf.namelist()[0]) == originals[sha]
    everything = tmp_path / "all.zip"
    result = run_cli(cfg, "export", "--format", "zip", "--out", str(everything), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    with zipfile.ZipFile(everything) as zf:
        assert sorted(zf.read(n) for n in zf.namelist()) == sorted(originals.values())


def test_maildir_redelivery_is_served_by_pop3_byte_for_byte(
    archive: tuple[Path, dict[str, str], dict[str, bytes]],
    tmp_path: Path,
    dovecot: Dovecot,
    redis_url: str,
) -> None:
    """Messages exported into another user's Maildir are served by Dovecot as the same bytes
    (polled again, they hash the same); exporting again skips what is already there."""
    cfg, env, originals = archive
    chosen = sorted(originals)[:4]
    other = dovecot.add_user(f"x{secrets.token_hex(6)}", secrets.token_urlsafe(12))
    maildir = dovecot.maildir(other.name)
    args = ["export", "support", *[f"--sha={s}" for s in chosen], "--format", "maildir"]
    result = run_cli(cfg, *args, "--out", str(maildir), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "4 message(s) exported" in result.stdout
    again = run_cli(cfg, *args, "--out", str(maildir), env=env)
    assert "0 message(s) exported" in again.stdout and "(4 already there)" in again.stdout
    assert dovecot.message_count(other.name) == 4

    store2 = tmp_path / "store2"
    cfg2 = write_config(tmp_path / "c2.yaml", redis_url=redis_url, directory=store2,
                        accounts=[account_entry(dovecot, other, name="second")])  # fmt: skip
    env2 = {password_env("second"): other.password}
    assert run_cli(cfg2, "poll", "second", env=env2).returncode == 0
    served = {p.stem: p.read_bytes() for p in store2.rglob("*.eml")}
    assert served == {s: originals[s] for s in chosen}


def test_a_corrupt_object_is_never_exported(
    archive: tuple[Path, dict[str, str], dict[str, bytes]], tmp_path: Path
) -> None:
    """An object whose bytes no longer hash to its name stops the export with an error."""
    cfg, env, originals = archive
    sha = sorted(originals)[0]
    raw = tmp_path / "store" / "support" / "raw" / sha[:2] / f"{sha}.eml"
    raw.write_bytes(raw.read_bytes().replace(b"\r\n\r\n", b"\r\n\r\nX", 1))
    out = tmp_path / "bad.zip"
    result = run_cli(cfg, "export", "support", f"--sha={sha}", "--format", "zip",
                     "--out", str(out), env=env)  # fmt: skip
    assert result.returncode == 1
    assert "corrupt" in result.stderr
