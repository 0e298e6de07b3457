"""The http check's pure parts: its config (and the tcp check's TLS fields), the request
it writes, how it parses answers and redirects, and the certificate-chain expiry. No
network: bodies are fed to a StreamReader directly."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from pydantic import ValidationError

from probes import config as probe_config
from probes import rounds
from tests.support.lab.certs import make_certs
from unhindered.checks.http import HttpCheck
from unhindered.checks.tcp import TcpCheck
from unhindered.measurement import FailureReason, encode_result, read_measurement, with_seq
from unhindered.probing import KINDS, http, tls


def check(**fields) -> HttpCheck:
    return HttpCheck(**{"id": "web", "kind": "http", "target": "http://192.0.2.1/",
                             **fields})


def failure(exc_info: pytest.ExceptionInfo) -> FailureReason:
    return exc_info.value.reason


# -- config ---------------------------------------------------------------------------------


def test_defaults():
    c = check()
    assert (c.method, c.follow_redirects, c.max_redirects, c.tls_verify) == ("GET", True, 5, True)
    assert c.expected_status == list(range(200, 400))
    assert (c.max_body_bytes, c.server_name, c.ca_file, c.headers) == (1 << 20, None, None, {})


@pytest.mark.parametrize("fields, message", [
    ({"target": "ftp://192.0.2.1/"}, "http:// or https:// URL"),
    ({"target": "192.0.2.1"}, "http:// or https:// URL"),
    ({"target": "http://192.0.2.1:99999/"}, "Port out of range"),
    ({"body_regex": "(unclosed"}, "not a valid regular expression"),
    ({"method": "HEAD", "body_regex": "x"}, "needs method GET"),
    ({"headers": {"X-Bad\n": "v"}}, "invalid header name"),
    ({"headers": {"X-Token": "a\r\nInjected: yes"}}, "ASCII on one line"),
    ({"expected_status": [200, 600]}, "less than or equal to 599"),
    ({"expected_status": []}, "at least 1 item"),
])
def test_invalid_config(fields, message):
    with pytest.raises(ValidationError, match=message):
        check(**fields)


def test_ca_file_is_relative_to_the_config_file(tmp_path):
    (tmp_path / "probe.yaml").write_text(textwrap.dedent("""\
        probe_id: fra-1
        mission: FRA
        outbox: outbox.sqlite
        collector: {urls: ["http://127.0.0.1:9640/"], token: t}
        checks:
          - {id: web, kind: http, target: "https://192.0.2.1/", ca_file: lab-ca.pem}
          - {id: tls, kind: tcp, target: 192.0.2.1, port: 443, tls: true, ca_file: lab-ca.pem}
        """))
    (tmp_path / "lab-ca.pem").touch()  # loading checks that it exists
    web, tcp_tls = probe_config.load(tmp_path / "probe.yaml").checks
    assert web.ca_file == tmp_path / "lab-ca.pem"
    assert tcp_tls.ca_file == tmp_path / "lab-ca.pem" and tcp_tls.tls is True


# -- the request ----------------------------------------------------------------------------


def test_request_head():
    parts = urlsplit("http://192.0.2.1:8080/a b/c?q=1&r=%20#frag")
    head = http.build_request("GET", parts, {"user-agent": "custom", "Connection": "keep-alive",
                                             "X-Extra": "1"}, "192.0.2.1:8080")
    assert head == (b"GET /a%20b/c?q=1&r=%20 HTTP/1.1\r\n"
                    b"Host: 192.0.2.1:8080\r\nAccept: */*\r\nuser-agent: custom\r\n"
                    b"X-Extra: 1\r\nConnection: close\r\n\r\n")


def test_host_header_uses_server_name_and_brackets_ipv6():
    assert http._host_header("documents.lab.test", urlsplit("https://192.0.2.1/")) == (
        "documents.lab.test")
    assert http._host_header("2001:db8::1", urlsplit("http://[2001:db8::1]:8080/")) == (
        "[2001:db8::1]:8080")
    assert http._host_header("192.0.2.1", urlsplit("https://192.0.2.1:443/")) == "192.0.2.1"


def test_credentials_stay_with_the_configured_host():
    c = check(headers={"Authorization": "Bearer x", "Cookie": "a=b", "Host": "h",
                       "X-Trace": "1"})
    assert http._headers_for(c, own_host=True) == c.headers
    assert http._headers_for(c, own_host=False) == {"X-Trace": "1"}


# -- redirects ------------------------------------------------------------------------------


@pytest.mark.parametrize("location, expected", [
    ("/next?x=1", "http://192.0.2.1:8080/next?x=1"),
    ("next", "http://192.0.2.1:8080/dir/next"),
    ("https://192.0.2.2/final#part", "https://192.0.2.2/final"),
    ("//192.0.2.3/other", "http://192.0.2.3/other"),
])
def test_redirect_url(location, expected):
    assert http.redirect_url("http://192.0.2.1:8080/dir/page", location) == expected


@pytest.mark.parametrize("location", ["ftp://192.0.2.1/x", "http://:80/x", "http://h:0/",
                                      "http://h:70000/"])
def test_unusable_redirect(location):
    with pytest.raises(http._Failed) as caught:
        http.redirect_url("http://192.0.2.1/", location)
    assert failure(caught) == FailureReason.ERROR


# -- parsing the answer ---------------------------------------------------------------------


def test_status_line():
    assert http.parse_status_line(b"HTTP/1.1 200 OK\r\n") == ("HTTP/1.1", 200, "OK")
    assert http.parse_status_line(b"HTTP/1.0 503\r\n") == ("HTTP/1.0", 503, "")
    assert http.parse_status_line(b"HTTP/1.1 404 Not  Found\n") == ("HTTP/1.1", 404, "Not  Found")
    for bad in (b"SSH-2.0-OpenSSH_9.2\r\n", b"HTTP/1.1 99 Low\r\n", b"HTTP/1.1 600 X\r\n",
                b"HTTP/2 200\r\n"):
        with pytest.raises(http._Failed):
            http.parse_status_line(bad)


def test_headers_are_case_insensitive_and_joined():
    headers = http.parse_headers([b"Content-Type: text/plain\r\n", b"X-A: 1\r\n",
                                  b"x-a:  2 \r\n"])
    assert headers == {"content-type": "text/plain", "x-a": "1, 2"}
    with pytest.raises(http._Failed):
        http.parse_headers([b"no colon here\r\n"])
    with pytest.raises(http._Failed):
        http.parse_headers([b" folded: value\r\n"])


def test_content_length():
    assert http.content_length("10") == 10
    assert http.content_length("10, 10") == 10
    for bad in ("10, 11", "-1", "ten", ""):
        with pytest.raises(http._Failed):
            http.content_length(bad)


def test_describe_statuses():
    assert http.describe_statuses(list(range(200, 400))) == "200-399"
    assert http.describe_statuses([404, 200, 201, 202, 301]) == "200-202, 301, 404"


def read_body(data: bytes, headers: dict[str, str], cap: int = 1 << 20,
              method: str = "GET", status: int = 200, eof: bool = True) -> bytes:
    async def go() -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        return await http._read_body(reader, method, status, headers, cap)
    return asyncio.run(go())


def test_body_by_length_chunks_or_close():
    assert read_body(b"hello, extra", {"content-length": "5"}) == b"hello"
    chunked = b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nTrailer: x\r\n\r\n"
    assert read_body(chunked, {"transfer-encoding": "chunked"}) == b"hello!"
    assert read_body(b"5\r\nhello\r\n0\r\n", {"transfer-encoding": "chunked"}) == b"hello"
    assert read_body(b"until the end", {}) == b"until the end"
    assert read_body(b"ignored", {"content-length": "7"}, method="HEAD") == b""
    assert read_body(b"", {}, status=204, eof=False) == b""


def test_body_is_capped():
    assert read_body(b"x" * 100, {"content-length": "100"}, cap=10) == b"x" * 10
    assert read_body(b"5\r\nhello\r\n5\r\nworld\r\n", {"transfer-encoding": "chunked"},
                     cap=7, eof=False) == b"hellowo"
    assert read_body(b"y" * 100, {}, cap=10, eof=False) == b"y" * 10


def test_truncated_or_malformed_body():
    with pytest.raises(asyncio.IncompleteReadError):
        read_body(b"short", {"content-length": "10"})
    with pytest.raises(http._Failed):
        read_body(b"zz\r\nhello\r\n", {"transfer-encoding": "chunked"})


# -- certificate chain expiry ---------------------------------------------------------------


def test_chain_not_after_is_the_earliest(tmp_path):
    certs = make_certs(tmp_path, ["192.0.2.1"])
    pem = certs.valid.cert_file.read_bytes()
    leaf, intermediate = x509.load_pem_x509_certificates(pem)
    ders = [c.public_bytes(Encoding.DER) for c in (leaf, intermediate)]
    # As Python 3.13 exposes it: the chains as DER bytes on the SSL object itself.
    public = SimpleNamespace(get_verified_chain=lambda: ders, get_unverified_chain=lambda: [])
    assert tls.chain_not_after(public, verified=True) == certs.intermediate_not_after
    # Neither chain available: the leaf the server presented.
    bare = SimpleNamespace(getpeercert=lambda binary_form: ders[0])
    assert tls.chain_not_after(bare, verified=True) == certs.valid.not_after


def test_tcp_tls_fields_need_tls():
    with pytest.raises(ValidationError, match="need tls: true"):
        TcpCheck(id="t", kind="tcp", target="192.0.2.1", port=443, server_name="x.test")
    plain = TcpCheck(id="t", kind="tcp", target="192.0.2.1", port=443)
    assert (plain.tls, plain.tls_verify, plain.server_name, plain.ca_file) == (
        False, True, None, None)


# -- what a hostile server can put in a result (issue 12) -----------------------------------


async def test_a_status_line_with_nul_still_gives_a_valid_measurement(monkeypatch):
    """A NUL in the reason phrase once made PostgreSQL refuse the probe's whole batch, for
    good: the probe now writes control characters as visible escapes."""
    version, status, reason = http.parse_status_line(b"HTTP/1.1 503 Service\x00Unavailable\r\n")
    progress = http._Progress(url="http://192.0.2.1/")
    answer = http.Answer(version=version, status=status, reason=reason, headers={}, body=b"")
    outcome = http._judge(check(), progress, answer)

    async def run(_check):
        return outcome
    monkeypatch.setitem(KINDS, "http", dataclasses.replace(KINDS["http"], run=run))
    m = await rounds.measure(check(), "fra-1", "FRA")
    assert (m.ok, m.reason) == (False, FailureReason.HTTP_STATUS)
    assert m.detail.startswith("status 503 Service\\x00Unavailable from http://192.0.2.1/")
    assert read_measurement(with_seq(1, encode_result(m))).detail == m.detail


async def test_any_text_a_check_reports_gives_a_valid_measurement(monkeypatch):
    async def run(_check):
        raise OSError("line one\nline two \x00" + "x" * 600)
    monkeypatch.setitem(KINDS, "http", dataclasses.replace(KINDS["http"], run=run))
    m = await rounds.measure(check(), "fra-1", "FRA")
    assert m.reason == FailureReason.ERROR
    assert m.detail.startswith("OSError: line one\\x0aline two \\x00xxx")
    assert len(m.detail) == 500


def test_a_redirect_to_a_url_with_control_characters_gives_valid_figures():
    progress = http._Progress(url=http.redirect_url("http://192.0.2.1/", "/a\x00b"))
    assert progress.http_figures().final_url == "http://192.0.2.1/a\\x00b"
