"""Read the YAML configuration file and validate it, reporting every problem at once.

Each problem names the file, the key path (with account names for list items) and what
was expected; :mod:`ingest.config` holds the schema.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ingest.config import Settings
from ingest.errors import ConfigError

CONFIG_ENV = "INGEST_CONFIG"
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: 4x as fast


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` through libyaml when PyYAML has it (a 100,000-account file loads
    in seconds instead of half a minute); the same safe subset of YAML either way.

    A file that holds JSON (which is YAML too) is read by the json module: the whole load
    and validation gets about 7 times faster (15 instead of 100 us per account), which a
    generated config of 100,000 accounts wants.
    Anything that is not valid JSON is read as YAML."""
    if text.lstrip()[:1] in ("{", "["):
        try:
            return json.loads(text)
        except ValueError:
            pass  # YAML flow style, or not valid JSON: YAML says what is wrong
    return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader, as above


def _loc(loc: tuple[int | str, ...], data: Any) -> str:
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            name = node[part].get("name") if _is_named(node, part) else None
            out += f"[{part}]" + (f"({name})" if name else "")
        else:
            out += f".{part}" if out else str(part)
        node = _child(node, part)
    return out or "(top level)"


def _is_named(node: Any, index: int) -> bool:
    return isinstance(node, list) and index < len(node) and isinstance(node[index], dict)


def _child(node: Any, part: int | str) -> Any:
    try:
        return node[part]
    except (KeyError, IndexError, TypeError):
        return None


def parse_settings(data: Any, source: str) -> Settings:
    """Validate already-loaded data; every problem is reported at once."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Settings.model_validate({**data, "source": source})
    except ValidationError as err:
        raise ConfigError(validation_problems(err, data, f"{source}: ")) from None


def validation_problems(
    err: ValidationError, data: Any, where: str, at: tuple[int | str, ...] = ()
) -> list[str]:
    """One line per problem: ``where`` + the key path (with account names) + what is wrong.

    ``at`` is the path of the validated value inside ``data`` (for a list item, its index).
    """
    problems = []
    for e in err.errors():
        msg = e["msg"].removeprefix("Value error, ")
        problems.append(f"{where}{_loc((*at, *e['loc']), data)}: {msg}")
    return problems


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read the YAML file named by ``path`` or ``$INGEST_CONFIG``."""
    raw_path = path or os.environ.get(CONFIG_ENV)
    if not raw_path:
        raise ConfigError(f"no configuration: pass --config FILE or set {CONFIG_ENV}")
    file = Path(raw_path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{file}: cannot read configuration: {err.strerror}") from None
    try:
        data = load_yaml(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{file}: not valid YAML: {err}") from None
    if isinstance(data, dict) and data.get("accounts_dir") is not None:
        from ingest.accounts_dir import with_accounts_dir  # noqa: PLC0415 - it imports us

        return with_accounts_dir(data, file)
    return parse_settings(data, str(file))
