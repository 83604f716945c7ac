"""accounts_dir: accounts from a directory of files, merged, validated and reloaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from structlog.testing import capture_logs

from ingest.config_load import load_settings
from ingest.errors import ConfigError
from ingest.reload import ConfigWatcher


def _account(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "host": "pop.example.com", "username": "u", "password_env": "PW", **extra}


def _setup(tmp_path: Path, inline: list[dict[str, Any]] | None = None, **extra: Any) -> Path:
    (tmp_path / "accounts.d").mkdir(exist_ok=True)
    data = {
        "storage": {"url": "s3://bucket/p"},
        "accounts": inline or [],
        "accounts_dir": "accounts.d",
        **extra,
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    return config


def _write(path: Path, data: object) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


def _problems(config: Path) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_settings(config)
    return err.value.problems


def test_files_are_merged_with_inline_accounts(tmp_path: Path) -> None:
    """One account per file, a list per file, inline accounts: all loaded; hidden files skipped."""
    config = _setup(tmp_path, [_account("inline")])
    _write(tmp_path / "accounts.d" / "b.yaml", _account("single"))
    _write(tmp_path / "accounts.d" / "a.yml", [_account("one"), _account("two")])
    _write(tmp_path / "accounts.d" / ".tmp-editor.yaml", {"broken": True})
    _write(tmp_path / "accounts.d" / "notes.txt", {"broken": True})
    settings = load_settings(config)
    assert [a.name for a in settings.accounts] == ["inline", "one", "two", "single"]
    assert settings.accounts_dir == tmp_path / "accounts.d"


def test_a_duplicate_name_names_both_files(tmp_path: Path) -> None:
    """The same account name in two places is one error naming both of them."""
    config = _setup(tmp_path, [_account("support")])
    dup = _write(tmp_path / "accounts.d" / "support.yaml", _account("support"))
    (problem,) = _problems(config)
    assert problem.startswith(f"{dup}: ")
    assert f"already defined by {config}: accounts[0]" in problem


def test_every_problem_names_its_file_and_key(tmp_path: Path) -> None:
    """Problems in several account files (and in the main file) are all reported, with keys."""
    config = _setup(tmp_path, lock_ttl=0)
    one = _write(tmp_path / "accounts.d" / "one.yaml", _account("one", interval=0))
    many = _write(
        tmp_path / "accounts.d" / "many.yaml", [_account("ok"), _account("bad", security="x")]
    )
    (tmp_path / "accounts.d" / "junk.yaml").write_text("name: [unclosed\n")
    empty = tmp_path / "accounts.d" / "empty.yaml"
    empty.write_text("")
    problems = _problems(config)
    assert f"{config}: lock_ttl: Input should be greater than or equal to 2" in problems
    assert any(p.startswith(f"{one}: interval: ") for p in problems)
    assert any(p.startswith(f"{many}: [1](bad).security: ") for p in problems)
    assert any(
        p.startswith(f"{tmp_path / 'accounts.d' / 'junk.yaml'}: not valid YAML") for p in problems
    )
    assert f"{empty}: expected one account (a mapping) or a list of accounts" in problems
    assert len(problems) == 5


def test_a_missing_directory_is_an_error(tmp_path: Path) -> None:
    """accounts_dir must name an existing directory."""
    config = _setup(tmp_path)
    (tmp_path / "accounts.d").rmdir()
    assert _problems(config) == [
        f"{config}: accounts_dir: {tmp_path / 'accounts.d'} is not a directory"
    ]


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_watcher_picks_up_new_changed_and_removed_account_files(tmp_path: Path) -> None:
    """A new file adds an account, an edit changes it, a removal drops it; checks are throttled."""
    config = _setup(tmp_path, dispatch_interval=5)
    clock = _Clock()
    watcher = ConfigWatcher(load_settings(config), clock)
    new = _write(tmp_path / "accounts.d" / "new.yaml", _account("new"))
    assert watcher.current().accounts == ()  # within dispatch_interval of the last check
    clock.now = 5
    with capture_logs() as logs:
        assert [a.name for a in watcher.current().accounts] == ["new"]
    assert logs[0]["event"] == "config.reloaded" and logs[0]["added"] == ["new"]
    _write(new, _account("new", interval=600, host="pop2.example.com"))
    assert watcher.current(force=True).accounts[0].interval == 600
    new.unlink()
    assert watcher.current(force=True).accounts == ()


def test_a_broken_file_is_logged_and_the_last_good_config_stays(tmp_path: Path) -> None:
    """An invalid new file: config.reload_failed names file and key; nothing else changes."""
    config = _setup(tmp_path, [_account("kept")])
    watcher = ConfigWatcher(load_settings(config), _Clock())
    bad = _write(tmp_path / "accounts.d" / "bad.yaml", _account("bad", port=0))
    with capture_logs() as logs:
        assert [a.name for a in watcher.current(force=True).accounts] == ["kept"]
        assert [a.name for a in watcher.current(force=True).accounts] == ["kept"]
    (failed,) = logs  # logged once per change, not on every check
    assert failed["event"] == "config.reload_failed" and failed["log_level"] == "error"
    assert failed["problems"] == [f"{bad}: port: Input should be greater than or equal to 1"]
    _write(bad, _account("bad"))
    assert [a.name for a in watcher.current(force=True).accounts] == ["kept", "bad"]


def test_keys_read_at_start_keep_their_values_until_restart(tmp_path: Path) -> None:
    """A changed redis_url is not applied by a reload: it is reported as needing a restart."""
    config = _setup(tmp_path, redis_url="redis://127.0.0.1:1/0")
    watcher = ConfigWatcher(load_settings(config), _Clock())
    _setup(tmp_path, redis_url="redis://10.9.9.9:6379/0", quarantine_after=9)
    with capture_logs() as logs:
        current = watcher.current(force=True)
    assert current.redis_url == "redis://127.0.0.1:1/0" and current.quarantine_after == 9
    assert {"event": "config.restart_needed", "keys": ["redis_url"]}.items() <= logs[-1].items()


def test_storage_options_of_an_account_file_are_checked_like_inline_ones(tmp_path: Path) -> None:
    """Object Lock needs an S3 store: an account file asking for it on a directory store is
    refused as an inline account would be, naming the file; on S3 it is accepted."""
    lock = {"storage_options": {"object_lock": {"mode": "governance", "days": 30}}}
    config = _setup(tmp_path, storage={"url": f"file://{tmp_path}/store"})
    _write(tmp_path / "accounts.d" / "locked.yaml", _account("locked", **lock))
    (problem,) = _problems(config)
    assert problem == (
        f"{tmp_path}/accounts.d/locked.yaml: storage_options.object_lock: needs an s3:// store"
    )
    s3 = _setup(tmp_path)
    assert load_settings(s3).options_for(load_settings(s3).account("locked")).object_lock
