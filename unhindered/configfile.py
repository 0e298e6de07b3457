"""Loading YAML config files into pydantic models, with errors a person can act on:
each names the file, the line, the field and what was expected."""

from __future__ import annotations

import os
import pwd
import re
import stat
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, GetCoreSchemaHandler, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import core_schema

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


class _RelativeToConfig:
    """What every file marker also does: a relative path is read relative to the config
    file (resolve_path), so no model repeats that validator."""

    def __get_pydantic_core_schema__(self, source: Any,
                                     handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_after_validator_function(
            lambda value, info: resolve_path(value, info) if isinstance(value, Path) else value,
            handler(source))


@dataclass(frozen=True)
class ReadFile(_RelativeToConfig):
    """Marks a Path setting (`Annotated[Path | None, ReadFile()]`) naming a file the
    program reads: loading the config checks that it exists and that the current user can
    read it, so that neither check-config nor run gets further with a file run cannot use.
    A secret file must not be open to group or others."""

    secret: bool = False
    # Sibling settings which, when set, mean the program writes the file if it does not
    # exist yet (the credential saved at enrollment): then its directory must be writable.
    unless_written_by: tuple[str, ...] = ()
    # A sibling Path setting whose file, once it exists, makes this one unneeded (the
    # enrollment token, spent once the credential is saved, may then be deleted).
    needed_until: str | None = None


@dataclass(frozen=True)
class WriteFile(_RelativeToConfig):
    """Marks a setting naming a file the program creates or writes (an SQLite database):
    its directory must exist and be writable by the current user, and the file, if it
    exists, writable too. Directories are never created for the operator: the systemd
    units' StateDirectory= (or the installer) makes them. `path_of` takes the path out of
    a setting that holds more than a path (a sqlite:/// URL; None: no file)."""

    path_of: Callable[[Any], Path | None] | None = None


FileRule = ReadFile | WriteFile


def load_model(path: Path, model: type[Model], *, check_files: bool = True,
               overrides: dict | None = None) -> Model:
    """The validated config. With check_files, every file a ReadFile or WriteFile setting
    names is checked too (see those), errors naming the line like any other. `overrides`
    replace top-level sections (a command line's options) before the files are checked,
    so a file named only in the config but overridden is not required."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read the file: {exc.strerror or exc}"]) from exc
    config, root = _parse(text, path, model)
    overrides = overrides or {}
    config = config.model_copy(update=overrides)
    if check_files:
        problems = [("(the command line) " if loc[0] in overrides
                     else _where(list(loc), root)) + f"{_field_name(list(loc))}: {problem}"
                    for loc, problem in file_problems(config)]
        if problems:
            raise ConfigError(path, problems)
    return config


def file_rules(field: FieldInfo) -> list[FileRule]:
    """The ReadFile/WriteFile markers of a field, also those inside `X | None`."""
    found = [m for m in field.metadata if isinstance(m, FileRule)]
    pending = list(typing.get_args(field.annotation))
    while pending:
        arg = pending.pop()
        found += [m for m in getattr(arg, "__metadata__", ()) if isinstance(m, FileRule)]
        pending += typing.get_args(arg)
    return found


def file_problems(config: BaseModel) -> list[tuple[tuple, str]]:
    """(location of the setting, what is wrong) for every marked file in the config."""
    return [(loc, problem) for loc, rule, value, owner in _marked(config, ())
            if (problem := _check_file(rule, value, owner)) is not None]


def _marked(value: object, loc: tuple) -> Iterator[tuple[tuple, FileRule, Any, BaseModel]]:
    if isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            child = getattr(value, name)
            if child is not None:
                for rule in file_rules(field):
                    yield (*loc, name), rule, child, value
            yield from _marked(child, (*loc, name))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _marked(item, (*loc, i))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _marked(item, (*loc, key))


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return f"uid {os.geteuid()}"


def _check_file(rule: FileRule, value: Any, owner: BaseModel) -> str | None:
    if isinstance(rule, WriteFile):
        path = rule.path_of(value) if rule.path_of is not None else Path(value)
        return None if path is None else _writable(path)
    path = Path(value)
    if rule.needed_until is not None:
        done = getattr(owner, rule.needed_until, None)
        if done is not None and Path(done).exists():
            return None
    written = any(getattr(owner, name, None) is not None for name in rule.unless_written_by)
    if written and not path.exists():
        return _writable(path)
    return _readable(path, rule.secret)


def _readable(path: Path, secret: bool) -> str | None:
    user = _user()
    expected = f"expected a file {user} can read"
    try:
        info = path.stat()
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror}); {expected}"
    if not stat.S_ISREG(info.st_mode):
        return f"{path} is not a regular file; {expected}"
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        return f"cannot read {path} ({exc.strerror}); {expected} (chown or chmod it)"
    if secret and info.st_mode & 0o077:
        fix = f"chmod 600 {path}"
        if info.st_uid != os.geteuid():  # then only its owner could read it, not us
            fix = f"chown {user} {path} && {fix}"
        return (f"{path} holds a secret but its mode {stat.S_IMODE(info.st_mode):04o} "
                f"opens it to group or others; expected only its owner to read it: run "
                f"{fix}")
    return None


def _writable(path: Path) -> str | None:
    user = _user()
    directory = path.parent
    expected = f"expected an existing directory {user} can write"
    if directory.exists() and not directory.is_dir():
        return f"{directory} is not a directory; {expected}"
    if not directory.is_dir():
        return (f"the directory {directory} does not exist; {expected} (create it, or let "
                "the systemd unit's StateDirectory= do so)")
    if not _access(directory, os.W_OK | os.X_OK):
        return f"the directory {directory} is not writable by {user}; {expected}"
    if path.is_dir():
        return f"{path} is a directory; expected a file (or none yet) in {directory}"
    if path.exists() and not _access(path, os.R_OK | os.W_OK):
        return f"{path} is not readable and writable by {user}; expected it to be"
    return None


def _access(path: Path, mode: int) -> bool:
    """As the effective user (the one that will open the file); a read-only file system
    (ProtectSystem=strict) refuses writing even to root."""
    return os.access(path, mode, effective_ids=os.access in os.supports_effective_ids)


def parse_model(text: str, path: Path, model: type[Model]) -> Model:
    """The validated config from its text; no file it names is checked."""
    return _parse(text, path, model)[0]


def _parse(text: str, path: Path, model: type[Model]) -> tuple[Model, yaml.Node | None]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"not valid YAML: {exc}"]) from exc
    if not isinstance(data, dict):
        raise ConfigError(path, ["expected a mapping of settings at the top level"])
    try:
        return model.model_validate(data, context={"config_dir": path.parent}), root
    except ValidationError as exc:
        raise ConfigError(path, [_describe(error, root) for error in exc.errors()]) from exc


def _field_name(loc: list) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _where(loc: list, root: yaml.Node | None) -> str:
    node = _node_at(root, loc)
    return f"line {node.start_mark.line + 1}: " if node is not None else ""


def _describe(error: dict, root: yaml.Node | None) -> str:
    loc = _visible_loc(error["loc"], root)
    field = _field_name(loc)
    where = _where(loc, root)
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
