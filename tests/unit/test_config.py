"""Config validation: every problem reported at once, with file, key and expectation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ingest.config_load import load_settings, load_yaml, parse_settings
from ingest.errors import ConfigError
from ingest.secret_refs import resolve_password

GOOD = {
    "redis_url": "redis://127.0.0.1:6379/0",
    "storage": {"url": "s3://bucket/some/prefix", "endpoint_url": "http://127.0.0.1:9000"},
    "accounts": [
        {"name": "support", "host": "pop.example.com", "username": "u", "password_env": "PW"}
    ],
}


def _problems(data: object) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_settings(data, "/etc/ingest.yaml")
    return err.value.problems


def test_a_good_config_gets_documented_defaults() -> None:
    """Defaults: implicit TLS on 995, delete after store, 60 s interval, prefix parsed."""
    s = parse_settings(GOOD, "f.yaml")
    acc = s.accounts[0]
    assert (acc.security, acc.effective_port, acc.delete, acc.interval) == (
        "tls",
        995,
        "after_store",
        60,
    )
    assert s.storage.bucket == "bucket" and s.storage.prefix == "some/prefix"


def test_every_problem_is_reported_with_file_and_key() -> None:
    """Several mistakes give several lines, each naming the file and the key path."""
    bad = {
        "storage": {"url": "ftp://nowhere"},
        "accounts": [
            {"name": "Support!", "host": "h", "username": "u", "password_env": "X"},
            {"name": "b", "host": "h", "username": "u", "password_env": "X", "interval": 0},
        ],
    }
    problems = _problems(bad)
    assert len(problems) == 3
    assert all(p.startswith("/etc/ingest.yaml: ") for p in problems)
    joined = "\n".join(problems)
    assert "storage: expected s3://BUCKET" in joined
    assert "accounts[0](Support!).name" in joined and "accounts[1](b).interval" in joined


def test_inline_passwords_are_refused() -> None:
    """A password written into the config file is rejected with the way to do it instead."""
    data = {**GOOD, "accounts": [{**GOOD["accounts"][0], "password": "hunter2"}]}
    (problem,) = _problems(data)
    assert "password_env" in problem and "hunter2" not in problem


def test_plaintext_needs_explicit_consent() -> None:
    """security: plain is refused unless allow_plaintext: true."""
    acct = {**GOOD["accounts"][0], "security": "plain"}
    (problem,) = _problems({**GOOD, "accounts": [acct]})
    assert "allow_plaintext" in problem
    ok = parse_settings({**GOOD, "accounts": [{**acct, "allow_plaintext": True}]}, "f")
    assert ok.accounts[0].effective_port == 110


def test_duplicate_account_names_and_unknown_keys() -> None:
    """Names must be unique, and a misspelt key is an error rather than silently ignored."""
    acct = GOOD["accounts"][0]
    problems = _problems({**GOOD, "accounts": [acct, {**acct, "intervall": 5}]})
    joined = "\n".join(problems)
    assert "intervall" in joined and "Extra inputs" in joined
    problems = _problems({**GOOD, "accounts": [acct, acct]})
    assert "repeated: support" in problems[0]


def test_an_account_is_found_by_name_and_a_miss_names_only_ten() -> None:
    """account(name) answers from the accounts of the settings it is asked (a copy with
    other accounts, as an accounts_dir merge or a reload makes, from its own); a miss names
    at most ten accounts, however many there are."""
    base = GOOD["accounts"][0]
    many = [{**base, "name": f"a{i:02d}"} for i in range(25)]
    s = parse_settings({**GOOD, "accounts": many}, "f.yaml")
    assert s.account("a07") is s.accounts[7] and s.account("a24") is s.accounts[24]
    fewer = s.model_copy(update={"accounts": s.accounts[:3]})
    assert fewer.account("a02").name == "a02"
    with pytest.raises(ConfigError, match=r"'a07' \(known: a00, a01, a02\)$"):
        fewer.account("a07")
    with pytest.raises(ConfigError, match=r"known: a00, .*, a09 and 15 more\)$"):
        s.account("zz")


def test_the_schedulers_hash_tag_is_not_an_account_name() -> None:
    """An account named ``schedule`` would share the scheduler's Redis keys."""
    (problem,) = _problems({**GOOD, "accounts": [{**GOOD["accounts"][0], "name": "schedule"}]})
    assert "accounts[0](schedule).name" in problem and "reserved" in problem


def test_yaml_errors_and_missing_files_name_the_file(tmp_path: Path) -> None:
    """Unreadable or invalid files are reported with their path."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts: [\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_settings(bad)


def test_a_config_file_holding_json_gives_the_same_settings_as_its_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON is YAML too: a generated file of many accounts may be JSON, read by the json
    module (several times faster, PyYAML not involved), and means exactly what the same
    data in YAML means."""
    data = {
        **GOOD,
        "storage": {"url": f"file://{tmp_path}/store"},
        "accounts": [
            {**GOOD["accounts"][0], "name": f"a{i}", "port": 995, "interval": 30 + i,
             "allow_plaintext": i % 2 == 0, "delete": "never" if i else "after_store"}
            for i in range(3)
        ],
    }  # fmt: skip
    as_yaml, as_json = tmp_path / "c.yaml", tmp_path / "c.json"
    as_yaml.write_text(yaml.safe_dump(data))
    as_json.write_text("\n  " + json.dumps(data, indent=2))
    from_yaml = load_settings(as_yaml).model_dump()

    def no_yaml(*args: object, **kwargs: object) -> None:
        raise AssertionError("PyYAML read a JSON file")

    monkeypatch.setattr(yaml, "load", no_yaml)
    assert load_settings(as_json).model_dump() == from_yaml
    assert load_yaml(json.dumps(data)) == data


def test_yaml_that_only_looks_like_json_is_still_yaml(tmp_path: Path) -> None:
    """Flow-style YAML (unquoted keys) starts like JSON but is read as the YAML it is, and
    a broken file is reported as YAML, naming the file."""
    assert load_yaml("{name: support, interval: 60}") == {"name": "support", "interval": 60}
    bad = tmp_path / "bad.json"
    bad.write_text('{"accounts": [')
    with pytest.raises(ConfigError, match=r"bad\.json: not valid YAML"):
        load_settings(bad)


def test_passwords_come_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """password_env and password_file resolve; missing ones name the key, not the secret."""
    s = parse_settings(GOOD, "f.yaml")
    monkeypatch.delenv("PW", raising=False)
    with pytest.raises(ConfigError, match=r"accounts\(support\)\.password_env.*PW is not set"):
        resolve_password(s.accounts[0], "f.yaml")
    monkeypatch.setenv("PW", "s3cret")
    assert resolve_password(s.accounts[0]) == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("from-file\n")
    acct = {**GOOD["accounts"][0], "password_env": None, "password_file": str(secret)}
    s2 = parse_settings({**GOOD, "accounts": [acct]}, "f.yaml")
    assert resolve_password(s2.accounts[0]) == "from-file"


def test_secrets_with_line_breaks_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """A password containing CR or LF could inject POP3 commands: refused before sending."""
    monkeypatch.setenv("PW", "a\r\nDELE 1")
    with pytest.raises(ConfigError, match="CR, LF"):
        resolve_password(parse_settings(GOOD, "f").accounts[0])


def test_oversize_policy_defaults_to_leave_and_rejects_unknown_values() -> None:
    """oversize is leave unless set to store_raw; anything else names the key and choices."""
    assert parse_settings(GOOD, "f").accounts[0].oversize == "leave"
    acct = {**GOOD["accounts"][0], "oversize": "store_raw"}
    assert parse_settings({**GOOD, "accounts": [acct]}, "f").accounts[0].oversize == "store_raw"
    (problem,) = _problems({**GOOD, "accounts": [{**acct, "oversize": "drop"}]})
    assert "accounts[0](support).oversize" in problem and "store_raw" in problem
