"""Throwaway certificates for the lab's TLS responders, generated with `cryptography`.

    root CA (10 years) ─ intermediate CA (expires in 30 days) ─┬ valid leaf (90 days)
                                                               └ expired leaf
    unknown root CA (not in ca.pem) ─ leaf

Every leaf names SERVER_NAME and the given IP addresses, so that only the property under
test (expiry, issuer) makes verification fail. The intermediate expires before the valid
leaf, so the earliest notAfter of the verified chain is the intermediate's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SERVER_NAME = "documents.lab.test"


@dataclass(frozen=True)
class ServerCert:
    cert_file: Path  # PEM: the leaf, then the intermediate when there is one
    key_file: Path
    not_after: datetime  # the leaf's


@dataclass(frozen=True)
class LabCerts:
    ca_file: Path  # the lab's root CA only
    intermediate_not_after: datetime
    valid: ServerCert
    expired: ServerCert
    unknown_ca: ServerCert


@dataclass(frozen=True)
class _Issuer:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


def _name(common_name: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Unhindered lab"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: _Issuer | None,
    not_before: datetime,
    not_after: datetime,
    ca: bool,
    sans: list[x509.GeneralName] | None = None,
) -> x509.Certificate:
    signer_key = issuer.key if issuer else key
    issuer_name = issuer.cert.subject if issuer else _name(subject)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(signer_key.public_key()),
            critical=False,
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
    else:
        builder = (
            builder.add_extension(
                x509.KeyUsage(digital_signature=True, content_commitment=False,
                              key_encipherment=False, data_encipherment=False,
                              key_agreement=False, key_cert_sign=False, crl_sign=False,
                              encipher_only=False, decipher_only=False),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName(sans or []), critical=False)
        )
    return builder.sign(signer_key, hashes.SHA256())


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())  # fast to generate, unlike RSA


def _pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def _write_server(directory: Path, label: str, leaf: x509.Certificate,
                  key: ec.EllipticCurvePrivateKey,
                  chain: tuple[x509.Certificate, ...]) -> ServerCert:
    cert_file, key_file = directory / f"{label}.pem", directory / f"{label}.key"
    cert_file.write_bytes(_pem(leaf, *chain))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return ServerCert(cert_file, key_file, leaf.not_valid_after_utc)


def make_certs(directory: Path, ip_addresses: list[str]) -> LabCerts:
    """Write ca.pem and the valid, expired and unknown-CA server certificates (leaf plus
    chain, and key) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    # Whole seconds: certificates carry no fractions, and tests compare the datetimes.
    now = datetime.now(UTC).replace(microsecond=0)
    day = timedelta(days=1)
    sans: list[x509.GeneralName] = [x509.DNSName(SERVER_NAME)] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]

    root_key, intermediate_key = _key(), _key()
    root = _Issuer(_certificate("Unhindered lab root CA", root_key, None,
                                now - day, now + 3650 * day, ca=True), root_key)
    intermediate = _Issuer(_certificate("Unhindered lab intermediate CA", intermediate_key,
                                        root, now - day, now + 30 * day, ca=True),
                           intermediate_key)
    (directory / "ca.pem").write_bytes(_pem(root.cert))

    valid_key, expired_key = _key(), _key()
    valid = _certificate(SERVER_NAME, valid_key, intermediate, now - day, now + 90 * day,
                         ca=False, sans=sans)
    expired = _certificate(SERVER_NAME, expired_key, intermediate, now - 60 * day,
                           now - 2 * day, ca=False, sans=sans)

    unknown_root_key, unknown_key = _key(), _key()
    unknown_root = _Issuer(_certificate("Unknown root CA", unknown_root_key, None,
                                        now - day, now + 3650 * day, ca=True),
                           unknown_root_key)
    unknown = _certificate(SERVER_NAME, unknown_key, unknown_root, now - day, now + 90 * day,
                           ca=False, sans=sans)

    return LabCerts(
        ca_file=directory / "ca.pem",
        intermediate_not_after=intermediate.cert.not_valid_after_utc,
        valid=_write_server(directory, "valid", valid, valid_key, (intermediate.cert,)),
        expired=_write_server(directory, "expired", expired, expired_key,
                              (intermediate.cert,)),
        unknown_ca=_write_server(directory, "unknown-ca", unknown, unknown_key, ()),
    )
