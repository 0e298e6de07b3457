"""A local SMTP sink (aiosmtpd) that keeps every message it receives, for the alert e-mail
tests and the alert benchmark. It listens on 127.0.0.1, on the host or inside a lab
namespace (where Alertmanager runs), and records when each message arrived."""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from tests.support import free_port
from tests.support.promstack import HOST, Place


@dataclass(frozen=True)
class Mail:
    to: tuple[str, ...]
    subject: str
    body: str
    received_at: float  # time.time() on arrival

    def __str__(self) -> str:
        return f"to {', '.join(self.to)}: {self.subject}\n{self.body}"


class Sink:
    def __init__(self) -> None:
        self.port = 0
        self.mails: list[Mail] = []
        self._lock = threading.Lock()

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def handle_DATA(self, _server, _session, envelope) -> str:  # aiosmtpd's hook
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        part = message.get_body(("plain", "html"))
        body = part.get_content() if part is not None else ""
        mail = Mail(tuple(envelope.rcpt_tos), str(message["Subject"] or ""), body,
                    time.time())
        with self._lock:
            self.mails.append(mail)
        return "250 OK"

    def received(self, to: str | None = None) -> list[Mail]:
        with self._lock:
            return [m for m in self.mails if to is None or to in m.to]


def _enter(place: Place) -> None:
    """Moves the calling thread into the place's network namespace."""
    if place.lab is None:
        return
    from tests.support.lab.netns import NETNS_DIR, _setns

    fd = os.open(NETNS_DIR / place.ns, os.O_RDONLY)
    try:
        _setns(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def smtp_sink(place: Place = HOST) -> Iterator[Sink]:
    """A running sink; in a lab namespace its server thread is started from a thread that
    entered the namespace first (threads inherit their creator's namespace)."""
    sink = Sink()
    sink.port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, ready_timeout=30)
    errors: list[BaseException] = []

    def start() -> None:
        try:
            _enter(place)
            controller.start()
        except BaseException as exc:
            errors.append(exc)

    starter = threading.Thread(target=start, name="smtp-sink-start")
    starter.start()
    starter.join(60)
    if errors:
        raise errors[0]
    try:
        yield sink
    finally:
        controller.stop()
