"""The archive index: one row per message, queryable by DuckDB, rebuilt from the documents."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
from support import (
    account_entry,
    assert_index_rows_once,
    bucket_objects,
    password_env,
    run_cli,
    write_config,
)

from harness import Dovecot, MailUser, MotoS3, corpus_files
from ingest import index

CORPUS = slice(0, 40)


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _poll_into_directory(
    tmp_path: Path, dovecot: Dovecot, user: MailUser, redis_url: str
) -> tuple[Path, Path, dict[str, str]]:
    for path in corpus_files()[CORPUS]:
        dovecot.deliver(user.name, path.read_bytes())
    store = tmp_path / "store"
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, directory=store, index=True,
                       accounts=[account_entry(dovecot, user)])  # fmt: skip
    env = {password_env("support"): user.password}
    result = run_cli(cfg, "poll", "support", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return cfg, store, env


def test_poll_writes_one_row_per_message_into_s3(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, s3_server: MotoS3, bucket: str,
    redis_url: str,
) -> None:  # fmt: skip
    """With storage.index, every stored message gets exactly its row, and a re-poll adds none."""
    for path in corpus_files()[CORPUS]:
        dovecot.deliver(mail_user.name, path.read_bytes())
    entry = account_entry(dovecot, mail_user)
    cfg = write_config(tmp_path / "c.yaml", redis_url=redis_url, s3=s3_server, bucket=bucket,
                       prefix="arch", index=True, accounts=[entry])  # fmt: skip
    env = {password_env("support"): mail_user.password}
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    objects = bucket_objects(s3_server, bucket)
    assert_index_rows_once(objects, "arch")
    rows = [k for k in objects if k.startswith("arch/index/account=support/day=")]
    assert len(rows) == len([k for k in objects if "/raw/" in k]) > 0
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    assert bucket_objects(s3_server, bucket) == objects


def test_duckdb_reads_the_index_as_documented(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """The README's DuckDB query returns one row per message with its partitions and columns."""
    _, store, _ = _poll_into_directory(tmp_path, dovecot, mail_user, redis_url)
    docs = [json.loads(p.read_bytes()) for p in (store / "support" / "json").rglob("*.json")]
    glob = f"{store}/index/account=*/day=*/*.ndjson"
    rows = duckdb.sql(
        f"SELECT account, CAST(day AS VARCHAR), sha256, subject, len(attachments) "  # noqa: S608
        f"FROM read_json_auto('{glob}', hive_partitioning = true)"
    ).fetchall()
    assert sorted(rows) == sorted(
        ("support", index.day_of(d), d["sha256"], d["subject"], len(d["attachments"])) for d in docs
    )
    sender = next(d for d in docs if d["from"])["from"][0]["address"]
    found = duckdb.sql(
        f"SELECT sha256 FROM read_json_auto('{glob}', hive_partitioning = true) "  # noqa: S608
        f"WHERE list_contains(\"from\", '{sender}')"
    ).fetchall()
    assert {s for (s,) in found} == {
        d["sha256"] for d in docs if sender in [a["address"] for a in d["from"]]
    }


def test_search_filters_rows_like_the_documents_say(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """`ingest search` by attachment, day range and subject word finds exactly the right ones."""
    cfg, store, env = _poll_into_directory(tmp_path, dovecot, mail_user, redis_url)
    docs = [json.loads(p.read_bytes()) for p in (store / "support" / "json").rglob("*.json")]

    def shas(*args: str) -> set[str]:
        result = run_cli(cfg, "search", "support", "--json", *args, env=env)
        assert result.returncode == 0, result.stderr[-2000:]
        return {json.loads(line)["sha256"] for line in result.stdout.splitlines()}

    assert shas("--has-attachment") == {d["sha256"] for d in docs if d["attachments"]}
    assert shas() == {d["sha256"] for d in docs}
    dated = sorted(index.day_of(d) for d in docs if d["date"])
    since, until = dated[len(dated) // 4], dated[3 * len(dated) // 4]
    assert shas("--since", since, "--until", until) == {
        d["sha256"] for d in docs if since <= index.day_of(d) <= until
    }
    word = next(d for d in docs if d["subject"])["subject"].split()[0]
    assert shas("--subject", word) == {
        d["sha256"] for d in docs if word.casefold() in (d["subject"] or "").casefold()
    }
    sender = next(d for d in docs if d["from"])["from"][0]["address"]
    needle = sender.casefold()
    assert shas("--from", sender.upper()) == {
        d["sha256"]
        for d in docs
        if any(needle in a["address"].casefold() for a in d["from"])
        or (d["from"] and needle in (d["from"][0]["name"] or "").casefold())
    }
    with_id = next(d for d in docs if d["message_id"])
    assert shas("--message-id", f"<{with_id['message_id']}>") == {
        d["sha256"] for d in docs if d["message_id"] == with_id["message_id"]
    }
    assert run_cli(cfg, "search", "--since", "yesterday", env=env).returncode == 2
    table = run_cli(cfg, "search", "support", "--subject", word, env=env)
    assert table.returncode == 0 and "message(s)" in table.stderr


def test_rebuild_recreates_identical_rows(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """`ingest index rebuild` after the index is lost (or a row altered) gives the same bytes."""
    cfg, store, env = _poll_into_directory(tmp_path, dovecot, mail_user, redis_url)
    original = _files(store / "index")
    assert original
    for path in (store / "index").rglob("*.ndjson"):
        path.unlink()
    result = run_cli(cfg, "index", "rebuild", "support", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(original)} row(s) created, 0 rewritten" in result.stdout
    assert _files(store / "index") == original

    altered = next((store / "index").rglob("*.ndjson"))
    altered.write_bytes(b'{"subject":"forged"}\n')
    result = run_cli(cfg, "index", "rebuild", "support", env=env)
    assert "0 row(s) created, 1 rewritten" in result.stdout
    assert _files(store / "index") == original


def test_reparse_keeps_the_index_in_step(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """A document `ingest reparse` rewrites gets its row rewritten from the new document."""
    cfg, store, env = _poll_into_directory(tmp_path, dovecot, mail_user, redis_url)
    original = _files(store / "index")
    doc_path = next((store / "support" / "json").rglob("*.json"))
    doc = json.loads(doc_path.read_bytes())
    row_path = store / index.row_key(doc, "")
    doc_path.write_text(json.dumps({**doc, "subject": "stale"}))
    row_path.write_bytes(index.row_bytes(index.build_row({**doc, "subject": "stale"}, "")))
    result = run_cli(cfg, "reparse", "support", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 document(s) rewritten" in result.stdout
    assert _files(store / "index") == original
