"""Generate README's config reference (from the pydantic models) and CLI reference (from click).

    python scripts/config_reference.py          rewrite README.md between the markers
    python scripts/config_reference.py --check  exit 1 when README.md is out of date

``make docs`` runs the first; a unit test runs the second. The sections live between
``<!-- config-reference:start -->`` / ``<!-- config-reference:end -->`` and
``<!-- cli-reference:start -->`` / ``<!-- cli-reference:end -->``.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import click
from pydantic import BaseModel
from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.cli import main as cli_main  # noqa: E402
from ingest.config import Settings  # noqa: E402

_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", Path: "path"}
_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model an annotation holds (directly, optional, or as a tuple) and its key suffix."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, "."
    if (
        typing.get_origin(annotation) is tuple
        and args
        and isinstance(args[0], type)
        and issubclass(args[0], BaseModel)
    ):
        return args[0], "[]."
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0], "."
    return None, ""


def _is_model_union(annotation: Any) -> bool:
    args = typing.get_args(annotation)
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and all(
        isinstance(a, type) and issubclass(a, BaseModel) for a in args
    )


def type_name(annotation: Any) -> str:
    """A short, human type: ``integer``, ``'tls' | 'plain'``, ``path or null``, ..."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if _is_model_union(annotation):
        return "mapping (by `type`)"
    if origin is typing.Literal:
        return " \\| ".join(f"`{v}`" for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [a for a in typing.get_args(annotation) if a is not type(None)]
        inner = " or ".join(type_name(a) for a in parts)
        return f"{inner} or null" if len(parts) < len(typing.get_args(annotation)) else inner
    if origin is tuple:
        return f"list of {type_name(typing.get_args(annotation)[0])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    return _TYPES.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _bounds(info: FieldInfo) -> str:
    found = []
    for meta in info.metadata:
        found += [f"{sym} {getattr(meta, n)}" for n, sym in _BOUNDS if hasattr(meta, n)]
    return f" ({', '.join(found)})" if found else ""


def _default(info: FieldInfo) -> str:
    if info.is_required():
        return "required"
    value = info.get_default(call_default_factory=True)
    if value is None or value == ():
        return "none"
    if isinstance(value, BaseModel):
        return "see below"
    return f"`{json.dumps(value) if not isinstance(value, str) else value}`"


def rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of every key of ``model``, nested ones after it."""
    out = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue
        key = f"{prefix}{name}"
        desc = (info.description or "").replace("|", "\\|").replace("*", "\\*")
        out.append((f"`{key}`", type_name(info.annotation) + _bounds(info), _default(info), desc))
        nested, suffix = _model_of(info.annotation)
        if nested is not None:
            out += rows(nested, key + suffix)
    return out


def config_reference() -> str:
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    lines += [f"| {k} | {t} | {d} | {desc} |" for k, t, d, desc in rows(Settings)]
    return "\n".join(lines)


def _commands(group: click.Group, path: str) -> list[tuple[str, click.Command]]:
    out: list[tuple[str, click.Command]] = []
    for name in sorted(group.commands):
        command = group.commands[name]
        out.append((f"{path} {name}", command))
        if isinstance(command, click.Group):
            out += _commands(command, f"{path} {name}")
    return out


def cli_reference() -> str:
    """Every command's usage and --help text, as ``ingest COMMAND --help`` prints them."""
    parts = []
    for path, command in [("ingest", cli_main), *_commands(cli_main, "ingest")]:
        if isinstance(command, click.Group) and command is not cli_main:
            continue  # a group's subcommands follow it, each with its own help
        ctx = click.Context(
            command,
            info_name=path,
            terminal_width=100,
            max_content_width=100,
            help_option_names=["-h", "--help"],
        )
        parts.append(f"#### `{path}`\n\n```\n{command.get_help(ctx)}\n```")
    return "\n\n".join(parts)


def replace_between(text: str, name: str, body: str) -> str:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    if start not in text or end not in text:
        raise SystemExit(f"README.md lacks the markers {start} ... {end}")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}\n{end}{tail}"


def render(text: str) -> str:
    text = replace_between(text, "config-reference", config_reference())
    return replace_between(text, "cli-reference", cli_reference())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when README.md is stale")
    args = parser.parse_args(argv)
    current = README.read_text(encoding="utf-8")
    wanted = render(current)
    if args.check:
        if wanted != current:
            sys.stderr.write("README.md is out of date: run `make docs`\n")
            return 1
        return 0
    README.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
