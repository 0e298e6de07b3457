"""The collector's one SNMP engine (receiver and pollers share it: engines are slow to
create and large), and the count of what it drops and why."""

from __future__ import annotations

import logging
from collections import Counter

from pyasn1.codec.ber import decoder
from pyasn1.error import PyAsn1Error
from pysnmp.entity import config
from pysnmp.entity.engine import SnmpEngine
from pysnmp.proto import errind
from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

from unhindered.snmp.settings import SnmpUser

log = logging.getLogger(__name__)

# Why an inbound message was dropped: a bounded set, the `reason` label of
# unhindered_snmp_dropped_total.
DROP_REASONS = ("bad_community", "bad_credentials", "unknown_engine", "not_in_time_window",
                "malformed", "unknown_probe")
_SECURITY_DROPS = {
    errind.UnknownCommunityName: "bad_community",
    errind.UnknownUserName: "bad_credentials",
    errind.UnknownSecurityName: "bad_credentials",
    errind.AuthenticationFailure: "bad_credentials",
    errind.WrongDigest: "bad_credentials",
    errind.DecryptionError: "bad_credentials",
    errind.UnsupportedSecurityLevel: "bad_credentials",
    errind.UnknownEngineID: "unknown_engine",
    errind.NotInTimeWindow: "not_in_time_window",
}
NO_AUTH_NO_PRIV = 1
USM = 3


class Drops(Counter):
    """reason -> messages dropped. The security models' refusals are counted as they
    happen (observed at the message processing models' failure points); parse errors are
    read from the engine's own SNMPv2-MIB counters."""

    def __init__(self, engine: SnmpEngine) -> None:
        super().__init__()
        self.engine = engine
        engine.observer.register_observer(
            self._refused, "rfc2576.prepareDataElements:sm-failure",
            "rfc3412.prepareDataElements:sm-failure")
        dispatcher = engine.message_dispatcher
        dispatcher.receive_message = self._guarded(dispatcher.receive_message)

    def _guarded(self, receive):
        # Some malformed messages make pysnmp's decoder raise TypeError (pysnmp 7.1,
        # pyasn1 0.6) rather than a parse error: asyncio would log a traceback per packet
        # and nothing would count it.
        def receive_message(engine, domain, address, whole):
            try:
                return receive(engine, domain, address, whole)
            except Exception as exc:
                self["malformed"] += 1
                log.debug("dropped a message from %s: %r", address, exc)
                return b""
        return receive_message

    def _refused(self, _engine, _point, variables: dict, _ctx) -> None:
        info = variables["statusInformation"]
        reason = _SECURITY_DROPS.get(type(info.get("errorIndication")))
        # An unauthenticated message to an unknown engine is a v3 sender discovering our
        # engine id (RFC 3414 section 4): the normal start of an inform, not a drop.
        discovery = (reason == "unknown_engine"
                     and variables.get("securityLevel") == NO_AUTH_NO_PRIV)
        if reason == "bad_credentials" and self._foreign_engine(variables):
            # A v3 trap is authoritative at its sender: pysnmp then looks the user up
            # under the sender's engine id, and finds none when that engine is unknown.
            reason = "unknown_engine"
        if reason is not None and not discovery:
            self[reason] += 1

    def _foreign_engine(self, variables: dict) -> bool:
        if variables.get("securityModel") != USM:
            return False
        try:
            params, _rest = decoder.decode(bytes(variables["securityParameters"]),
                                           asn1Spec=UsmSecurityParameters())
        except (PyAsn1Error, KeyError, TypeError):
            return False
        (own,) = self.engine.get_mib_builder().import_symbols(
            "__SNMP-FRAMEWORK-MIB", "snmpEngineID")
        return bytes(params[0]) != bytes(own.syntax)

    def totals(self) -> dict[str, int]:
        builder = self.engine.get_mib_builder()
        parse_errors, bad_versions = builder.import_symbols(
            "__SNMPv2-MIB", "snmpInASNParseErrs", "snmpInBadVersions")
        totals = {reason: self[reason] for reason in DROP_REASONS}
        totals["malformed"] += int(parse_errors.syntax) + int(bad_versions.syntax)
        return totals


def add_user(engine: SnmpEngine, user: SnmpUser) -> None:
    """An authPriv (HMAC-SHA-256, AES-128) user of our own engine (informs to us)."""
    auth, priv = user.keys()
    config.add_v3_user(engine, user.name, config.USM_AUTH_HMAC192_SHA256, auth,
                       config.USM_PRIV_CFB128_AES, priv)
