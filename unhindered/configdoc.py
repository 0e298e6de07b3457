"""The configuration reference (docs/probe-config.md, docs/collector-config.md) and the
JSON Schemas editors use (deploy/schemas/), generated from the pydantic models: one
source for every setting's description, type, default and bounds.

    python -m unhindered.configdoc --write    # rewrite them
    python -m unhindered.configdoc --check    # exit 1 naming the ones out of date

Nothing imports this module when a config is loaded. The models are named by string, as
entry points are: the shared core imports neither program.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from unhindered.configfile import ReadFile, WriteFile, file_rules

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
REGENERATE = "python -m unhindered.configdoc --write"


@dataclass(frozen=True)
class Program:
    name: str  # probe, collector
    model: str  # module:class
    title: str
    example: str  # the shipped example, relative to the repository
    intro: str

    def config_model(self) -> type[BaseModel]:
        module, _, name = self.model.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def doc(self) -> str:
        return f"docs/{self.name}-config.md"

    @property
    def schema(self) -> str:
        return f"deploy/schemas/{self.name}.schema.json"


PROGRAMS = (
    Program("probe", "probes.config:ProbeConfig", "Probe configuration",
            "deploy/examples/probe.yaml",
            "`unhindered-probe run -c probe.yaml` (and `check-config`, `once`) read one YAML "
            "file. Measurements and the local context are described in "
            "[probe.md](probe.md), the SNMP agent in [snmp.md](snmp.md)."),
    Program("collector", "collector.config:CollectorConfig", "Collector configuration",
            "deploy/examples/collector.yaml",
            "`unhindered-collector -c collector.yaml serve` (and every other command) read "
            "one YAML file; without `-c` every setting has its default. `--database URL` "
            "and `--listen HOST:PORT` override the file."),
)


# -- JSON Schema ----------------------------------------------------------------------------


def json_schema(program: Program) -> dict:
    schema = program.config_model().model_json_schema()
    return {"$schema": SCHEMA_DIALECT,
            "$comment": f"Generated from {program.model} by `{REGENERATE}`.", **schema}


def render_schema(program: Program) -> str:
    return json.dumps(json_schema(program), indent=2, ensure_ascii=False) + "\n"


# -- defaults, types and bounds, as people read them -------------------------------------------


def default_of(field: FieldInfo) -> Any:
    """The field's default value; PydanticUndefined when it is required."""
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return field.default


def default_text(value: Any) -> str:
    """A default as the docs and the examples' comments state it."""
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list | tuple):
        items = list(value)
        if len(items) > 4 and all(isinstance(i, int) for i in items) and items == list(
                range(items[0], items[-1] + 1)):
            return f"{items[0]} to {items[-1]}"
        return "[" + ", ".join(default_text(i) for i in items) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {default_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _without_null(schema: dict) -> dict:
    options = [s for s in schema.get("anyOf", []) if s.get("type") != "null"]
    if len(options) == 1:
        merged = {k: v for k, v in schema.items() if k != "anyOf"}
        return {**merged, **options[0]}
    return schema


_FORMATS = {"path": "path", "password": "secret string", "uri": "URL"}
_BOUNDS = (("minimum", "≥ {}"), ("exclusiveMinimum", "> {}"), ("maximum", "≤ {}"),
           ("exclusiveMaximum", "< {}"), ("minLength", "at least {} character"),
           ("maxLength", "at most {} character"), ("minItems", "at least {} item"),
           ("maxItems", "at most {} item"))


def type_text(schema: dict) -> str:
    schema = _without_null(schema)
    if "enum" in schema:
        return "one of " + ", ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    if "anyOf" in schema:
        return " or ".join(type_text(s) for s in schema["anyOf"])
    kind = schema.get("type", "")
    if kind == "array":
        text = "list"
        if "items" in schema:
            text += " of " + type_text(schema["items"])
    else:
        text = _FORMATS.get(schema.get("format", ""), {"object": "mapping"}.get(kind, kind))
    bounds = [form.format(_number(schema[key])) + ("s" if form.endswith(
        ("character", "item")) and schema[key] != 1 else "")
        for key, form in _BOUNDS if key in schema]
    if "pattern" in schema:
        bounds.append(f"matching `{schema['pattern']}`")
    return text + (f" ({', '.join(bounds)})" if bounds else "")


def _number(value: Any) -> str:
    return default_text(value) if isinstance(value, float | int) else str(value)


def file_text(field: FieldInfo) -> str:
    rules = file_rules(field)
    texts = []
    for rule in rules:
        if isinstance(rule, WriteFile):
            texts.append("written (for a SQLite URL: its file): its directory must exist "
                         "and be writable by the program's user" if rule.path_of else
                         "written: its directory must exist and be writable by the "
                         "program's user")
        elif isinstance(rule, ReadFile):
            text = "read: must exist and be readable by the program's user"
            if rule.secret:
                text += ", and open to its owner only (`chmod 600`)"
            if rule.needed_until:
                text += (f"; not needed (nor checked) once the file `{rule.needed_until}` "
                         "names exists")
            if rule.unless_written_by:
                text += ("; when it does not exist yet and " + " or ".join(
                    f"`{n}`" for n in rule.unless_written_by) + " is set, it is written, "
                    "and its directory must be writable")
            texts.append(text)
    return "; ".join(texts)


# -- the reference page --------------------------------------------------------------------


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found += _models(arg)
    return found


def _is_sequence(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (list, tuple) or any(
        _is_sequence(a) for a in typing.get_args(annotation))


@dataclass
class Section:
    path: str  # collector, checks[] (kind icmp), snmp.users[]
    model: type[BaseModel]
    summary: str


def sections(model: type[BaseModel]) -> list[Section]:
    """Every model in the config, depth first, each once (a model met again, such as
    the SNMP user of several collector sections, is referred to its first section)."""
    found: list[Section] = [Section("", model, "")]
    seen: dict[type[BaseModel], str] = {model: ""}
    pending = [("", model)]
    while pending:
        prefix, current = pending.pop(0)
        for name, field in current.model_fields.items():
            subs = _models(field.annotation)
            many = _is_sequence(field.annotation)
            for sub in subs:
                path = f"{prefix}{name}{'[]' if many else ''}"
                kind = sub.model_fields.get("kind")
                if len(subs) > 1 and kind is not None:
                    path += f" (kind `{typing.get_args(kind.annotation)[0]}`)"
                if sub in seen:
                    continue
                seen[sub] = path
                found.append(Section(path, sub, field.description or ""))
                pending.append((path.split(" ")[0] + ".", sub))
    return found


def _section_title(path: str) -> str:
    return "Top level" if not path else f"`{path.split(' ')[0]}`" + (
        path[len(path.split(" ")[0]):] if " " in path else "")


def _anchor(title: str) -> str:
    keep = "".join(c for c in title.lower().replace(" ", "-") if c.isalnum() or c in "-_")
    return keep


def render_doc(program: Program) -> str:
    model = program.config_model()
    all_sections = sections(model)
    where = {s.model: s.path for s in all_sections}
    lines = [
        f"# {program.title}",
        "",
        f"<!-- Generated from {program.model} by `{REGENERATE}`: edit the model's "
        "field descriptions, not this page. -->",
        "",
        program.intro,
        f"[`{program.example}`](../{program.example}) shows every setting with its "
        "default.",
        "",
        "A mistake is reported with the file, the line, the setting and what was expected, "
        "and the program exits with status 2 before doing anything. Every file a setting "
        "names is checked when the file is loaded: a file the program reads must exist and "
        "be readable by the user the program runs as, and a file holding a secret must be "
        "open to its owner only (the error gives the `chmod` to run); a file the program "
        "writes needs an existing directory that user can write (the systemd units create "
        "`/var/lib/unhindered` with `StateDirectory=`; the program never creates "
        "directories). A relative path is relative to the config file.",
        "",
        "## Editor support",
        "",
        f"[`{program.schema}`](../{program.schema}) is the JSON Schema of this file. "
        "Editors that use the YAML language server (VS Code's YAML extension, Neovim, "
        "Helix, Emacs lsp-mode, JetBrains IDEs) read the schema named on a comment line "
        "of the file, as the shipped example's first line does:",
        "",
        "```yaml",
        f"# yaml-language-server: $schema=../schemas/{Path(program.schema).name}",
        "```",
        "",
        "and then complete settings, show their descriptions and mark mistakes as you "
        "type. The path is relative to the config file; for a config elsewhere, give the "
        "schema's absolute path or a URL where you publish it. The schema checks names, "
        "types and bounds; rules that tie settings together, and the files settings name, "
        "are checked by `check-config`.",
        "",
        "## Settings",
        "",
    ]
    for section in all_sections:
        title = _section_title(section.path)
        if section.path:
            lines += [f"### {title}", ""]
            doc = (section.model.__doc__ or "").strip()
            intro = section.summary[:1].upper() + section.summary[1:] if section.summary else ""
            if doc and not doc.startswith(("Usage docs", "A base class")):
                intro = (intro + ". " if intro else "") + " ".join(doc.split())
            if intro:
                lines += [intro.rstrip(".") + ".", ""]
        lines += ["| setting | type | default | meaning |", "| --- | --- | --- | --- |"]
        schema = section.model.model_json_schema()
        for name, field in section.model.model_fields.items():
            prop = schema.get("properties", {}).get(name, {})
            subs = _models(field.annotation)
            if subs:
                targets = [where[s] for s in subs if s in where]
                kind = ", ".join(f"[{_section_title(t)}](#{_anchor(_section_title(t))})"
                                 for t in targets)
                shape = "list of " if _is_sequence(field.annotation) else ""
                type_cell = f"{shape}{kind}" if kind else "section"
            else:
                type_cell = type_text(prop)
            default = default_of(field)
            if isinstance(default, BaseModel):
                default_cell = "see its section"
            elif default is None and subs:
                default_cell = "off"
            else:
                default_cell = default_text(default)
                if default_cell not in ("required", "unset"):
                    default_cell = f"`{default_cell}`"
            meaning = field.description or ""
            files = file_text(field)
            if files:
                meaning += f". File {files}"
            lines.append(f"| `{name}` | {_cell(type_cell)} | {_cell(default_cell)} | "
                         f"{_cell(meaning)} |")
        lines.append("")
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


# -- the command -----------------------------------------------------------------------------


def outputs() -> dict[str, str]:
    """Repository path -> what the generator makes of it now."""
    made: dict[str, str] = {}
    for program in PROGRAMS:
        made[program.doc] = render_doc(program)
        made[program.schema] = render_schema(program)
    return made


def stale(root: Path = ROOT) -> list[str]:
    return [name for name, text in outputs().items()
            if not (root / name).is_file() or (root / name).read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unhindered.configdoc",
                                     description=__doc__.split("\n\n")[0])
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="rewrite the docs and schemas")
    action.add_argument("--check", action="store_true", help="exit 1 if any is out of date")
    args = parser.parse_args(argv)
    if args.check:
        out_of_date = stale()
        for name in out_of_date:
            print(f"{name} is out of date: run {REGENERATE}", file=sys.stderr)
        return 1 if out_of_date else 0
    for name, text in outputs().items():
        path = ROOT / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
