"""The probe's filter of pysnmp's trace (UNHINDERED_SNMP_DEBUG): secrets are withheld in
every form pysnmp writes them, and a hostile packet's trace cannot forge log lines. The
whole trace of a running probe is checked in tests/integration/test_snmp_agent.py."""

from __future__ import annotations

import pytest
from pyasn1.type.univ import OctetString
from pysnmp import debug
from pysnmp.proto.secmod.rfc3414.service import SnmpUSMSecurityModel
from pysnmp.proto.secmod.rfc3826.priv.aes import Aes
from pysnmp.proto.secmod.rfc7860.auth.hmacsha2 import HmacSha2

from probes.snmp.trace import WITHHELD, SecretFilter, start

PHRASE, COMMUNITY = "auth-pass-phrase", "lab-community-7"


@pytest.fixture
def learning():
    """A filter learning the USM's keys; pysnmp's shared services restored after."""
    services = [*SnmpUSMSecurityModel.AUTH_SERVICES.values(),
                *SnmpUSMSecurityModel.PRIV_SERVICES.values()]
    trace = SecretFilter([PHRASE, COMMUNITY])
    trace.learn_keys()
    yield trace
    for service in services:
        for name in ("hash_passphrase", "localize_key"):
            if name in vars(service):
                delattr(service, name)


def test_secrets_are_withheld_as_text_hex_and_in_hex_dumps():
    trace = SecretFilter([PHRASE, COMMUNITY])
    packet = b"\x30\x20\x02\x01\x01\x04\x0f" + COMMUNITY.encode() + b"\xa7\x00" * 8
    message = (f"var-binds payload [{PHRASE}] hex {PHRASE.encode().hex()} community="
               f"{COMMUNITY} outgoingMessage {debug.hexdump(packet)}")
    cleaned = trace.clean(message)
    assert PHRASE not in cleaned and COMMUNITY not in cleaned
    assert PHRASE.encode().hex() not in cleaned
    assert cleaned.count(WITHHELD) == 3
    # The dump keeps its shape, the community's octets masked.
    assert "00000: 30 20 02 01 01 04 0F 2A 2A 2A" in cleaned
    assert COMMUNITY.encode().hex().upper()[:8] not in cleaned.replace(" ", "")


def test_values_labelled_as_keys_are_withheld_whatever_they_are():
    cleaned = SecretFilter([]).clean('addV3User: localAuthKey "0x0102" masterPrivKey "x" '
                                     'usmUserAuthKeyLocalized "0xabcdef" userName "monitor"')
    assert cleaned == (f'addV3User: localAuthKey "{WITHHELD}" masterPrivKey "{WITHHELD}" '
                       f'usmUserAuthKeyLocalized "{WITHHELD}" userName "monitor"')


def test_a_hostile_packets_trace_cannot_forge_a_log_line():
    cleaned = SecretFilter([]).clean("community=x\n2026-01-01 ERROR forged\x1b[2J\x00")
    assert cleaned == "community=x\n    2026-01-01 ERROR forged\\x1b[2J\\x00"


def test_keys_are_learnt_as_the_usm_derives_them(learning):
    engine_id = OctetString(hexValue="80001f888071af61039953116b00000000")
    phrase = OctetString(PHRASE)
    auth = SnmpUSMSecurityModel.AUTH_SERVICES[HmacSha2.SHA256_SERVICE_ID]
    master = auth.hash_passphrase(phrase)
    localized = auth.localize_key(master, engine_id)
    priv = SnmpUSMSecurityModel.PRIV_SERVICES[Aes.SERVICE_ID]
    priv_key = priv.localize_key(HmacSha2.SHA256_SERVICE_ID,
                                 priv.hash_passphrase(HmacSha2.SHA256_SERVICE_ID, phrase),
                                 engine_id)
    for key in (master, localized, priv_key):
        assert bytes(key) in learning.secrets and bytes(key)[:16] in learning.secrets
        text = learning.clean(f"key 0x{bytes(key).hex()} and {bytes(key)[:16].hex().upper()}")
        assert text == f"key 0x{WITHHELD} and {WITHHELD}"


def test_unknown_categories_are_refused():
    with pytest.raises(ValueError, match="unknown categories bogus"):
        start("msgproc,bogus", [])
