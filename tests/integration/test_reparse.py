"""`ingest reparse`: documents rebuilt from the raw messages, byte-identical to a poll's."""

from __future__ import annotations

import json
from pathlib import Path

from support import account_entry, password_env, run_cli, write_config

from harness import Dovecot, MailUser, corpus_files


def test_reparse_rebuilds_changed_and_missing_documents(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, redis_url: str
) -> None:
    """A stale document is rewritten, a lost one recreated (UIDL from the ledger), others kept."""
    for path in corpus_files()[100:110]:
        dovecot.deliver(mail_user.name, path.read_bytes())
    store = tmp_path / "store"
    cfg = write_config(
        tmp_path / "c.yaml",
        redis_url=redis_url,
        directory=store,
        accounts=[account_entry(dovecot, mail_user, delete="never")],
    )
    env = {password_env("support"): mail_user.password}
    assert run_cli(cfg, "poll", "support", env=env).returncode == 0
    docs = sorted(store.rglob("*.json"))
    original = {p: p.read_bytes() for p in docs}
    stale, lost = docs[0], docs[1]
    stale.write_text(json.dumps({"schema_version": 1, "uidl": json.loads(original[stale])["uidl"]}))
    lost.unlink()

    result = run_cli(cfg, "reparse", "support", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{len(docs)} raw message(s): 2 document(s) rewritten, {len(docs) - 2} unchanged" in (
        result.stdout
    )
    assert {p: p.read_bytes() for p in docs} == original
