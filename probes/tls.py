"""The probe's side of TLS to the collector: the client context from the collector settings,
and failures told in words an operator can act on (docs/deploy.md, "TLS")."""

from __future__ import annotations

import errno
import ssl
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # probes.config imports the transport, which imports this
    from probes.config import CollectorSettings

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) that mean "signed by a CA not trusted here".
_UNTRUSTED = {2, 18, 19, 20, 21}
_NOT_YET_VALID, _EXPIRED, _HOSTNAME_MISMATCH, _IP_MISMATCH = 9, 10, 62, 64


def client_context(settings: CollectorSettings) -> ssl.SSLContext | None:
    """The context for https:// collector URLs: TLS 1.2 or later, the collector's
    certificate verified (against collector.ca_file, else the system's store) and its name
    checked, and the client certificate when configured. None when no URL is https.
    OSError (which the probe's command line reports) names the setting of a bad file."""
    if not any(url.scheme == "https" for url in settings.urls):
        return None
    cafile = (None if settings.ca_file is None
              else _checked("ca_file", settings.ca_file, "the CA certificate(s), PEM"))
    try:  # without a cafile, the system's store; either way the collector's name is checked
        context = ssl.create_default_context(cafile=cafile)
    except ssl.SSLError as exc:
        raise OSError(errno.EINVAL, f"collector.ca_file: {cafile}: not CA certificates in "
                                    f"PEM ({exc.reason or exc})") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert_file is not None and settings.client_key_file is not None:
        cert = _checked("client_cert_file", settings.client_cert_file, "a certificate, PEM")
        key = _checked("client_key_file", settings.client_key_file, "its key, PEM")
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise OSError(errno.EINVAL, f"collector.client_cert_file {cert} and "
                                        f"collector.client_key_file {key}: not a certificate "
                                        f"and its private key, both PEM, the key unencrypted "
                                        f"({exc.reason or exc})") from exc
    return context


def _checked(setting: str, path, expected: str):
    try:
        with open(path, "rb") as f:
            if b"-----BEGIN" not in f.read():
                raise OSError(errno.EINVAL, f"collector.{setting}: {path} holds no PEM "
                                            f"block; expected {expected}")
    except OSError as exc:
        if exc.errno == errno.EINVAL:
            raise
        raise OSError(exc.errno, f"collector.{setting}: cannot read {path} "
                                 f"({exc.strerror}); expected {expected}") from exc
    return path


def explain(exc: ssl.SSLError, host: str) -> str:
    """What went wrong in a TLS handshake with the collector, and what to do about it."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, why = exc.verify_code, exc.verify_message
        if code in _UNTRUSTED:
            return (f"the collector's certificate is not trusted ({why}): set "
                    "collector.ca_file to the CA certificate that signed it (PEM), or add "
                    "that CA to the system's store")
        if code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
            return (f"the collector's certificate is not valid for {host} ({why}): use a "
                    "URL with a name the certificate lists, or have the certificate "
                    "reissued with this name")
        if code == _EXPIRED:
            return (f"the collector's certificate has expired ({why}): renew it on the "
                    "collector (then SIGHUP reloads it), or check this probe's clock")
        if code == _NOT_YET_VALID:
            return (f"the collector's certificate is not valid yet ({why}): check this "
                    "probe's clock (NTP)")
        return f"the collector's certificate was refused ({why})"
    reason = exc.reason or ""
    if reason == "TLSV13_ALERT_CERTIFICATE_REQUIRED":
        return ("the collector requires a client certificate (mutual TLS): set "
                "collector.client_cert_file and collector.client_key_file")
    if reason in ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE",
                  "SSLV3_ALERT_CERTIFICATE_UNKNOWN", "TLSV1_ALERT_DECRYPT_ERROR"):
        return (f"the collector refused this probe's client certificate ({reason}): it must "
                "be signed by the CA in the collector's tls.client_ca_file and be valid")
    if reason in ("TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL",
                  "NO_PROTOCOLS_AVAILABLE"):
        return (f"no TLS version in common with the collector ({reason}): the probe needs "
                "TLS 1.2 or later")
    if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
        return (f"the collector does not speak TLS on this port ({reason}): use http:// "
                "in collector.urls, or set up tls on the collector")
    return f"TLS failed ({reason or exc})"
