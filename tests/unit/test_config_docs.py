"""The configuration reference, the JSON Schemas and the shipped examples agree with the
config models: the docs and schemas are what the generator makes of the models, the
examples validate against the schemas and the models, and every setting of the models
appears in its example with its true default."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

import jsonschema
import pytest
import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from unhindered import configdoc
from unhindered.configfile import file_rules, parse_model

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = {p.name: p for p in configdoc.PROGRAMS}
# A commented-out setting (`# key: value`, `#   - key: value`), one level of comment off
# at a time (`#   # key: value` is an alternative inside a section shown commented).
COMMENTED_SETTING = re.compile(
    r"^(\s*)# ?(?=\s*(?:# ?\s*)*(?:-\s+)?[A-Za-z_][A-Za-z0-9_]*:(?:\s|$))")


def test_the_docs_and_schemas_are_generated_from_the_models():
    stale = configdoc.stale()
    assert not stale, (f"{', '.join(stale)} differ from the config models: run "
                       f".venv/bin/{configdoc.REGENERATE} and commit the result")


def uncommented(text: str) -> str:
    """The example with every commented-out setting turned on (alternatives included)."""
    lines = text.splitlines()
    while True:
        changed = [COMMENTED_SETTING.sub(r"\1", line) for line in lines]
        if changed == lines:
            return "\n".join(lines) + "\n"
        lines = changed


@pytest.mark.parametrize("name", PROGRAMS)
def test_the_examples_validate_against_the_published_schemas(name):
    program = PROGRAMS[name]
    schema = json.loads((ROOT / program.schema).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    text = (ROOT / program.example).read_text()
    assert text.splitlines()[0] == (
        f"# yaml-language-server: $schema=../schemas/{Path(program.schema).name}")
    for shown in (text, uncommented(text)):  # the commented settings are right too
        errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in validator.iter_errors(yaml.safe_load(shown))]
        assert not errors, errors
    # ... and the models accept it as shipped.
    parse_model(text, ROOT / program.example, program.config_model())
    # The schema can fail: a misspelt setting is refused.
    wrong = yaml.safe_load(text) | {"logging": {"levle": "INFO"}}
    assert any("levle" in e.message for e in validator.iter_errors(wrong))


def _owner(model: type[BaseModel], name: str) -> type:
    """The class that declares the field: a field common to every check kind (or to every
    SNMP credential) is shown once, on any of them."""
    return next(c for c in reversed(model.__mro__) if name in getattr(c, "__annotations__", {}))


def _models(annotation) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


class Shown:
    """Walks an example (every setting turned on) along the models, noting which fields
    of each model it shows, and which it shows with their true default: as the value, or
    as `default: X` in the line's comment. A setting shown several times (the checks'
    common settings, an SNMP user) needs its default on one of them: the others are
    examples."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.fields: set[tuple[type, str]] = set()
        self.wrong: dict[tuple[type, str], str] = {}  # shown, never with the default
        self.right: set[tuple[type, str]] = set()
        self.unknown: list[str] = []

    def comment(self, node: yaml.Node) -> str:
        line = self.lines[node.start_mark.line]
        return line.partition(" #")[2]

    def walk(self, node: yaml.Node, models: list[type[BaseModel]], where: str) -> None:
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self.walk(item, models, f"{where}[{i}]")
            return
        if not isinstance(node, yaml.MappingNode) or not models:
            return
        model = models[0]
        if len(models) > 1:  # a tagged union: the item's kind picks the model
            kind = next((v.value for k, v in node.value if k.value == "kind"), None)
            model = next(m for m in models
                         if typing.get_args(m.model_fields["kind"].annotation) == (kind,))
        for key, value in node.value:
            field = model.model_fields.get(key.value)
            path = f"{where}.{key.value}".lstrip(".")
            if field is None:
                self.unknown.append(f"line {key.start_mark.line + 1}: {path}")
                continue
            self.fields.add((_owner(model, key.value), key.value))
            subs = _models(field.annotation)
            if subs:
                self.walk(value, subs, path)
                continue
            default = configdoc.default_of(field)
            if default is PydanticUndefined or default in (None, [], (), {}):
                continue  # required, or unset unless given: any value is an example
            given = yaml.safe_load(yaml.serialize(value))
            expected = configdoc.default_text(default)
            setting = (_owner(model, key.value), key.value)
            if configdoc.default_text(given) == expected or (
                    f"default: {expected}" in self.comment(key)):
                self.right.add(setting)
            else:
                self.wrong.setdefault(setting, (
                    f"line {key.start_mark.line + 1}: {path}: shows "
                    f"{configdoc.default_text(given)}, default {expected}, and its comment "
                    f"does not say `default: {expected}`"))

    def without_default(self) -> list[str]:
        return [text for setting, text in self.wrong.items() if setting not in self.right]

    def missing(self, root: type[BaseModel]) -> list[str]:
        missing, pending, seen = [], [root], set()
        while pending:
            model = pending.pop()
            if model in seen:
                continue
            seen.add(model)
            for name, field in model.model_fields.items():
                if (_owner(model, name), name) not in self.fields:
                    missing.append(f"{model.__name__}.{name}")
                pending += _models(field.annotation)
        return missing


@pytest.mark.parametrize("name", PROGRAMS)
def test_the_examples_show_every_setting_with_its_true_default(name):
    program = PROGRAMS[name]
    text = uncommented((ROOT / program.example).read_text())
    shown = Shown(text)
    model = program.config_model()
    shown.walk(yaml.compose(text, Loader=yaml.SafeLoader), [model], "")
    assert not shown.unknown, f"settings the models do not have: {shown.unknown}"
    assert not shown.missing(model), (f"{program.example} does not show "
                                      f"{', '.join(shown.missing(model))}")
    assert not shown.without_default(), "\n".join(shown.without_default())


def test_the_default_check_can_fail():
    text = "outbox_max_mib: 128\ncentral:\n  poll_s: 60   # default: 60\n"
    shown = Shown(text)
    shown.walk(yaml.compose(text, Loader=yaml.SafeLoader),
               [PROGRAMS["probe"].config_model()], "")
    assert shown.without_default() == [
        "line 1: outbox_max_mib: shows 128, default 256, and its comment does not say "
        "`default: 256`"]
    assert "ProbeConfig.probe_id" in shown.missing(PROGRAMS["probe"].config_model())


@pytest.mark.parametrize("name", PROGRAMS)
def test_every_path_setting_says_whether_the_file_is_read_or_written(name):
    # Unmarked, a path is not checked when the config loads (configfile.ReadFile/WriteFile).
    def has_path(annotation) -> bool:
        return annotation is Path or any(has_path(a) for a in typing.get_args(annotation))

    unmarked, pending, seen = [], [PROGRAMS[name].config_model()], set()
    while pending:
        model = pending.pop()
        if model in seen:
            continue
        seen.add(model)
        for field_name, field in model.model_fields.items():
            if has_path(field.annotation) and not file_rules(field):
                unmarked.append(f"{model.__name__}.{field_name}")
            pending += _models(field.annotation)
    assert not unmarked, f"mark these Annotated[Path, ReadFile()] or WriteFile(): {unmarked}"
