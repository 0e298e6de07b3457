"""TLS for ingest: the collector, started as `unhindered-collector serve` starts it, serves
HTTPS with a throwaway CA; the probe's real pusher and enroller verify it, show client
certificates, and keep one connection for their batches; nginx in front, as
docs/deploy.md shows it. Everything on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from collector.store.database import Store
from collector.tls_certs import Authority, Issued, make_authority
from probes.config import CollectorSettings, ProbeConfig
from probes.enroll import credential
from probes.outbox import Outbox
from probes.reporters.http_push import HttpPusher
from probes.transport import Transport, TransportError
from tests.integration.test_http_push import result
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


@dataclass(frozen=True)
class Certs:
    ca: Authority  # signs the collector's certificate and the probes' client certificates
    server: Issued  # for 127.0.0.1
    client: Issued
    other_ca: Authority  # trusted by nobody here
    other_client: Issued


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Certs:
    directory = tmp_path_factory.mktemp("tls")
    ca = make_authority(directory)
    other = make_authority(directory, "Some other CA", label="other-ca")
    return Certs(ca, ca.issue(directory, "collector", ["127.0.0.1"]),
                 ca.issue(directory, "fra-1", ["fra-1"], client=True), other,
                 other.issue(directory, "rogue", ["fra-1"], client=True))


@dataclass
class Collector:
    port: int
    process: subprocess.Popen
    log: Path
    database: str
    token: str  # fra-1's credential
    enrollment: str  # fra-2's one-time enrollment token

    def log_text(self) -> str:
        return self.log.read_text()


def client_context(certs: Certs, client: Issued | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs.ca.cert_file)
    if client is not None:
        context.load_cert_chain(client.cert_file, client.key_file)
    return context


def healthz(port: int, context: ssl.SSLContext, scheme: str = "https") -> bool:
    with urllib.request.urlopen(f"{scheme}://127.0.0.1:{port}/healthz", timeout=2,
                                context=context if scheme == "https" else None) as answer:
        return answer.status == 200


@contextlib.contextmanager
def collector_process(directory: Path, certs: Certs, tls: dict | None) -> Iterator[Collector]:
    """`unhindered-collector -c collector.yaml serve`, with `tls` as the config's section,
    stopped with SIGTERM (a clean exit) after the block."""
    directory.mkdir(parents=True, exist_ok=True)
    database = f"sqlite:///{directory / 'collector.sqlite'}"
    store = Store(database)
    store.migrate()
    token = store.add_probe("fra-1", "FRA")
    enrollment = store.enroll_probe("fra-2", "FRA", valid_s=3600)
    store.close()
    port = free_port()
    config = {"database": {"url": database}, "listen": {"host": "127.0.0.1", "port": port}}
    if tls is not None:
        config["tls"] = tls
    (directory / "collector.yaml").write_text(yaml.safe_dump(config))
    log = directory / "collector.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "-c", str(directory / "collector.yaml"),
             "serve"], stdout=out, stderr=subprocess.STDOUT, cwd=directory)
    try:
        check = client_context(certs, certs.client)
        wait_for(lambda: process.poll() is None and healthz(
            port, check, "https" if tls else "http"), 30, "the collector to serve /healthz")
        yield Collector(port, process, log, database, token, enrollment)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            assert process.wait(15) == 0, log.read_text()[-2000:]
        except subprocess.TimeoutExpired:
            process.kill()
            raise


def tls_section(certs: Certs, **more) -> dict:
    return {"cert_file": str(certs.server.cert_file), "key_file": str(certs.server.key_file),
            **more}


@pytest.fixture(scope="module")
def https_collector(tmp_path_factory, certs) -> Iterator[Collector]:
    with collector_process(tmp_path_factory.mktemp("https"), certs,
                           tls_section(certs)) as served:
        yield served


def pusher_for(tmp_path: Path, url: str, token: str, **settings) -> tuple[HttpPusher, Outbox]:
    outbox = Outbox(tmp_path / f"outbox-{os.urandom(4).hex()}.sqlite")
    config = CollectorSettings(urls=[url], token=token, batch_max_size=3,
                               backoff_initial_s=0.01, backoff_max_s=0.02, **settings)
    return HttpPusher(config, outbox, "fra-1", "FRA", token), outbox


def recent(n: int):
    return result(n, started_at=datetime.now(UTC) - timedelta(seconds=60 - n))


def stored_seqs(served: Collector) -> list[int]:
    store = Store(served.database)
    try:
        return [r.seq for r in store.results_of_probe("fra-1")]
    finally:
        store.close()


class CountingRelay:
    """A TCP relay to a port, counting the connections it accepts: the TLS session passes
    through it end to end (it never decrypts), so what it counts is what the collector
    accepts."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task] = set()

    async def __aenter__(self) -> CountingRelay:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        pipes = [asyncio.create_task(self._pipe(reader, up_writer)),
                 asyncio.create_task(self._pipe(up_reader, writer))]
        self.pipes.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for task in pipes:
            task.cancel()
        writer.close()
        up_writer.close()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        for task in self.pipes:
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)


async def test_batches_arrive_over_https_on_one_kept_alive_connection(
        tmp_path, https_collector, certs):
    async with CountingRelay(https_collector.port) as relay:
        pusher, outbox = pusher_for(tmp_path, f"https://127.0.0.1:{relay.port}/",
                                    https_collector.token, ca_file=certs.ca.cert_file)
        try:
            for n in range(9):
                await outbox.append(recent(n))
            for _ in range(3):  # three batches of 3
                assert await pusher.push_once(), pusher.last_error
            assert (await outbox.stats()).depth == 0
            assert relay.accepted == 1  # one connection, one handshake, three batches
        finally:
            pusher.transport.close()
            outbox.close()
    assert stored_seqs(https_collector)[-9:] == list(range(1, 10))


async def test_a_collector_the_probe_does_not_trust_is_refused_saying_why(
        tmp_path, https_collector, certs, caplog):
    why = ("the collector's certificate is not trusted (unable to get local issuer "
           "certificate): set collector.ca_file to the CA certificate that signed it")
    url = f"https://127.0.0.1:{https_collector.port}/"
    pusher, outbox = pusher_for(tmp_path, url, https_collector.token,
                                ca_file=certs.other_ca.cert_file)
    try:
        await outbox.append(recent(1))
        assert not await pusher.push_once()
        assert why in pusher.last_error
        assert (await outbox.stats()).depth == 1
    finally:
        pusher.transport.close()
        outbox.close()
    # Enrollment says the same, and keeps its token (it is never sent).
    config = ProbeConfig.model_validate({
        "probe_id": "fra-2", "mission": "FRA", "outbox": str(tmp_path / "o.sqlite"),
        "collector": {"urls": [url], "token_file": str(tmp_path / "fra-2" / "credential"),
                      "enrollment_token": https_collector.enrollment,
                      "ca_file": str(certs.other_ca.cert_file), "backoff_initial_s": 0.05,
                      "backoff_max_s": 0.1},
        "checks": [{"id": "c", "kind": "tcp", "target": "127.0.0.1", "port": 9}],
    })
    with caplog.at_level(logging.WARNING, logger="probes.enroll"), \
            pytest.raises(TimeoutError):
        await asyncio.wait_for(credential(config), 1)
    assert any(why in r.getMessage() for r in caplog.records if r.name == "probes.enroll")
    trusting = config.model_copy(update={"collector": config.collector.model_copy(
        update={"ca_file": certs.ca.cert_file})})
    token = await credential(trusting)  # the same token, now trusted: enrolled
    assert (tmp_path / "fra-2" / "credential").read_text().strip() == token


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_a_tls_1_1_client_is_refused(https_collector, certs):
    def handshake(version: ssl.TLSVersion) -> str:
        context = client_context(certs)
        context.minimum_version = context.maximum_version = version
        context.set_ciphers("DEFAULT:@SECLEVEL=0")  # lets OpenSSL offer TLS 1.1 at all
        with socket.create_connection(("127.0.0.1", https_collector.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            return tls.version()

    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError) as refused:
        handshake(ssl.TLSVersion.TLSv1_1)
    # The collector hangs up on the TLS 1.1 hello (asyncio sends no alert first). Not the
    # client refusing to offer it (NO_PROTOCOLS_AVAILABLE).
    assert refused.value.reason in ("UNEXPECTED_EOF_WHILE_READING",
                                    "TLSV1_ALERT_PROTOCOL_VERSION")


def test_a_refusal_reaches_a_client_still_sending_over_tls(https_collector, certs):
    """The lingering close under TLS: a 401 before a 3 MB body is read must reach the
    client as an answer, not as a reset (see Connection.discard_rest)."""
    body = os.urandom(3_000_000)
    # Eight: without the lingering close about a third of them are reset (measured), and
    # which ones depends on timing.
    for _ in range(8):
        request = urllib.request.Request(
            f"https://127.0.0.1:{https_collector.port}/api/v1/results", data=body,
            method="POST", headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(request, timeout=10, context=client_context(certs))
        assert answer.value.code == 401
        assert "missing bearer token" in answer.value.read().decode()
    assert healthz(https_collector.port, client_context(certs))


async def test_mutual_tls_required(tmp_path, certs):
    tls = tls_section(certs, client_certs="required", client_ca_file=str(certs.ca.cert_file))
    with collector_process(tmp_path / "collector", certs, tls) as served:
        url = f"https://127.0.0.1:{served.port}/"
        attempts = {
            "none": {},
            "rogue": {"client_cert_file": certs.other_client.cert_file,
                      "client_key_file": certs.other_client.key_file},
            "good": {"client_cert_file": certs.client.cert_file,
                     "client_key_file": certs.client.key_file},
        }
        outcomes = {}
        for name, client in attempts.items():
            pusher, outbox = pusher_for(tmp_path, url, served.token,
                                        ca_file=certs.ca.cert_file, **client)
            try:
                await outbox.append(recent(1))
                outcomes[name] = (await pusher.push_once(), pusher.last_error)
            finally:
                pusher.transport.close()
                outbox.close()
        # The collector closes without saying why (asyncio sends no TLS alert): the probe
        # says what to check.
        why = ("the collector closed the TLS connection without an answer: if it requires "
               "client certificates (mutual TLS), set collector.client_cert_file and "
               "collector.client_key_file to a certificate signed by the CA in its "
               "tls.client_ca_file")
        for refused in ("none", "rogue"):
            assert outcomes[refused][0] is False
            assert why in outcomes[refused][1]
        assert outcomes["good"] == (True, None)
        assert stored_seqs(served) == [1]


def served_fingerprint(port: int, certs: Certs) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            client_context(certs).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def file_fingerprint(issued: Issued) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(issued.cert_file.read_text())).hexdigest()


def test_sighup_swaps_the_certificate_and_refuses_a_bad_pair(tmp_path, certs):
    live = tmp_path / "live"
    first = certs.ca.issue(live, "collector", ["127.0.0.1"])
    tls = {"cert_file": str(first.cert_file), "key_file": str(first.key_file)}
    with collector_process(tmp_path / "collector", certs, tls) as served:
        old = file_fingerprint(first)
        assert served_fingerprint(served.port, certs) == old
        renewed = certs.ca.issue(tmp_path / "renewed", "collector", ["127.0.0.1"])
        shutil.copyfile(renewed.cert_file, first.cert_file)
        shutil.copyfile(renewed.key_file, first.key_file)
        served.process.send_signal(signal.SIGHUP)
        new = file_fingerprint(renewed)
        wait_for(lambda: served_fingerprint(served.port, certs) == new, 10,
                 "a new handshake to see the renewed certificate")
        assert f"TLS certificate reloaded from {first.cert_file} (sha256 {new})" \
            in served.log_text()

        # A certificate whose key is not the one beside it: refused, the running pair kept.
        other = certs.ca.issue(tmp_path / "other", "collector", ["127.0.0.1"])
        shutil.copyfile(other.cert_file, first.cert_file)
        served.process.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS reload refused" in served.log_text(), 10,
                 "the refused reload in the log")
        line = next(x for x in served.log_text().splitlines() if "TLS reload refused" in x)
        assert f"tls.cert_file {first.cert_file} and tls.key_file {first.key_file}" in line
        assert served_fingerprint(served.port, certs) == new
        assert served.process.poll() is None


@pytest.mark.parametrize("broken", ["missing key", "not a certificate"])
def test_an_unusable_certificate_or_key_stops_the_start_naming_the_setting(
        tmp_path, certs, broken):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    tls = ({"cert_file": str(certs.server.cert_file), "key_file": str(tmp_path / "none.key")}
           if broken == "missing key" else
           {"cert_file": str(junk), "key_file": str(certs.server.key_file)})
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({
        "database": {"url": f"sqlite:///{tmp_path / 'c.sqlite'}"},
        "listen": {"host": "127.0.0.1", "port": free_port()}, "tls": tls}))
    ran = subprocess.run([sys.executable, "-m", "collector.cli", "-c", str(config), "serve"],
                         capture_output=True, text=True, timeout=60)
    assert ran.returncode == 2
    expected = (f"tls.key_file: cannot read {tmp_path / 'none.key'} (No such file or "
                "directory)" if broken == "missing key" else f"tls.cert_file {junk}")
    assert expected in ran.stderr, ran.stderr


class _OneShotKeepAlive:
    """An HTTP server whose first connection answers one request, keeps the connection,
    then reads the next request and closes without answering (as a collector restarting
    at the wrong moment); later connections answer every request."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        try:
            for n in range(2 if first else 100):
                head = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                await reader.readexactly(int(length.group(1)) if length else 0)
                self.requests += 1
                if first and n == 1:
                    break  # received, never answered
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except asyncio.IncompleteReadError:
            pass
        writer.close()


@pytest.mark.parametrize("idempotent", [True, False])
async def test_a_request_lost_on_a_kept_connection_is_resent_only_if_idempotent(idempotent):
    peer = _OneShotKeepAlive()
    server = await asyncio.start_server(peer.serve, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/api/v1/results"
    transport = Transport(5)
    try:
        assert (await transport.request("POST", url, b"1", idempotent=idempotent)).status == 200
        if idempotent:
            assert (await transport.request("POST", url, b"2", idempotent=True)).body == b"ok"
            assert (peer.connections, peer.requests) == (2, 3)
        else:
            with pytest.raises(TransportError, match="closed the connection without an answer"):
                await transport.request("POST", url, b"2", idempotent=False)
            assert (peer.connections, peer.requests) == (1, 2)  # sent once, never again
    finally:
        transport.close()
        server.close()


@contextlib.contextmanager
def nginx_process(nginx: str, prefix: Path, server_block: str) -> Iterator[subprocess.Popen]:
    """nginx in the foreground, one process, everything it writes under `prefix`."""
    prefix.mkdir()
    temp = "\n".join(f"{kind}_temp_path {prefix / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (prefix / "nginx.conf").write_text(
        f"daemon off;\nmaster_process off;\npid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'};\nevents {{}}\n"
        f"http {{\naccess_log off;\n{temp}\n{server_block}\n}}\n")
    process = subprocess.Popen([nginx, "-p", str(prefix), "-e", str(prefix / "error.log"),
                                "-c", str(prefix / "nginx.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()


def nginx_block() -> str:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    found = re.search(r"### Behind a reverse proxy \(nginx\).*?```nginx\n(.*?)```", doc, re.S)
    assert found, "docs/deploy.md has no nginx block under 'Behind a reverse proxy (nginx)'"
    return found.group(1)


def substituted(block: str, replacements: dict[str, str]) -> str:
    for old, new in replacements.items():
        assert block.count(old) == 1, f"{old!r} is not in the documented block once"
        block = block.replace(old, new)
    return block


async def test_the_documented_nginx_setup_carries_a_batch(tmp_path, certs):
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is not installed (Debian package nginx): the reverse-proxy setup "
                    "of docs/deploy.md is not tested")
    with collector_process(tmp_path / "collector", certs, None) as served:
        port = free_port()
        block = substituted(nginx_block(), {
            "listen 443 ssl;": f"listen 127.0.0.1:{port} ssl;",
            "/etc/unhindered/tls/collector.pem": str(certs.server.cert_file),
            "/etc/unhindered/tls/collector.key": str(certs.server.key_file),
            "127.0.0.1:9640": f"127.0.0.1:{served.port}",
        })
        with nginx_process(nginx, tmp_path / "nginx", block) as process:
            wait_for(lambda: process.poll() is None and healthz(port, client_context(certs)),
                     20, "nginx to pass /healthz through")
            pusher, outbox = pusher_for(tmp_path, f"https://127.0.0.1:{port}/", served.token,
                                        ca_file=certs.ca.cert_file)
            try:
                for n in range(3):
                    await outbox.append(recent(n))
                assert await pusher.push_once(), pusher.last_error
            finally:
                pusher.transport.close()
                outbox.close()
            assert stored_seqs(served) == [1, 2, 3]


async def test_a_certificate_for_another_address_is_refused_saying_why(tmp_path, certs):
    elsewhere = certs.ca.issue(tmp_path, "elsewhere", ["127.0.0.2", "collector.lab.test"])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(elsewhere.cert_file, elsewhere.key_file)
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0, ssl=context)
    transport = Transport(5, ssl.create_default_context(cafile=certs.ca.cert_file))
    try:
        with pytest.raises(TransportError) as refused:
            await transport.request(
                "GET", f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/healthz")
        assert ("the collector's certificate is not valid for 127.0.0.1 (IP address "
                "mismatch") in str(refused.value)
        assert "use a URL with a name the certificate lists" in str(refused.value)
    finally:
        transport.close()
        server.close()
