"""A throwaway certificate authority and the certificates it signs, for the demo and the
tests: the collector's server certificate and probes' client certificates (mutual TLS).
Production certificates come from the organisation's own CA (docs/deploy.md)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert_file: Path  # PEM
    key_file: Path  # PEM, PKCS#8, unencrypted, mode 0600


@dataclass(frozen=True)
class Authority:
    cert_file: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def issue(self, directory: Path, label: str, names: list[str],
              client: bool = False, days: float = 365) -> Issued:
        """A leaf for `names` (DNS names or IP addresses), written as LABEL.pem and
        LABEL.key: a server certificate, or with `client` one for TLS client auth."""
        key = _key()
        now = datetime.now(UTC)
        sans = [x509.IPAddress(ipaddress.ip_address(n)) if _is_ip(n) else x509.DNSName(n)
                for n in names]
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        cert = (
            _builder(names[0], key, self.cert.subject, now, now + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        return _write(directory, label, cert, key)


def make_authority(directory: Path, name: str = "Unhindered throwaway CA",
                   label: str = "ca") -> Authority:
    """A new self-signed CA, valid ten years, written as LABEL.pem (and LABEL.key)."""
    key = _key()
    now = datetime.now(UTC)
    cert = (
        _builder(name, key, _name(name), now, now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256()))
    issued = _write(directory, label, cert, key)
    return Authority(issued.cert_file, cert, key)


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Unhindered"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name,
             not_before: datetime, not_after: datetime) -> x509.CertificateBuilder:
    return (x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before - timedelta(minutes=5))  # clocks a little apart
            .not_valid_after(not_after)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False))


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # milliseconds, unlike RSA


def _write(directory: Path, label: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> Issued:
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / f"{label}.pem", directory / f"{label}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.touch(mode=0o600)
    key_file.chmod(0o600)  # before the key is in it
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return Issued(cert_file, key_file)
