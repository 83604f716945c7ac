"""README's generated references: in step with the config schema and the CLI's --help."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_readme_references_are_up_to_date() -> None:
    """README.md holds what `make docs` generates (run it after changing keys or commands)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert _script().render(readme) == readme, "README.md is out of date: run `make docs`"


def test_a_stale_reference_is_detected() -> None:
    """A README whose table lacks a key is rewritten, so the check above can fail."""
    script = _script()
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    stale = readme.replace("| `accounts_dir` |", "| `accounts_folder` |")
    assert stale != readme and script.render(stale) == readme


def test_every_config_key_is_in_the_table_with_a_description() -> None:
    """Each key of every config model has a row, and each row says what the key means."""
    rows = _script().rows(_script().Settings)
    keys = {key.strip("`") for key, *_ in rows}
    assert {"redis_url", "storage.url", "accounts[].name", "accounts[].oauth2.token_url"} <= keys
    assert {"accounts_dir", "accounts[].interval", "store_concurrency"} <= keys
    assert not [key for key, _, _, desc in rows if not desc], "add a Field(description=...)"


def test_every_command_is_in_the_cli_reference() -> None:
    """Every leaf command of `ingest` has its --help text in the CLI reference."""
    script = _script()
    text = script.cli_reference()
    for path, command in script._commands(script.cli_main, "ingest"):
        if not hasattr(command, "commands"):
            assert f"#### `{path}`" in text and f"Usage: {path}" in text
    assert "ledger show" in text and "completion" in text
