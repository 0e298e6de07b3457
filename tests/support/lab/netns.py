"""Network-namespace test lab: a router namespace (`net`), a `centre` and one namespace per
mission, with nft-driven cuts and packet loss and userspace ICMP/HTTP target responders.
A mission may sit behind a chain of router namespaces (`add_mission(code, hops=N)`) that
forward and decrement the TTL, each answering with ICMP errors from its own address, so a
path recording sees N hops before the target network; `cut_after(mission, hop)` cuts the
uplink on the far side of one of those routers.

Safety: nothing here touches the root namespace. Veth pairs are created directly inside the
lab namespaces, commands run only via `ip netns exec <lab namespace>`, and `fetch` switches a
thread into a lab namespace (verifying the switch) before it opens any socket.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ipaddress
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAB_DIR = Path(__file__).resolve().parent
ICMP_RESPONDER = LAB_DIR / "icmp_responder.py"
TCP_RESPONDER = LAB_DIR / "tcp_responder.py"
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
TERM_GRACE_S = 2.0
READY_TIMEOUT_S = 10.0
MAX_INDEX = 254  # link k and target N are the last octet / third octet of IPv4 addresses
CUT_MODES = ("drop", "reject")
MISSION_CODE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
# Hop routers: segment s of mission k is 198.19.k.(16 s)/28 and fd00:19:k:s::/64 (target
# addresses are 198.19.0.n and fd00:19::n, so k >= 1 never collides with them).
MAX_HOPS = 15
ROUTER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    # Time-exceeded must come from every hop, not a rate-limited trickle: a path recording
    # sends all its TTLs at once.
    "net.ipv4.icmp_ratelimit": "0",
    "net.ipv6.icmp.ratelimit": "0",
    # The error's source is the address the probe came in on: the hop's address as seen
    # from the mission, whatever the route back.
    "net.ipv4.icmp_errors_use_inbound_ifaddr": "1",
}


class LabError(RuntimeError):
    pass


@dataclass(frozen=True)
class Namespace:
    name: str
    ipv4: str
    ipv6: str


@dataclass(frozen=True)
class Router:
    """One hop between a mission and `net`; ipv4/ipv6 are its mission-side addresses, the
    source of its ICMP errors."""

    name: str  # namespace
    hop: int  # 1 is the mission's gateway
    ipv4: str
    ipv6: str
    uplink: str  # interface towards the next hop (nft cuts match on it)


@dataclass(frozen=True)
class Mission:
    name: str  # namespace
    code: str
    ipv4: str
    ipv6: str
    link: str  # net-side interface name (nft rules match on it)
    index: int
    iface: str  # mission-side interface name
    routers: tuple[Router, ...] = ()  # hop 1 first; empty: `net` is the gateway


@dataclass(frozen=True)
class Target:
    ipv4: str
    ipv6: str
    delay_s: float
    index: int
    duplicate: bool = False


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "network lab needs root (ip netns, nft, raw sockets)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"network lab needs `{tool}` on PATH"
    return None


def list_netns() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _setns(fd: int) -> None:
    setns = getattr(os, "setns", None)  # Python >= 3.12
    if setns is not None:
        setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _must(argv: Sequence[str], input: str | None = None) -> str:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def _ip(ns: str, args: str) -> None:
    """`ip -n ns ARGS`; every lab name and address is free of whitespace."""
    _must(["ip", "-n", ns, *args.split()])


def _signal(proc: subprocess.Popen[Any], sig: int) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)  # popen starts a session, so the group holds its children too
    except ProcessLookupError:
        proc.send_signal(sig)  # caller passed start_new_session=False


def _terminate(procs: Iterable[subprocess.Popen[Any]], errors: list[str]) -> None:
    procs = list(procs)
    for proc in procs:
        _signal(proc, signal.SIGTERM)
    deadline = time.monotonic() + TERM_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                errors.append(f"pid {proc.pid} survived SIGKILL: {proc.args!r}")
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


class Lab:
    """One isolated lab topology; see the module docstring. Not thread-safe."""

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise LabError(reason)
        self.run_id = secrets.token_hex(3)
        self.net = f"uh-{self.run_id}-net"
        self.target_dev = "lo"
        self._closed = False
        self._namespaces: list[str] = []
        self._procs: list[subprocess.Popen[Any]] = []
        self._responders: list[subprocess.Popen[Any]] = []
        self._missions: list[Mission] = []
        self._filters: dict[int, tuple[str | None, int]] = {}  # mission index -> (cut, loss %)
        self._blocked: dict[int, set[Target]] = {}  # mission index -> targets it cannot reach
        self._targets: list[Target] = []
        self._nft_tables: set[str] = set()
        self._router_cuts: set[str] = set()  # router namespaces whose uplink is cut
        self._tcp_ports: tuple[int, ...] | None = None  # not None once responders run
        self._workdir = Path(tempfile.mkdtemp(prefix=f"uh-lab-{self.run_id}-"))
        _LIVE_LABS.add(self)
        try:
            self._build()
        except BaseException as exc:
            try:
                self.close()
            except LabError as cleanup:
                exc.add_note(str(cleanup))
            raise

    # -- topology -----------------------------------------------------------------------------

    def _build(self) -> None:
        self._add_namespace(self.net)
        self._sysctl(
            self.net,
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv6.conf.all.forwarding": "1",
                "net.ipv4.icmp_echo_ignore_all": "1",
                "net.ipv6.icmp.echo_ignore_all": "1",
                # Rejects must produce one ICMP error per packet, not a rate-limited trickle.
                "net.ipv4.icmp_ratelimit": "0",
                "net.ipv6.icmp.ratelimit": "0",
            },
        )
        # Some kernels ship without the dummy driver; local addresses on lo behave the same.
        dummy = f"u{self.run_id}t"
        add = subprocess.run(
            ["ip", "-n", self.net, "link", "add", dummy, "type", "dummy"],
            capture_output=True,
            text=True,
        )
        if add.returncode == 0:
            _ip(self.net, f"link set {dummy} up")
            self.target_dev = dummy
        centre = f"uh-{self.run_id}-centre"
        self._add_namespace(centre)
        ipv4, ipv6 = self._connect(centre, 0, f"u{self.run_id}c", f"v{self.run_id}c")
        self.centre = Namespace(name=centre, ipv4=ipv4, ipv6=ipv6)

    def _add_namespace(self, name: str) -> None:
        _must(["ip", "netns", "add", name])
        self._namespaces.append(name)
        # Set before any veth exists so that link-local addresses skip DAD as well.
        self._sysctl(
            name, {"net.ipv6.conf.all.accept_dad": "0", "net.ipv6.conf.default.accept_dad": "0"}
        )
        _ip(name, "link set lo up")

    def _sysctl(self, ns: str, values: Mapping[str, str]) -> None:
        settings = [f"{key}={value}" for key, value in values.items()]
        _must(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", *settings])

    def _connect(self, ns: str, k: int, net_if: str, far_if: str) -> tuple[str, str]:
        """Link `ns` to `net` as link k; return the far side's (IPv4, IPv6)."""
        return self._veth(self.net, ns, net_if, far_if, (f"198.18.{k}", 0, 24),
                          f"fd00:18:{k}::")

    def _veth(self, near: str, far: str, near_if: str, far_if: str,
              v4: tuple[str, int, int], v6_prefix: str) -> tuple[str, str]:
        """A link from `near` (host 1 of the subnets, the far side's gateway) to `far` (host
        2). v4 is (the subnet's first three octets, its last octet, its prefix length).
        Returns the far side's (IPv4, IPv6)."""
        # Both ends are created directly in their namespaces: the root namespace never sees them.
        _ip(near, f"link add {near_if} type veth peer name {far_if} netns {far}")
        v4_net, v4_base, length = v4
        for side, ifname, host in ((near, near_if, 1), (far, far_if, 2)):
            _ip(side, f"addr add {v4_net}.{v4_base + host}/{length} dev {ifname}")
            _ip(side, f"-6 addr add {v6_prefix}{host}/64 dev {ifname} nodad")
            _ip(side, f"link set {ifname} up")
        _ip(far, f"route add default via {v4_net}.{v4_base + 1}")
        _ip(far, f"-6 route add default via {v6_prefix}1")
        return f"{v4_net}.{v4_base + 2}", str(ipaddress.IPv6Address(f"{v6_prefix}2"))

    def add_mission(self, code: str, hops: int = 0) -> Mission:
        """A mission namespace, linked to `net` directly or through `hops` routers."""
        self._check_open()
        if not MISSION_CODE.match(code) or code in ("net", "centre"):
            raise ValueError(f"bad mission code {code!r}")
        if any(m.code == code for m in self._missions):
            raise ValueError(f"mission {code!r} already exists")
        if not 0 <= hops <= MAX_HOPS:
            raise ValueError(f"hops must be within 0..{MAX_HOPS}")
        k = len(self._missions) + 1
        if k > MAX_INDEX:
            raise LabError("too many missions")
        name = f"uh-{self.run_id}-{code}"
        self._add_namespace(name)
        link, iface = f"u{self.run_id}m{k}", f"v{self.run_id}m{k}"
        if hops:
            ipv4, ipv6, routers = self._chain(name, k, hops, link)
            iface = f"v{self.run_id}m{k}h1"
        else:
            ipv4, ipv6 = self._connect(name, k, link, iface)
            routers = ()
        mission = Mission(name=name, code=code, ipv4=ipv4, ipv6=ipv6, link=link, index=k,
                          iface=iface, routers=routers)
        self._missions.append(mission)
        self._filters[k] = (None, 0)
        self._apply_filter(mission)
        return mission

    def _chain(self, mission_ns: str, k: int, hops: int, link: str
               ) -> tuple[str, str, tuple[Router, ...]]:
        """net <- r_hops <- ... <- r_1 <- mission: the outermost router takes link k (so
        net's cuts and filters of the mission still apply), segment s (1..hops) joins r_s
        (as the gateway) to the hop before it. Returns the mission's addresses and the
        routers, hop 1 first."""
        names = [f"uh-{self.run_id}-{k}r{hop}" for hop in range(1, hops + 1)]
        for ns in names:
            self._add_namespace(ns)
            self._sysctl(ns, ROUTER_SYSCTLS)
        # Outermost first: each router gets its default route from the link to its uplink.
        self._connect(names[-1], k, link, f"v{self.run_id}m{k}")
        uplinks = {names[-1]: f"v{self.run_id}m{k}"}
        routers: list[Router] = []
        for s in range(hops, 0, -1):
            gateway = names[s - 1]
            far = mission_ns if s == 1 else names[s - 2]
            up_if = f"v{self.run_id}m{k}h{s}"
            ipv4, ipv6 = self._veth(gateway, far, f"u{self.run_id}m{k}h{s}", up_if,
                                    (f"198.19.{k}", 16 * s, 28), f"fd00:19:{k}:{s}::")
            if far != mission_ns:
                uplinks[far] = up_if
            routers.append(Router(name=gateway, hop=s, ipv4=f"198.19.{k}.{16 * s + 1}",
                                  ipv6=f"fd00:19:{k}:{s}::1", uplink=uplinks[gateway]))
        # Routes back in: every router sends the mission's segments to the hop before it.
        _ip(self.net, f"route add 198.19.{k}.0/24 via 198.18.{k}.2")
        _ip(self.net, f"-6 route add fd00:19:{k}::/48 via fd00:18:{k}::2")
        for s in range(2, hops + 1):
            _ip(names[s - 1], f"route add 198.19.{k}.0/24 via 198.19.{k}.{16 * s + 2}")
            _ip(names[s - 1], f"-6 route add fd00:19:{k}::/48 via fd00:19:{k}:{s}::2")
        # The last link made (s == 1) is the mission's own.
        return ipv4, ipv6, tuple(sorted(routers, key=lambda r: r.hop))

    def cut_after(self, mission: Mission, hop: int) -> None:
        """Drop everything crossing the uplink of the mission's router `hop`: that router
        and those before it still answer (ICMP time-exceeded included), nothing beyond."""
        router = self._router(mission, hop)
        iif, oif = f'iifname "{router.uplink}"', f'oifname "{router.uplink}"'
        table = (
            "table inet uh_cut {\n"
            "  chain uh_pre {\n    type filter hook prerouting priority -300; "
            f"policy accept;\n    {iif} drop\n  }}\n"
            "  chain uh_post {\n    type filter hook postrouting priority 0; "
            f"policy accept;\n    {oif} drop\n  }}\n"
            "}\n"
        )
        script = "table inet uh_cut\ndelete table inet uh_cut\n" + table
        _must(["ip", "netns", "exec", router.name, "nft", "-f", "-"], input=script)
        self._router_cuts.add(router.name)

    def restore_after(self, mission: Mission, hop: int) -> None:
        """Undo cut_after(mission, hop)."""
        router = self._router(mission, hop)
        if router.name in self._router_cuts:
            _must(["ip", "netns", "exec", router.name, "nft", "delete", "table", "inet",
                   "uh_cut"])
            self._router_cuts.discard(router.name)

    def _router(self, mission: Mission, hop: int) -> Router:
        self._check_open()
        if mission not in self._missions:
            raise ValueError(f"{mission!r} is not a mission of this lab")
        if not 1 <= hop <= len(mission.routers):
            raise ValueError(f"mission {mission.code} has {len(mission.routers)} hops, "
                             f"not {hop}")
        return mission.routers[hop - 1]

    def add_target(self, delay_s: float = 0.0, duplicate: bool = False) -> Target:
        """Add a target address pair; `duplicate` makes the ICMP responder answer twice."""
        self._check_open()
        n = len(self._targets) + 1
        if n > MAX_INDEX:
            raise LabError("too many targets")
        target = Target(
            ipv4=f"198.19.0.{n}",
            ipv6=f"fd00:19::{n}",
            delay_s=float(delay_s),
            index=n,
            duplicate=duplicate,
        )
        _ip(self.net, f"addr add {target.ipv4}/32 dev {self.target_dev}")
        _ip(self.net, f"-6 addr add {target.ipv6}/128 dev {self.target_dev} nodad")
        self._targets.append(target)
        if self._tcp_ports is not None:
            self.start_responders(self._tcp_ports)
        return target

    @property
    def missions(self) -> list[Mission]:
        return list(self._missions)

    @property
    def targets(self) -> list[Target]:
        return list(self._targets)

    # -- responders ---------------------------------------------------------------------------

    def start_responders(self, tcp_ports: Iterable[int] = (80,)) -> None:
        """(Re)start the ICMP and TCP/HTTP responders in `net` for every target."""
        self._check_open()
        if not self._targets:
            raise LabError("add_target() before start_responders()")
        tcp_ports = tuple(tcp_ports)
        self._stop_responders()
        icmp_argv = [sys.executable, str(ICMP_RESPONDER)]
        tcp_argv = [sys.executable, str(TCP_RESPONDER)]
        for t in self._targets:
            icmp_argv += ["--target", f"{t.ipv4}={t.delay_s}", "--target", f"{t.ipv6}={t.delay_s}"]
            if t.duplicate:
                icmp_argv += ["--duplicate", t.ipv4, "--duplicate", t.ipv6]
            for port in tcp_ports:
                tcp_argv += [
                    "--listen",
                    f"{t.ipv4}:{port}={t.delay_s}",
                    "--listen",
                    f"[{t.ipv6}]:{port}={t.delay_s}",
                ]
        self._tcp_ports = tcp_ports
        self._responders.append(self._start_and_wait_ready("icmp_responder", icmp_argv))
        if tcp_ports:
            self._responders.append(self._start_and_wait_ready("tcp_responder", tcp_argv))

    def _start_and_wait_ready(self, label: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log_path = self._workdir / f"{label}.log"
        with open(log_path, "ab") as log:
            proc = self.popen(self.net, argv, stdout=subprocess.PIPE, stderr=log)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], READY_TIMEOUT_S)
        line = proc.stdout.readline() if ready else b""
        if line.strip() != b"ready":
            _terminate([proc], [])
            self._procs.remove(proc)
            raise LabError(f"{label} did not start: {log_path.read_text(errors='replace')}")
        return proc

    def _stop_responders(self) -> None:
        errors: list[str] = []
        _terminate(self._responders, errors)
        for proc in self._responders:
            self._procs.remove(proc)
        self._responders.clear()
        if errors:
            raise LabError("; ".join(errors))

    # -- impairments --------------------------------------------------------------------------

    def cut(self, mission: Mission, mode: str = "drop") -> None:
        """Disconnect `mission` from everything behind `net` (targets and centre).

        "drop": silent. "reject": `net` answers the sender with ICMP host-unreachable
        (ICMPv6 address-unreachable).
        """
        if mode not in CUT_MODES:
            raise ValueError(f"cut mode must be one of {CUT_MODES}, got {mode!r}")
        self._set_filter(mission, cut=mode)

    def restore(self, mission: Mission) -> None:
        self._set_filter(mission, cut=None)

    def block(self, mission: Mission, target: Target) -> None:
        """Drop the mission's traffic to `target` only: the target is down for this mission
        while its link, and so its reports to the centre, keep working."""
        self._blocked.setdefault(mission.index, set()).add(target)
        self._set_filter(mission)

    def unblock(self, mission: Mission, target: Target) -> None:
        self._blocked.get(mission.index, set()).discard(target)
        self._set_filter(mission)

    def set_loss(self, mission: Mission, percent: int) -> None:
        """Randomly drop `percent` % of packets coming from the mission; 0 removes the loss."""
        if not 0 <= percent <= 100:
            raise ValueError("percent must be within 0..100")
        self._set_filter(mission, loss=int(percent))

    _KEEP = object()

    def _set_filter(self, mission: Mission, cut: Any = _KEEP, loss: Any = _KEEP) -> None:
        self._check_open()
        if self._filters.get(mission.index) is None or self._missions[mission.index - 1] != mission:
            raise ValueError(f"{mission!r} is not a mission of this lab")
        old_cut, old_loss = self._filters[mission.index]
        self._filters[mission.index] = (
            old_cut if cut is Lab._KEEP else cut,
            old_loss if loss is Lab._KEEP else loss,
        )
        self._apply_filter(mission)

    def _nft_table(self, mission: Mission) -> str:
        """The mission's whole nft table for its current cut/loss state.

        `reject` is only valid in the input, forward and output hooks, so a reject cut uses
        those; a drop cut and loss act at prerouting/postrouting. Neighbour discovery stays
        allowed so that the net side can still resolve the mission and deliver its rejects
        (ARP is not seen by an inet table anyway).
        """
        cut, loss = self._filters[mission.index]
        iif, oif = f'iifname "{mission.link}"', f'oifname "{mission.link}"'
        reject = "reject with icmpx type host-unreachable"
        nd = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept"
        chains: dict[str, tuple[str, int, list[str]]] = {
            # Chain names must not be nft keywords (fwd, out, input... are).
            "uh_pre": ("prerouting", -300, [nd]),
            "uh_input": ("input", 0, [nd]),
            "uh_forward": ("forward", 0, [nd]),
            "uh_output": ("output", 0, [nd]),
            "uh_post": ("postrouting", 0, [nd]),
        }
        if cut == "drop":
            chains["uh_pre"][2].append(f"{iif} drop")
            chains["uh_post"][2].append(f"{oif} drop")
        elif cut == "reject":
            chains["uh_input"][2].append(f"{iif} {reject}")
            chains["uh_forward"][2].extend([f"{iif} {reject}", f"{oif} {reject}"])
            # Drop net's own traffic to the mission, except the rejects' ICMP errors.
            chains["uh_output"][2].extend(
                [
                    f"{oif} icmp type destination-unreachable accept",
                    f"{oif} icmpv6 type destination-unreachable accept",
                    f"{oif} drop",
                ]
            )
        for target in sorted(self._blocked.get(mission.index, ()), key=lambda t: t.index):
            chains["uh_pre"][2].extend([f"{iif} ip daddr {target.ipv4} drop",
                                        f"{iif} ip6 daddr {target.ipv6} drop"])
        if loss:
            chains["uh_pre"][2].append(f"{iif} numgen random mod 100 < {loss} drop")
        body = "".join(
            f"  chain {name} {{\n    type filter hook {hook} priority {prio}; policy accept;\n"
            + "".join(f"    {rule}\n" for rule in rules)
            + "  }\n"
            for name, (hook, prio, rules) in chains.items()
        )
        return f"table inet uh_m{mission.index} {{\n{body}}}\n"

    def _apply_filter(self, mission: Mission) -> None:
        table = f"inet uh_m{mission.index}"
        # Declare, delete and recreate in one transaction: atomic replacement of the rules.
        script = f"table {table}\ndelete table {table}\n" + self._nft_table(mission)
        _must(["ip", "netns", "exec", self.net, "nft", "-f", "-"], input=script)
        self._nft_tables.add(table)

    # -- processes and requests inside namespaces ---------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise LabError("lab is closed")

    def _check_ns(self, ns: str) -> None:
        self._check_open()
        if ns not in self._namespaces:
            raise ValueError(f"{ns!r} is not a namespace of this lab")

    def popen(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start `argv` inside namespace `ns`; it is killed at close()."""
        self._check_ns(ns)
        kw.setdefault("start_new_session", True)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self._procs.append(proc)
        return proc

    def run(self, ns: str, argv: Sequence[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        """Run `argv` inside `ns` to completion (default: text output captured, 60 s timeout)."""
        self._check_ns(ns)
        if "stdout" not in kw and "stderr" not in kw:
            kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("timeout", 60)
        return subprocess.run(["ip", "netns", "exec", ns, *argv], **kw)

    def fetch(
        self,
        ns: str,
        url: str,
        *,
        method: str = "GET",
        data: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> tuple[int, dict[str, str], bytes]:
        """HTTP request from inside `ns`, in-process: returns (status, headers, body), also for
        4xx/5xx. The host must be an IP literal (no DNS in the lab)."""
        self._check_ns(ns)
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"fetch needs an IP-literal URL, got {url!r}") from None
        result: dict[str, Any] = {}

        def worker() -> None:
            try:
                fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
                try:
                    _setns(fd)  # affects only this thread, which ends with the request
                    if os.stat("/proc/thread-self/ns/net").st_ino != os.fstat(fd).st_ino:
                        raise LabError(f"setns into {ns} did not take effect")
                finally:
                    os.close(fd)
                # An empty ProxyHandler: an http_proxy variable must not reroute lab requests.
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                request = urllib.request.Request(
                    url, data=data, method=method, headers=dict(headers or {})
                )
                try:
                    with opener.open(request, timeout=timeout) as resp:
                        result["value"] = (resp.status, dict(resp.headers.items()), resp.read())
                except urllib.error.HTTPError as err:
                    with err:
                        result["value"] = (err.code, dict(err.headers.items()), err.read())
            except BaseException as exc:
                result["error"] = exc

        thread = threading.Thread(target=worker, name=f"lab-fetch-{ns}", daemon=True)
        thread.start()
        thread.join(timeout + 5)
        if thread.is_alive():
            raise TimeoutError(f"fetch {url} from {ns} did not finish")
        if "error" in result:
            raise result["error"]
        return result["value"]

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Kill lab processes, delete nft tables and namespaces. Idempotent; keeps going on
        errors and raises one LabError listing them at the end."""
        if self._closed:
            return
        self._closed = True
        _LIVE_LABS.discard(self)
        errors: list[str] = []
        _terminate(self._procs, errors)
        self._procs.clear()
        self._responders.clear()
        existing = set(list_netns())
        if self.net in existing:
            for table in sorted(self._nft_tables):
                try:
                    family, name = table.split()
                    _must(["ip", "netns", "exec", self.net, "nft", "delete", "table", family, name])
                except (LabError, subprocess.SubprocessError) as exc:
                    errors.append(str(exc))
        for ns in reversed(self._namespaces):
            if ns not in existing:
                errors.append(f"namespace {ns} vanished before close")
                continue
            try:
                # Stragglers (children that left the process group, `ip netns exec` by hand).
                for pid in _must(["ip", "netns", "pids", ns]).split():
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(int(pid), signal.SIGKILL)
                _must(["ip", "netns", "del", ns])
            except (LabError, OSError, subprocess.SubprocessError) as exc:
                errors.append(f"{ns}: {exc}")
        try:
            leftover = sorted(set(self._namespaces) & set(list_netns()))
            if leftover:
                errors.append(f"namespaces still present after close: {leftover}")
        except (OSError, subprocess.SubprocessError) as exc:
            errors.append(f"ip netns list: {exc}")
        shutil.rmtree(self._workdir, ignore_errors=True)
        if errors:
            raise LabError("lab cleanup incomplete:\n" + "\n".join(errors))

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_LIVE_LABS: weakref.WeakSet[Lab] = weakref.WeakSet()


@atexit.register
def _close_forgotten_labs() -> None:
    for lab in list(_LIVE_LABS):
        try:
            lab.close()
        except LabError as exc:
            print(f"unhindered lab {lab.run_id}: {exc}", file=sys.stderr)
