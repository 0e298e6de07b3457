"""The evidence a comparison with the centre's control needs (docs/protocol.md): TLS chain
fingerprints, issuer, names and verification, also of a chain that failed to verify; the
HTTP redirect chain and title; the resolver; the system's words for a connect error.
Against servers on loopback with the lab's throwaway certificates."""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.lab.certs import SERVER_NAME, LabCerts, ServerCert, make_certs
from unhindered.checks.http import HttpCheck
from unhindered.checks.tcp import TcpCheck
from unhindered.measurement import HttpMeasurement, TcpMeasurement, encode_result
from unhindered.probing import http, tcp
from unhindered.probing.base import lookup, system_resolver_name

PAGE = (b"<!doctype html><html><head><meta charset=utf-8>\n<TITLE lang=en>  Unhindered\n"
        b" &amp; lab \xc3\xa9  </TITLE><title>second</title></head><body>ok</body></html>")

Handler = Callable[[str, int], bytes]  # (path, own port) -> the whole answer


def answer(status: int, body: bytes = b"", location: str | None = None) -> bytes:
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
    if location is not None:
        head.append(f"Location: {location}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def site(path: str, port: int) -> bytes:
    if path == "/a":
        return answer(302, location="/b")
    if path == "/b":
        return answer(301, location=f"https://127.0.0.1:{port}/page")
    if path == "/page":
        return answer(200, PAGE)
    return answer(404, b"not found")


@asynccontextmanager
async def server(cert: ServerCert | None, handler: Handler = site) -> AsyncIterator[int]:
    """An HTTP(S) server on a free loopback port; yields the port."""
    context = None
    if cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert_file, cert.key_file)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            writer.write(handler(path, port))
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # a client that refused our certificate, or only connected
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield port
    finally:
        listener.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> LabCerts:
    return make_certs(tmp_path_factory.mktemp("certs"), ["127.0.0.1"])


def fingerprints(cert: ServerCert) -> list[str]:
    chain = x509.load_pem_x509_certificates(cert.cert_file.read_bytes())
    return [base64.urlsafe_b64encode(hashlib.sha256(
        c.public_bytes(serialization.Encoding.DER)).digest()).rstrip(b"=").decode()
        for c in chain]


def tls_check(port: int, **settings) -> TcpCheck:
    return TcpCheck(id="tls", kind="tcp", target="127.0.0.1", port=port, tls=True,
                    timeout_s=2, **settings)


def https_check(url: str, **settings) -> HttpCheck:
    return HttpCheck(id="web", kind="http", target=url, timeout_s=2, **settings)


def wire(figures_model, kind: type = TcpMeasurement) -> dict:
    """The figures as they go out: what encode_result writes."""
    m = kind(probe_id="p", mission="KEN", check_id="c", target="t", ok=True,
             started_at=datetime.now(UTC), duration_s=0.1, figures=figures_model)
    return json.loads(encode_result(m))["figures"]


async def test_a_verified_chain_is_fingerprinted_leaf_first(certs: LabCerts) -> None:
    async with server(certs.valid) as port:
        out = await tcp.run(tls_check(port, ca_file=certs.ca_file, server_name=SERVER_NAME))
    assert out.ok, out
    f = out.figures
    assert f.tls_verified is True
    assert f.tls_chain == fingerprints(certs.valid)  # the leaf, then the intermediate
    assert len(f.tls_chain) == 2 and all(len(p) == 43 for p in f.tls_chain)
    assert f.tls_issuer == "CN=Unhindered lab intermediate CA,O=Unhindered lab"
    assert f.tls_names == [SERVER_NAME, "127.0.0.1"]
    # An IP literal target is the address: no resolution evidence.
    assert f.address is None and f.dns_answers is None and f.resolver is None


async def test_a_chain_that_fails_verification_is_still_reported(certs: LabCerts) -> None:
    """What an interception looks like: another CA's certificate for the name. The
    round fails (tls), and says what the server presented."""
    async with server(certs.unknown_ca) as port:
        out = await tcp.run(tls_check(port, ca_file=certs.ca_file, server_name=SERVER_NAME))
        wrong_name = await tcp.run(tls_check(port, ca_file=certs.ca_file,
                                             server_name="elsewhere.lab.test"))
    assert (out.ok, out.reason) == (False, "tls")
    assert "unable to get local issuer certificate" in out.detail
    f = out.figures
    assert f.tls_verified is False
    assert f.tls_chain == fingerprints(certs.unknown_ca)
    assert f.tls_issuer == "CN=Unknown root CA,O=Unhindered lab"
    assert f.tls_names == [SERVER_NAME, "127.0.0.1"]
    assert f.tls_cert_not_after == certs.unknown_ca.not_after
    assert f.connect_s is not None and f.tls_s is None  # the check's handshake failed
    assert (wrong_name.reason, wrong_name.figures.tls_verified) == ("tls", False)
    assert wrong_name.figures.tls_chain == fingerprints(certs.unknown_ca)


async def test_without_verification_the_chain_is_reported_and_verified_left_out(
        certs: LabCerts) -> None:
    async with server(certs.unknown_ca) as port:
        out = await tcp.run(tls_check(port, tls_verify=False))
    assert out.ok, out
    figures = wire(out.figures)
    assert "tls_verified" not in figures  # not verified: neither true nor false
    assert figures["tls_chain"] == fingerprints(certs.unknown_ca)


async def test_plain_tcp_sends_no_evidence_field() -> None:
    async with server(None) as port:
        out = await tcp.run(TcpCheck(id="t", kind="tcp", target="127.0.0.1", port=port))
    assert out.ok
    figures = wire(out.figures)
    assert set(figures) == {"tls_s", "tls_version", "tls_cert_not_after", "connect_s"}


async def test_https_redirect_chain_title_and_tls_evidence(certs: LabCerts) -> None:
    async with server(certs.valid) as port:
        out = await http.run(https_check(f"https://127.0.0.1:{port}/a",
                                         ca_file=certs.ca_file, server_name=SERVER_NAME))
    assert out.ok, out
    f = out.figures
    base = f"https://127.0.0.1:{port}"
    assert f.redirect_chain == [f"{base}/b", f"{base}/page"]
    assert f.final_url == f"{base}/page" and f.redirects == 2
    assert f.title == "Unhindered & lab é"  # the first, unescaped, white space collapsed
    assert (f.status_code, f.body_bytes) == (200, len(PAGE))
    assert f.tls_verified is True and f.tls_chain == fingerprints(certs.valid)
    assert f.address is None  # an IP-literal URL: the address is in it


async def test_https_to_an_interceptor_fails_with_its_chain(certs: LabCerts) -> None:
    async with server(certs.unknown_ca) as port:
        out = await http.run(https_check(f"https://127.0.0.1:{port}/page",
                                         ca_file=certs.ca_file, server_name=SERVER_NAME))
    assert (out.ok, out.reason) == (False, "tls")
    f = out.figures
    assert f.tls_verified is False and f.tls_chain == fingerprints(certs.unknown_ca)
    assert f.tls_issuer == "CN=Unknown root CA,O=Unhindered lab"
    assert f.status_code is None and f.title is None


async def test_a_page_without_a_title_and_no_redirect_send_neither() -> None:
    async with server(None, lambda path, port: answer(200, b"plain text")) as port:
        out = await http.run(https_check(f"http://127.0.0.1:{port}/"))
    assert out.ok
    figures = wire(out.figures, HttpMeasurement)
    assert not {"title", "redirect_chain", "tls_chain", "tls_verified", "address",
                "dns_answers", "resolver"} & set(figures)


@pytest.mark.parametrize(("body", "title"), [
    (b"<title></title>", None),
    (b"<html><title>\n\t </title>", None),
    (b"no title here", None),
    (b"<title>cut off", "cut off"),
    (b"<titles>x</titles><title>real</title>", "real"),
    (b"<title>" + b"x" * 500 + b"</title>", "x" * 200),
    (b"<title>a\x00b</title>", "a\\x00b"),  # a control character made visible
    (b" " * 70_000 + b"<title>too deep</title>", None),  # only the body's head is read
])
def test_page_title(body: bytes, title: str | None) -> None:
    assert http.page_title(body) == title


def test_the_resolver_is_the_first_nameserver(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    assert system_resolver_name(conf) == "system"  # no file
    conf.write_text("# comment\nsearch lab.test\nnameserver fe80::1%eth0\nnameserver 10.0.0.53\n")
    assert system_resolver_name(conf) == "fe80::1"
    conf.write_text("options edns0\n")
    assert system_resolver_name(conf) == "system"  # changed, and read again
    conf.write_text("nameserver 192.0.2.53\n")
    assert system_resolver_name(conf) == "192.0.2.53"


async def test_a_literal_is_not_looked_up() -> None:
    resolved = await lookup("192.0.2.7", 4)
    assert (str(resolved.address), resolved.answers, resolved.figures()) == (
        "192.0.2.7", None, {})


@pytest.mark.parametrize(("code", "words"), [
    (errno.EHOSTUNREACH, "No route to host"),
    (errno.ENETUNREACH, "Network is unreachable"),
])
def test_unreachable_detail_is_the_system_error(code: int, words: str) -> None:
    # What asyncio's sock_connect raises: its own text in place of the system's.
    exc = OSError(code, "Connect call failed ('192.0.2.7', 80)")
    assert tcp.connect_failure(exc, 80) == ("unreachable", words)
