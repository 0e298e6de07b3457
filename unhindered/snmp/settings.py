"""The probe's `snmp:` configuration section (docs/snmp.md): its agent, its SNMPv3 users,
an optional SNMPv2c community, and where to send notifications. Imports no SNMP library:
validating a config must not load pysnmp."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from unhindered.configfile import ReadFile, resolve_path

UserName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")]
MIN_KEY_CHARS = 8  # RFC 3414 11.2: pass phrases shorter than 8 characters are refused


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _host_port(value: str, example: str) -> str:
    host, _, port = value.rpartition(":")
    try:
        ip_address(host.strip("[]"))
    except ValueError:
        raise ValueError(f"expected IP:PORT with an IP address, e.g. {example}") from None
    if not port.isdigit() or not 0 < int(port) < 65_536:
        raise ValueError(f"expected IP:PORT, e.g. {example}")
    return value


def _split(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def _secret(value: SecretStr | None, file: Path | None) -> str | None:
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        return file.read_text(encoding="utf-8").strip()
    return None


def _secret_in_file(path: Path, info: ValidationInfo) -> tuple[Path, str | None]:
    """(the path relative to the config file, the secret in it as run will read it), so
    that check-config refuses what run would. None when the file cannot be read: loading
    the config then reports it (ReadFile), naming the line."""
    path = resolve_path(path, info)
    try:
        return path, _secret(None, path)
    except UnicodeDecodeError:
        raise ValueError("the file is not UTF-8 text") from None
    except OSError:
        return path, None


class _FileRelative(_Section):
    @field_validator("*", mode="after")
    @classmethod
    def _relative_to_file(cls, value, info: ValidationInfo):
        return resolve_path(value, info) if isinstance(value, Path) else value


class SnmpUser(_FileRelative):
    """An SNMPv3 user: authPriv with HMAC-SHA-256 and AES-128, keys as pass phrases."""

    name: UserName = Field(description="the SNMPv3 user name")
    auth_key: SecretStr | None = Field(
        None, description="HMAC-SHA-256 pass phrase, 8 characters or more; or auth_key_file")
    auth_key_file: Annotated[Path | None, ReadFile(secret=True)] = Field(
        None, description="file holding the authentication pass phrase")
    priv_key: SecretStr | None = Field(
        None, description="AES-128 pass phrase, 8 characters or more; or priv_key_file")
    priv_key_file: Annotated[Path | None, ReadFile(secret=True)] = Field(
        None, description="file holding the privacy pass phrase")

    @field_validator("auth_key_file", "priv_key_file")
    @classmethod
    def _key_in_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value, key = _secret_in_file(value, info)
        if key is not None and len(key) < MIN_KEY_CHARS:
            # The content itself is never echoed: the error shows the path only.
            raise ValueError(f"the pass phrase in it needs at least {MIN_KEY_CHARS} "
                             "characters")
        return value

    @model_validator(mode="after")
    def _keys(self) -> SnmpUser:
        for key in ("auth_key", "priv_key"):
            given = getattr(self, key), getattr(self, f"{key}_file")
            if (given[0] is None) == (given[1] is None):
                raise ValueError(f"set exactly one of {key} and {key}_file")
            if given[0] is not None and len(given[0].get_secret_value()) < MIN_KEY_CHARS:
                raise ValueError(f"{key} needs at least {MIN_KEY_CHARS} characters")
        return self

    def keys(self) -> tuple[str, str]:
        """(auth, priv) pass phrases, read from their files if so configured."""
        auth, priv = (_secret(self.auth_key, self.auth_key_file),
                      _secret(self.priv_key, self.priv_key_file))
        assert auth is not None and priv is not None
        for name, key in (("auth_key_file", auth), ("priv_key_file", priv)):
            if len(key) < MIN_KEY_CHARS:
                raise ValueError(f"user {self.name}: the key in {name} needs at least "
                                 f"{MIN_KEY_CHARS} characters")
        return auth, priv


class AgentSettings(_Section):
    listen: str = Field(description="IP:PORT the agent answers on, e.g. 0.0.0.0:161")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port(value, "0.0.0.0:161")

    @property
    def address(self) -> tuple[str, int]:
        return _split(self.listen)


class NotificationTarget(_Section):
    """A manager that gets checkDown/checkUp/accessLost/accessRestored: the collector, or
    any other."""

    name: UserName = Field(description="a name for this target, unique")
    address: str = Field(description="IP:PORT of the manager, e.g. 192.0.2.10:162")
    version: Literal["v3", "v2c"] = Field("v3", description="SNMP version")
    type: Literal["inform", "trap"] = Field(
        "inform", description="inform: acknowledged and retried; trap: sent once")
    user: UserName | None = Field(None, description="for v3: one of snmp.users")
    timeout_s: float = Field(5.0, gt=0, le=300, description="wait for an inform's answer")
    retries: int = Field(3, ge=0, le=20, description="re-sends of an unanswered inform")

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _host_port(value, "192.0.2.10:162")

    @property
    def host_port(self) -> tuple[str, int]:
        return _split(self.address)


class SnmpSettings(_FileRelative):
    agent: AgentSettings | None = Field(None, description="the agent; off unless set")
    users: list[SnmpUser] = Field(default_factory=list,
                                  description="SNMPv3 users (authPriv) of the agent and "
                                              "of v3 notifications")
    community: SecretStr | None = Field(
        None, description="SNMPv2c community (read-only, and for v2c traps); not public")
    community_file: Annotated[Path | None, ReadFile(secret=True)] = Field(
        None, description="file holding the community, instead of community")
    engine_id: Annotated[str, Field(pattern=r"^([0-9a-fA-F]{2}){5,32}$")] | None = Field(
        None, description="hex; default: derived by pysnmp at each start")
    notify: list[NotificationTarget] = Field(
        default_factory=list, description="where checkDown/checkUp and accessLost/"
                                          "accessRestored go on confirmed changes")

    @field_validator("community")
    @classmethod
    def _not_public(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            _refuse_public(value.get_secret_value())
        return value

    @field_validator("community_file")
    @classmethod
    def _community_in_file(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        value, community = _secret_in_file(value, info)
        if community is not None:
            _refuse_public(community)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SnmpSettings:
        if self.community is not None and self.community_file is not None:
            raise ValueError("set at most one of community and community_file")
        names = [u.name for u in self.users]
        if len(names) != len(set(names)):
            raise ValueError("each user name may appear once")
        has_community = self.community is not None or self.community_file is not None
        if self.agent is not None and not names and not has_community:
            raise ValueError("the agent needs at least one user (or a community for v2c)")
        targets = [t.name for t in self.notify]
        if len(targets) != len(set(targets)):
            raise ValueError("each notification target name may appear once")
        for target in self.notify:
            if target.version == "v3" and target.user not in names:
                raise ValueError(f"notify target {target.name}: user must name one of "
                                 f"snmp.users ({', '.join(names) or 'none configured'})")
            if target.version == "v2c" and not has_community:
                raise ValueError(f"notify target {target.name}: v2c needs snmp.community")
        if self.agent is None and not self.notify:
            raise ValueError("nothing to do: set agent, notify or both")
        return self

    def read_community(self) -> str | None:
        community = _secret(self.community, self.community_file)
        if community is not None:
            _refuse_public(community)
        return community

    def user(self, name: str) -> SnmpUser:
        return next(u for u in self.users if u.name == name)


def _refuse_public(community: str) -> None:
    if community.lower() in ("public", "private", ""):
        raise ValueError("the community must not be public, private or empty (any "
                         "scanner tries those): choose a secret one, or use SNMPv3 users only")
