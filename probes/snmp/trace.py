"""pysnmp's own trace, asked for with UNHINDERED_SNMP_DEBUG (docs/snmp.md), without the
probe's secrets.

pysnmp 7.1 writes secrets into its trace: the pass phrases and the community as they are
configured (those MIB writes are traced whatever categories are asked for), the keys it
derives from the pass phrases (master keys, and keys localized for each engine) in its
USM lines, and the community in the decoded form and the hex dump of every v2c packet.
Every message goes through `SecretFilter.clean` on its way to the log:

- the pass phrases, the community and every key the engine derives are known to the
  filter (a key is learnt as the USM derives it, before anything can print it) and
  withheld wherever they appear: as text, as hex, inside hex dumps;
- a quoted value labelled as a key (`authKey "..."`, `usmUserAuthKeyLocalized "..."`) is
  withheld whatever it holds, in case a pysnmp version derives keys some other way;
- control characters from packets are escaped and a message's further lines indented, so
  that the trace of a hostile packet cannot forge log lines.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterable

from pysnmp import debug
from pysnmp.proto.secmod.rfc3414.service import SnmpUSMSecurityModel

log = logging.getLogger("pysnmp")

WITHHELD = "<withheld>"
_LABELLED_KEY = re.compile(r'(\w*key\w*)( ?[=:]? ?)"[^"]*"', re.IGNORECASE)
# pysnmp.debug.hexdump: 16 octets a line, each line starting "\n00016: ".
_HEX_DUMP = re.compile(r"(?: ?\n\d{5}: [0-9A-F]{2}(?: [0-9A-F]{2})*)+")
_DUMP_OFFSET = re.compile(r" ?\n\d{5}: ")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")  # all but the newline, indented below
AES_128_OCTETS = 16  # AES-128 uses the first 16 octets of a longer localized key


class SecretFilter:
    """pysnmp's printer (pysnmp.debug.Debug(printer=...)): logs each message cleaned."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets: set[bytes] = set()
        self.forms: list[str] = []  # every way a secret may be written, longest first
        for secret in secrets:
            self.add(secret.encode())

    def add(self, secret: bytes) -> None:
        if not secret or secret in self.secrets:
            return
        self.secrets.add(secret)
        forms = {secret.decode("latin-1"), secret.hex(), secret.hex().upper(),
                 repr(secret)[2:-1]}
        with contextlib.suppress(UnicodeDecodeError):
            forms.add(secret.decode("utf-8"))
        self.forms = sorted({*self.forms, *forms}, key=len, reverse=True)

    def learn_keys(self) -> None:
        """Every key the USM derives (auth and privacy, master and localized) becomes a
        secret of this filter as it is derived. The services are pysnmp's shared
        instances (one engine per probe process)."""
        services = [*SnmpUSMSecurityModel.AUTH_SERVICES.values(),
                    *SnmpUSMSecurityModel.PRIV_SERVICES.values()]
        for service in services:
            for name in ("hash_passphrase", "localize_key"):
                derive = getattr(service, name, None)
                if derive is not None:
                    setattr(service, name, self._learning(getattr(derive, "__wrapped__",
                                                                  derive)))

    def _learning(self, derive: Callable) -> Callable:
        def learnt(*args, **kwargs):
            key = derive(*args, **kwargs)
            if key is not None:
                octets = bytes(key)
                self.add(octets)
                self.add(octets[:AES_128_OCTETS])
            return key
        learnt.__wrapped__ = derive  # type: ignore[attr-defined]
        return learnt

    def clean(self, message: str) -> str:
        message = _HEX_DUMP.sub(self._dump, message)
        for form in self.forms:
            message = message.replace(form, WITHHELD)
        message = _LABELLED_KEY.sub(rf'\1\2"{WITHHELD}"', message)
        message = _CONTROL.sub(lambda m: repr(m.group())[1:-1], message)
        return message.replace("\n", "\n    ")

    def _dump(self, match: re.Match) -> str:
        octets = bytes.fromhex(_DUMP_OFFSET.sub(" ", match.group()))
        for secret in self.secrets:
            octets = octets.replace(secret, b"*" * len(secret))
        return debug.hexdump(octets)

    def __call__(self, message: str) -> None:
        log.debug("%s", self.clean(message))


def start(categories: str, secrets: Iterable[str]) -> SecretFilter:
    """Turns pysnmp's trace on for `categories` (its debug flags: "msgproc,secmod,app",
    "all" ...), through a SecretFilter knowing `secrets`, into the log at DEBUG."""
    flags = [c.strip() for c in categories.split(",") if c.strip()]
    unknown = [f for f in flags if f.lstrip("!~") not in debug.FLAG_MAP]
    if unknown:
        raise ValueError(f"UNHINDERED_SNMP_DEBUG: unknown categories {', '.join(unknown)} "
                         f"(known: {', '.join(debug.FLAG_MAP)})")
    printer = SecretFilter(secrets)
    printer.learn_keys()
    # At DEBUG whatever the configured level: asking for the trace is asking to see it.
    log.setLevel(logging.DEBUG)
    debug.set_logger(debug.Debug(*flags, printer=printer))
    return printer
