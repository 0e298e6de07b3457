"""The lab's interference servers (tests/support/lab/faults.py) do what they stage: the
lying resolver answers a wrong address for one name only, the man in the middle presents
a chain of the wrong CA for the site's name and relays the real site behind it, and a
diverted mission gets the block page while the centre gets the real site."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.lab.blockpage_responder import BLOCK_PAGE, BLOCK_TITLE
from tests.support.lab.certs import SERVER_NAME, make_certs
from tests.support.lab.faults import (
    divert,
    lying_zone,
    start_blockpage,
    start_mitm,
    start_resolver,
    start_site,
)
from tests.support.lab.https_responder import OK_BODY
from tests.support.spine import PYTHON, measure_once

pytestmark = pytest.mark.netlab

ZONE = {"origin": "lab.test.",
        "records": {"documents": {"A": ["198.19.0.1"]}, "meetings": {"A": ["198.19.0.2"]}}}
LOCAL = {"local": {"gateway": "none", "resolver": "none"}}


def dns(check_id: str, resolver: str, name: str) -> dict:
    return {"id": check_id, "kind": "dns", "target": resolver, "name": name, "timeout_s": 2}


def test_the_lying_resolver_lies_for_one_name_only(lab, tmp_path: Path):
    mission = lab.add_mission("FRA")
    honest, liar = lab.add_target(), lab.add_target()
    start_resolver(lab, tmp_path, ZONE, [honest.ipv4], "honest")
    start_resolver(lab, tmp_path, lying_zone(ZONE, "documents", ["198.19.0.66"]),
                   [liar.ipv4], "liar")
    results = measure_once(lab, mission, tmp_path, [
        dns("honest", honest.ipv4, "documents.lab.test"),
        dns("lie", liar.ipv4, "documents.lab.test"),
        dns("truth", liar.ipv4, "meetings.lab.test"),
    ], **LOCAL)
    answers = {k: (r["ok"], r["figures"]["answers"]) for k, r in results.items()}
    assert answers == {"honest": (True, ["198.19.0.1"]), "lie": (True, ["198.19.0.66"]),
                       "truth": (True, ["198.19.0.2"])}


ISSUER_OF = """
import socket, ssl, sys
from cryptography import x509
context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5) as raw:
    with context.wrap_socket(raw, server_hostname=sys.argv[3]) as tls:
        cert = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
        print(cert.issuer.rfc4514_string())
        print(",".join(cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)))
"""


def test_the_man_in_the_middle_shows_the_wrong_ca_and_relays_the_site(lab, tmp_path: Path):
    mission = lab.add_mission("FRA")
    site, middle = lab.add_target(), lab.add_target()
    certs = make_certs(tmp_path / "certs", [site.ipv4, middle.ipv4])
    start_site(lab, tmp_path, site.ipv4, 8080, 8443, certs)
    start_mitm(lab, tmp_path, middle.ipv4, 8443, certs, f"{site.ipv4}:8443")

    def issuer(address: str) -> tuple[str, str]:
        done = lab.run(mission.name, [PYTHON, "-c", ISSUER_OF, address, "8443", SERVER_NAME])
        assert done.returncode == 0, done.stderr
        name, sans = done.stdout.splitlines()
        return name, sans

    # The site's name either way; only the issuer differs.
    assert issuer(site.ipv4) == ("CN=Unhindered lab intermediate CA,O=Unhindered lab",
                                 SERVER_NAME)
    assert issuer(middle.ipv4) == ("CN=Unknown root CA,O=Unhindered lab", SERVER_NAME)
    checks = [{"id": f"{label}{'-noverify' if not verify else ''}", "kind": "http",
               "target": f"https://{address}:8443/ok", "server_name": SERVER_NAME,
               "ca_file": str(certs.ca_file), "tls_verify": verify, "timeout_s": 5,
               "body_regex": "documents: ok"}
              for label, address in (("site", site.ipv4), ("mitm", middle.ipv4))
              for verify in (True, False)]
    results = measure_once(lab, mission, tmp_path, checks, **LOCAL)
    assert results["site"]["ok"] is True
    assert (results["mitm"]["ok"], results["mitm"]["reason"]) == (False, "tls")
    assert "unable to get local issuer certificate" in results["mitm"]["detail"]
    # Past the certificate, the real site's page: an interceptor, not an impostor.
    noverify = results["mitm-noverify"]
    assert noverify["ok"] is True, (noverify["reason"], noverify["detail"])
    assert results["mitm-noverify"]["figures"]["body_matched"] is True


def test_a_diverted_mission_gets_the_block_page_the_centre_the_site(lab, tmp_path: Path):
    fra, ken = lab.add_mission("FRA"), lab.add_mission("KEN")
    site, blocker = lab.add_target(), lab.add_target()
    start_site(lab, tmp_path, site.ipv4, 8080)
    start_blockpage(lab, tmp_path, blocker.ipv4, 8081, status=403)
    url = f"http://{site.ipv4}:8080/ok"
    assert lab.fetch(fra.name, url)[::2] == (200, OK_BODY)
    divert(lab, fra, site.ipv4, 8080, blocker.ipv4, 8081)
    status, _headers, body = lab.fetch(fra.name, url)
    assert (status, body) == (403, BLOCK_PAGE) and BLOCK_TITLE.encode() in body
    assert len(BLOCK_PAGE) != len(OK_BODY)
    # Whatever the path: every request gets the page.
    assert lab.fetch(fra.name, f"http://{site.ipv4}:8080/anything")[::2] == (403, BLOCK_PAGE)
    for ns in (lab.centre.name, ken.name):
        assert lab.fetch(ns, url)[::2] == (200, OK_BODY)
