"""Who may run the administrative commands that write the collector's files.

The service runs as its own user (`unhindered`, deploy/systemd/). An administrative command
run by root would create the SQLite database, or a probe's credential file, owned by root,
and the service could not open it afterwards. So, where the service user exists, root is
sent to run the command as that user instead; elsewhere (a developer's machine, the
tests) nothing is checked.
"""

from __future__ import annotations

import os
import pwd
import shlex
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from collector.config import sqlite_file

SERVICE_USER_VARIABLE = "UNHINDERED_SERVICE_USER"
DEFAULT_SERVICE_USER = "unhindered"


def require_service_user(database_url: str, argv: Sequence[str] | None = None,
                         written: Iterable[Path | None] = ()) -> None:
    """Raises SystemExit, saying what to run instead, when root runs a command that would
    leave the service user (DEFAULT_SERVICE_USER, or the one SERVICE_USER_VARIABLE names) a
    file it cannot use: the SQLite database of `database_url` while it does not exist yet or
    belongs to someone else, or any of `written`, files the command writes anew (a file
    root writes belongs to root). `argv` is the command's arguments, for the message.
    Does nothing when the service user does not exist here, or is root itself."""
    if os.geteuid() != 0:
        return
    name = os.environ.get(SERVICE_USER_VARIABLE) or DEFAULT_SERVICE_USER
    try:
        service = pwd.getpwnam(name)
    except KeyError:
        return
    if service.pw_uid == 0:
        return
    reasons = []
    database = sqlite_file(database_url)
    database = None if database is None else database.absolute()
    if database is not None:
        try:
            owner = database.stat().st_uid
        except FileNotFoundError:
            reasons.append(f"the database {database} does not exist yet, and root would "
                           "create it")
        else:
            if owner != service.pw_uid:
                reasons.append(f"the database {database} belongs to {_user_name(owner)}, "
                               f"not {name}: give it to {name} (chown {name}: {database})")
    reasons += [f"{path} would belong to root" for path in written if path is not None]
    if not reasons:
        return
    command = ["sudo", "-u", name, "unhindered-collector",
               *(sys.argv[1:] if argv is None else argv)]
    raise SystemExit(
        f"unhindered-collector: run this as the service user: {shlex.join(command)}\n"
        + "".join(f"  {reason};\n" for reason in reasons)
        + f"  the service, running as {name}, could not use a file that root owns. "
        f"({SERVICE_USER_VARIABLE}=USER names another service user.)")


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
