"""The collector's TLS: the server context built from the `tls` settings, and its reload on
SIGHUP (docs/deploy.md, "TLS").

asyncio keeps the context a server was created with, so a reload does not replace it: a
new context is built from the files and, when it loads, the listening context's SNI
callback (which OpenSSL calls in every handshake, with or without a server name) hands
each new handshake to it. A pair that does not load is refused and the running one kept."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from collector.config import TlsSettings

log = logging.getLogger(__name__)

VERSIONS = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
CLIENT_CERTS = {"off": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                "required": ssl.CERT_REQUIRED}


class TlsFileError(Exception):
    """A file of the tls settings that cannot be used; str() names the setting and file."""


def server_context(settings: TlsSettings) -> ssl.SSLContext:
    """A context for the listener; TlsFileError names the setting whose file is wrong."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = VERSIONS[settings.min_version]
    for setting in ("cert_file", "key_file", "client_ca_file"):
        path = getattr(settings, setting)
        if path is not None:
            _readable(setting, path)
    try:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    except ssl.SSLError as exc:
        raise TlsFileError(
            f"tls.cert_file {settings.cert_file} and tls.key_file {settings.key_file}: not "
            f"a certificate (PEM) and its private key (unencrypted PEM) ({exc.reason or exc})"
        ) from exc
    context.verify_mode = CLIENT_CERTS[settings.client_certs]
    if settings.client_ca_file is not None and settings.client_certs != "off":
        try:
            context.load_verify_locations(cafile=settings.client_ca_file)
        except ssl.SSLError as exc:
            raise TlsFileError(f"tls.client_ca_file {settings.client_ca_file}: no CA "
                               f"certificate (PEM) in it ({exc.reason or exc})") from exc
    return context


def _readable(setting: str, path: Path) -> None:
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise TlsFileError(f"tls.{setting}: cannot read {path} ({exc.strerror}); expected "
                           "a PEM file the collector's user can read") from exc


def fingerprint(cert_file: Path) -> str:
    """SHA-256 of the first certificate in a PEM file, as `openssl x509 -fingerprint
    -sha256` shows it (without colons), for the log."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex()


class ServerTls:
    """The listener's context and the one new handshakes get, which reload() replaces."""

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self.context = server_context(settings)  # TlsFileError at start: nothing listens
        self.current = self.context
        self.context.sni_callback = self._select

    def _select(self, connection: ssl.SSLObject, _server_name: str | None,
                _context: ssl.SSLContext) -> None:
        if self.current is not self.context:
            connection.context = self.current

    def reload(self) -> bool:
        """Reads the certificate, key and client CA files again; on an error the running
        ones stay, and the error is logged."""
        try:
            new = server_context(self.settings)
        except TlsFileError as exc:
            log.error("TLS reload refused, the running certificate stays: %s", exc)
            return False
        self.current = new
        log.info("TLS certificate reloaded from %s (sha256 %s)", self.settings.cert_file,
                 fingerprint(self.settings.cert_file))
        return True
