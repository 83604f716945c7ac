"""Accounts from a directory of files (one per account, for config management tools).

``accounts_dir`` names a directory; every ``*.yaml``/``*.yml`` file in it (hidden files
ignored: editors and config tools write temporary files as ``.name``) holds one account
mapping or a list of them. They are merged with the inline ``accounts``; a name defined
twice is an error naming both places, and every problem names the file and the key.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ingest.config import AccountConfig, Settings
from ingest.config_load import load_yaml, parse_settings, validation_problems
from ingest.errors import ConfigError
from ingest.storage_options import option_problems

SUFFIXES = (".yaml", ".yml")


def resolve_dir(value: Any, config_file: Path) -> Path:
    """``accounts_dir`` as written, relative paths taken from the config file's directory."""
    return config_file.parent / Path(str(value))


def account_files(directory: Path) -> list[Path]:
    """The account files of ``directory``, sorted by name."""
    return sorted(
        p
        for p in directory.iterdir()
        if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file()
    )


def with_accounts_dir(data: dict[str, Any], config_file: Path) -> Settings:
    """The settings of ``config_file`` plus every account in its ``accounts_dir``."""
    directory = resolve_dir(data["accounts_dir"], config_file)
    problems: list[str] = []
    base: Settings | None = None
    try:
        base = parse_settings({**data, "accounts_dir": str(directory)}, str(config_file))
    except ConfigError as err:
        problems += err.problems
    inline = base.accounts if base else ()
    found = [(acc, f"{config_file}: accounts[{i}]") for i, acc in enumerate(inline)]
    if not directory.is_dir():
        problems.append(f"{config_file}: accounts_dir: {directory} is not a directory")
    else:
        for path in account_files(directory):
            found += _accounts_of(path, problems)
    problems += _duplicates(found)
    if base is not None:  # the settings' check of inline accounts' options, for these too
        own = found[len(inline) :]
        named = [(f"{where}: storage_options", base.options_for(acc)) for acc, where in own]
        problems += option_problems(base.storage, named, s3=base.storage.scheme == "s3")
    if problems or base is None:
        raise ConfigError(problems)
    return base.model_copy(update={"accounts": tuple(acc for acc, _ in found)})


def _accounts_of(path: Path, problems: list[str]) -> list[tuple[AccountConfig, str]]:
    """The accounts one file defines; its problems are appended to ``problems``."""
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as err:
        problems.append(f"{path}: cannot read account file: {err.strerror}")
        return []
    except yaml.YAMLError as err:
        problems.append(f"{path}: not valid YAML: {err}")
        return []
    entries = data if isinstance(data, list) else [data]
    if not entries or not all(isinstance(e, dict) for e in entries):
        problems.append(f"{path}: expected one account (a mapping) or a list of accounts")
        return []
    out = []
    for i, entry in enumerate(entries):
        at: tuple[int, ...] = (i,) if isinstance(data, list) else ()
        try:
            account = AccountConfig.model_validate(entry)
        except ValidationError as err:
            problems += validation_problems(err, data, f"{path}: ", at)
        else:
            out.append((account, f"{path}" + (f": [{i}]" if at else "")))
    return out


def _duplicates(found: list[tuple[AccountConfig, str]]) -> list[str]:
    seen: dict[str, str] = {}
    problems = []
    for acc, where in found:
        if acc.name in seen:
            problems.append(
                f"{where}: account name {acc.name!r} is already defined by {seen[acc.name]}"
            )
        else:
            seen[acc.name] = where
    return problems


def signature(config_file: Path, directory: Path | None) -> tuple[object, ...]:
    """A cheap fingerprint (stat only) of the config file and every account file."""
    files = [config_file]
    if directory is not None and directory.is_dir():
        files += account_files(directory)
    return tuple((str(p), *_stat(p)) for p in files)


def _stat(path: Path) -> tuple[int, int, int]:
    try:
        st = os.stat(path)  # follows symlinks: Kubernetes ConfigMap volumes swap their target
    except OSError:
        return (0, 0, 0)
    return (st.st_mtime_ns, st.st_size, st.st_ino)
