"""Loading YAML config files into pydantic models, with errors a person can act on:
each names the file, the line, the field and what was expected."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)

# Settings that hold a secret (a token, a pass phrase, a community): an error names the
# setting and what was expected, never what was given (check-config's errors reach the
# journal). Their *_file settings hold a path, which is shown.
_SECRET_SETTING = re.compile(r"token|key|community|password|secret", re.IGNORECASE)
# The password of a URL (postgresql://user:password@host/db).
_URL_PASSWORD = re.compile(r"(//[^/?#@:\s]*:)[^/?#@\s]*@")


class ConfigError(Exception):
    """A config file that cannot be used. str() is the full message for the operator."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: invalid configuration\n" + "\n".join(
            f"  {p}" for p in problems))


def load_model(path: Path, model: type[Model]) -> Model:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    return parse_model(text, path, model)


def parse_model(text: str, path: Path, model: type[Model]) -> Model:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError(path, ["expected a mapping of settings at the top level"])
    try:
        return model.model_validate(data, context={"config_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError(path, [_describe(error, root) for error in exc.errors()]) from exc


def _describe(error: dict, root: yaml.Node | None) -> str:
    loc = _visible_loc(error["loc"], root)
    field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    node = _node_at(root, loc)
    where = f"line {node.start_mark.line + 1}: " if node is not None else ""
    message = error["msg"].removeprefix("Value error, ")
    given = ""
    # Only plain values are echoed: a section's mapping says little, and may hold secrets.
    name = str(loc[-1]) if loc else ""
    secret = _SECRET_SETTING.search(name) is not None and not name.endswith("_file")
    if error["type"] not in ("missing", "extra_forbidden") and not secret and not isinstance(
            error.get("input", {}), dict | list):
        shown = _URL_PASSWORD.sub(r"\1***@", repr(error["input"]))
        given = f" (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
    if error["type"] == "extra_forbidden":
        message = "unknown setting (check its spelling and the documentation)"
    return f"{where}{field or '(top level)'}: {message}{given}"


def _visible_loc(loc: tuple, root: yaml.Node | None) -> list:
    """Drops the tags pydantic inserts for tagged unions (checks[0].icmp.count): a key
    that is not in the file, yet not the last part, is such a tag."""
    visible: list = []
    node = root
    for i, part in enumerate(loc):
        child = _child(node, part)
        if child is None and isinstance(part, str) and i < len(loc) - 1:
            continue
        visible.append(part)
        node = child
    return visible


def _child(node: yaml.Node | None, part: object) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == part:
                return value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part]
    return None


def _node_at(root: yaml.Node | None, loc: list) -> yaml.Node | None:
    """The node to point at: for a mapping entry its key, which is where people look."""
    node, found = root, None
    for part in loc:
        child = _child(node, part)
        if child is None:
            break
        found = child
        if isinstance(node, yaml.MappingNode):
            found = next(k for k, v in node.value if v is child)
        node = child
    return found


def resolve_path(value: Path, info) -> Path:
    """Relative paths in a config file are relative to the file, not to the cwd."""
    base = (info.context or {}).get("config_dir") if info is not None else None
    if base is not None and not value.is_absolute():
        return (Path(base) / value).resolve()
    return value
