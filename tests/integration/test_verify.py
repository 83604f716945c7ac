"""`ingest verify`: objects corrupted, deleted or added behind the archive's back are found."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from support import account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser, MotoS3, corpus_files

Finding = tuple[str, str, str]  # kind, what, key


@pytest.fixture
def archive(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> tuple[Path, dict[str, str], Path]:
    """A polled, indexed mailbox in a directory store: (config, environment, store root)."""
    for path in corpus_files()[60:80]:
        dovecot.deliver(mail_user.name, path.read_bytes())
    store = tmp_path / "store"
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, index=True,
                       accounts=[account_entry(dovecot, mail_user)])  # fmt: skip
    env = {password_env("support"): mail_user.password}
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    return cfg, env, store


def _docs(store: Path) -> list[dict]:
    return sorted(
        (json.loads(p.read_bytes()) for p in (store / "support" / "json").rglob("*.json")),
        key=lambda d: d["sha256"],
    )


def _row_path(store: Path, sha: str) -> Path:
    return next((store / "index").rglob(f"{sha}.ndjson"))


def _damage(store: Path) -> tuple[set[Finding], set[Finding]]:
    """Corrupt, delete and add objects directly in the store; the findings verify owes us,
    split into (found from listings alone, found only by re-reading objects)."""
    docs = _docs(store)
    with_att = next(d for d in docs if d["attachments"])
    plain = [d for d in docs if d is not with_att]
    corrupt_raw, lost_json, lost_raw, lost_row, bad_row = plain[:5]
    rel = lambda p: p.relative_to(store).as_posix()  # noqa: E731
    raw = store / corrupt_raw["raw_key"]
    raw.write_bytes(raw.read_bytes() + b"tampered\r\n")
    json_path = store / "support" / "json" / lost_json["sha256"][:2] / f"{lost_json['sha256']}.json"
    json_path.unlink()
    (store / lost_raw["raw_key"]).unlink()
    _row_path(store, lost_row["sha256"]).unlink()
    row = _row_path(store, bad_row["sha256"])
    row.write_bytes(row.read_bytes().replace(b'"subject":', b'"subject":"x","was":', 1))
    orphan_sha = "0" * 64
    orphan_row = row.parent / f"{orphan_sha}.ndjson"
    shutil.copy(row, orphan_row)
    stray = store / "support" / "raw" / "zz" / "notes.txt"
    stray.parent.mkdir()
    stray.write_text("not mail")
    att = with_att["attachments"][0]
    (store / att["key"]).unlink()
    listed = {
        ("missing", "json", rel(json_path)),
        ("missing", "raw", lost_raw["raw_key"]),
        ("missing", "index", lost_row["sha256"]),
        ("orphaned", "index", rel(orphan_row)),
        ("orphaned", "raw", rel(stray)),
    }
    read = {
        ("corrupt", "raw", corrupt_raw["raw_key"]),
        ("corrupt", "index", rel(row)),
        ("missing", "attachment", att["key"]),
    }
    return listed, read


def _findings(stdout: str) -> tuple[set[Finding], dict]:
    lines = [json.loads(line) for line in stdout.splitlines()]
    summary = next(x for x in lines if "summary" in x)
    return {(x["kind"], x["what"], x["key"]) for x in lines if "kind" in x}, summary


def _attachments(store: Path) -> int:
    return sum(1 for p in (store / "support" / "att").rglob("*") if p.is_file())


def test_a_clean_archive_passes(archive: tuple[Path, dict[str, str], Path]) -> None:
    """Nothing tampered with: every message and attachment re-read, nothing reported, exit 0."""
    cfg, env, store = archive
    result = run_cli(cfg, "verify", "--json", "--rate", "1000", env=env)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    findings, summary = _findings(result.stdout)
    assert findings == set()
    assert _attachments(store) > 0
    assert summary["checked"] == len(_docs(store)) + _attachments(store)


def test_every_damage_is_reported(archive: tuple[Path, dict[str, str], Path]) -> None:
    """Corrupt, deleted and stray objects and index rows are each reported, nothing else."""
    cfg, env, store = archive
    messages = len(_docs(store))
    listed, read = _damage(store)
    result = run_cli(cfg, "verify", "--json", env=env)
    assert result.returncode == 1, result.stderr[-2000:]
    findings, summary = _findings(result.stdout)
    assert findings == listed | read
    assert summary["checked"] == messages + _attachments(store)
    text = run_cli(cfg, "verify", "--account", "support", env=env)
    assert text.returncode == 1
    assert "corrupt\traw\tsupport\t" in text.stdout


def test_sample_zero_reads_nothing_but_still_compares_listings(
    archive: tuple[Path, dict[str, str], Path],
) -> None:
    """--sample 0: no object is re-read, yet missing and orphaned objects are still found."""
    cfg, env, store = archive
    listed, _ = _damage(store)
    result = run_cli(cfg, "verify", "--json", "--sample", "0", env=env)
    assert result.returncode == 1
    findings, summary = _findings(result.stdout)
    assert findings == listed
    assert summary["checked"] == 0


def test_an_interrupted_run_resumes_where_it_stopped(
    archive: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    """Stopped at --limit, a run with the same --state goes on from its cursor: in the end
    every object was re-read exactly once and every finding is reported."""
    cfg, env, store = archive
    messages = len(_docs(store))
    listed, read = _damage(store)
    state = tmp_path / "verify.state"
    first = run_cli(cfg, "verify", "--json", "--state", str(state), "--limit", "9", env=env)
    assert first.returncode == 3, first.stdout + first.stderr[-2000:]
    _, summary = _findings(first.stdout)
    assert 0 < summary["checked"] < messages
    assert json.loads(state.read_text())["cursor"][0] == "support"
    second = run_cli(cfg, "verify", "--json", "--state", str(state), env=env)
    assert second.returncode == 1, second.stderr[-2000:]
    findings, summary = _findings(second.stdout)
    assert summary["summary"] == "resumed run complete"
    assert findings == listed | read
    assert summary["checked"] == messages + _attachments(store)


def test_s3_objects_corrupted_behind_our_back_are_found(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str,
) -> None:  # fmt: skip
    """On S3: an overwritten raw object and a deleted JSON document are reported."""
    for path in corpus_files()[80:86]:
        dovecot.deliver(mail_user.name, path.read_bytes())
    entry = account_entry(dovecot, mail_user)
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, s3=s3_server, bucket=bucket,
                       prefix="p", index=True, accounts=[entry])  # fmt: skip
    env = {password_env("support"): mail_user.password}
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    client = s3_server.client()
    listing = client.list_objects_v2(Bucket=bucket, Prefix="p/support/raw/")["Contents"]
    raw_key = listing[0]["Key"]
    client.put_object(Bucket=bucket, Key=raw_key, Body=b"Subject: swapped\r\n\r\n")
    json_key = listing[1]["Key"].replace("/raw/", "/json/").replace(".eml", ".json")
    client.delete_object(Bucket=bucket, Key=json_key)
    result = run_cli(cfg, "verify", "--json", env=env)
    assert result.returncode == 1
    findings, _ = _findings(result.stdout)
    assert findings == {("corrupt", "raw", raw_key), ("missing", "json", json_key)}
