"""The TLS handshake shared by the tcp (with tls) and http checks: its time, the protocol
version, the earliest expiry over the server's certificate chain, and the evidence a
comparison with the centre's control needs: the presented chain's fingerprints, the
leaf's issuer and names, and whether the chain verified."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from unhindered.measurement import MAX_CHAIN, MAX_NAMES, clean_text

_ENCODING_DER = 2  # _ssl.ENCODING_DER: Certificate.public_bytes() format of the chains
CLOSE_GRACE_S = 0.5  # longest we wait for the peer to acknowledge our close_notify


class TlsFailure(Exception):
    """The handshake failed (verification or protocol); str() is the detail to report.
    `verification`: the server's certificate was refused (chain or name), so a handshake
    that does not verify would show what it presented."""

    def __init__(self, detail: str, verification: bool = False) -> None:
        super().__init__(detail)
        self.verification = verification


@dataclass(frozen=True)
class TlsInfo:
    handshake_s: float
    version: str | None  # e.g. TLSv1.3
    cert_not_after: datetime | None  # aware UTC; earliest notAfter of the chain
    # TlsFigures' evidence fields (tls_verified, tls_chain, tls_issuer, tls_names).
    evidence: dict[str, object] = field(default_factory=dict)


class CaFileError(Exception):
    """The configured ca_file cannot be loaded: a configuration problem, not the peer's."""


def client_context(verify: bool, ca_file: Path | None) -> ssl.SSLContext:
    """A client context; ca_file replaces the system store (a private CA), it does not
    add to it. Raises CaFileError."""
    try:
        return _context(verify, None if ca_file is None else str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise CaFileError(f"cannot load ca_file {ca_file}: {exc}") from exc


# Cached because loading the system CA store costs CPU time on the event loop, which
# would skew the measurements running alongside. A changed ca_file needs a restart.
@functools.lru_cache(maxsize=32)
def _context(verify: bool, ca_file: str | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def handshake(
    sock: socket.socket, context: ssl.SSLContext, server_name: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, TlsInfo]:
    """TLS over an already connected non-blocking socket, which the returned writer then
    owns. An IP literal as server_name sends no SNI and is verified against the IP SANs.

    Raises TlsFailure; connection errors other than a reset mid-handshake propagate.
    """
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection(
            sock=sock, ssl=context, server_hostname=server_name
        )
    except ssl.SSLCertVerificationError as exc:
        raise TlsFailure(f"certificate verification failed: {exc.verify_message}",
                         verification=True) from exc
    except ssl.SSLError as exc:
        raise TlsFailure(f"TLS handshake failed: {ssl_error_text(exc)}") from exc
    except (ConnectionResetError, ConnectionAbortedError) as exc:
        # A reset during the handshake is how middleboxes block by SNI: a TLS failure.
        raise TlsFailure(f"connection closed during the TLS handshake: {exc}") from exc
    elapsed = time.perf_counter() - started
    ssl_object = writer.get_extra_info("ssl_object")
    verified = context.verify_mode != ssl.CERT_NONE
    info = TlsInfo(
        handshake_s=elapsed,
        version=ssl_object.version() if ssl_object is not None else None,
        cert_not_after=chain_not_after(ssl_object, verified) if ssl_object else None,
        evidence=chain_evidence(ssl_object, True if verified else None)
        if ssl_object else {},
    )
    return reader, writer, info


def chain_evidence(ssl_object: ssl.SSLObject, verified: bool | None) -> dict[str, object]:
    """The fingerprints of the chain as the server presented it (not the verified one,
    whose anchor depends on the local store: the presented chain is what a control
    elsewhere sees too), and the leaf's issuer and names."""
    presented = _chain_ders(ssl_object, verified=False)
    evidence: dict[str, object] = {"tls_verified": verified}
    if presented:
        evidence["tls_chain"] = [fingerprint(der) for der in presented[:MAX_CHAIN]]
        evidence.update(_leaf_facts(presented[0]))
    return evidence


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


# A probe sees the same leaf round after round: parsed once.
@functools.lru_cache(maxsize=64)
def _leaf_facts(der: bytes) -> dict[str, object]:
    try:
        from cryptography import x509  # see _not_after

        leaf = x509.load_der_x509_certificate(der)
        issuer = leaf.issuer.rfc4514_string()
    except ValueError:
        return {}
    facts: dict[str, object] = {"tls_issuer": clean_text(issuer, 256)}
    try:
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return facts
    names = [*sans.get_values_for_type(x509.DNSName),
             *(str(a) for a in sans.get_values_for_type(x509.IPAddress))]
    if names:
        facts["tls_names"] = [clean_text(n, 255) for n in names[:MAX_NAMES]]
    return facts


def ssl_error_text(exc: ssl.SSLError) -> str:
    """'[SSL: WRONG_VERSION_NUMBER] wrong version number', without the C source line."""
    return re.sub(r"\s*\(_ssl\.c:\d+\)", "", str(exc))


def chain_not_after(ssl_object: ssl.SSLObject, verified: bool) -> datetime | None:
    """Earliest notAfter over the chain: the verified one (leaf to trust anchor) when the
    chain was verified, else the one the server sent, else the leaf alone."""
    dates = [_not_after(der) for der in _chain_ders(ssl_object, verified)]
    known = [d for d in dates if d is not None]
    return min(known) if known else None


def _not_after(der: bytes) -> datetime | None:
    try:
        # Imported here: 8 MiB that a probe without TLS checks never needs.
        from cryptography import x509

        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except ValueError:  # a certificate OpenSSL accepted but cryptography cannot parse
        return None


def _chain_ders(ssl_object: ssl.SSLObject, verified: bool) -> list[bytes]:
    # Python 3.13 made these public on SSLObject; 3.10-3.12 have them on the private
    # _sslobj only.
    holder = ssl_object if hasattr(ssl_object, "get_verified_chain") else getattr(
        ssl_object, "_sslobj", None)
    getters = ("get_verified_chain", "get_unverified_chain") if verified else (
        "get_unverified_chain",)
    for name in getters:
        getter = getattr(holder, name, None)
        chain = getter() if getter is not None else None
        if chain:
            return [_der(cert) for cert in chain]
    leaf = ssl_object.getpeercert(binary_form=True)
    return [leaf] if leaf else []


def _der(cert: object) -> bytes:
    if isinstance(cert, bytes):  # 3.13's public methods return DER bytes
        return cert
    return cert.public_bytes(_ENCODING_DER)  # type: ignore[attr-defined]


async def close_quietly(writer: asyncio.StreamWriter) -> None:
    """Close a stream politely (TLS close_notify, FIN) without letting a slow or vanished
    peer hold up the result; abort when it does not answer in time."""
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE_S):
            await writer.wait_closed()
    except OSError:  # includes TimeoutError and ssl.SSLError
        writer.transport.abort()
