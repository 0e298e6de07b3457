"""The status page (collector/web/status/) of a collector fed over HTTP with 250 missions:
the HTML's structure, languages, charts and outages, then the pages rendered by headless
Chromium against the loopback server (screenshots and the DOM after scripts ran).

UNHINDERED_SAVE_SCREENSHOTS=1 also writes the screenshots to docs/screenshots/.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import shutil
import statistics
import struct
import threading
import time
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from collector.config import CollectorConfig
from collector.store.database import Store
from collector.store.rollups import Rollups
from collector.web.app import create_app
from collector.web.context import COLLECTOR
from tests.support import require_program
from tests.support.storage import registered_since
from unhindered.i18n import DEFAULT_LANGUAGE, LANGUAGES

# One worker runs the module's shared collector (pytest-xdist).
pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.xdist_group("status_page")]

MISSIONS = 250
DOWN, SILENT, HISTORY = "FRA", "BRA", "KEN"  # names come from the inventory, when it has them
DEGRADED = ("M100", "M200")
CODES = [DOWN, SILENT, HISTORY] + [f"M{i:03d}" for i in range(1, MISSIONS - 2)]
INTERVAL_S = 120  # silence turns a check unknown after 3 intervals: longer than this module
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PNG = b"\x89PNG\r\n\x1a\n"


# --- feeding the collector ---

def icmp_round(mission: str, t: float, rtts: list[float], sent: int = 5,
               check: str = "internet-icmp", interval_s: float = INTERVAL_S) -> dict:
    received = len(rtts)
    figures: dict = {"sent": sent, "received": received,
                     "loss_ratio": (sent - received) / sent, "samples_s": rtts}
    if rtts:
        s = sorted(rtts)
        figures.update(rtt_min_s=s[0], rtt_median_s=statistics.median(s),
                       rtt_mean_s=statistics.fmean(s), rtt_max_s=s[-1])
    return {"probe_id": f"{mission.lower()}-1", "mission": mission, "check_id": check,
            "kind": "icmp", "group": "internet", "target": "198.19.0.1",
            "started_at": datetime.fromtimestamp(t, UTC).isoformat(),
            "duration_s": 2.0, "ok": received > 0, "reason": None if received else "timeout",
            "figures": figures, "interval_s": interval_s}


def tcp_round(mission: str, t: float, connect_s: float | None, interval_s: float) -> dict:
    return {"probe_id": f"{mission.lower()}-1", "mission": mission, "check_id": "documents-tcp",
            "kind": "tcp", "group": "documents", "target": "198.19.1.10",
            "started_at": datetime.fromtimestamp(t, UTC).isoformat(), "duration_s": 0.1,
            "ok": connect_s is not None, "reason": None if connect_s is not None else "refused",
            "figures": {} if connect_s is None else {"connect_s": connect_s},
            "interval_s": interval_s}


def rtts(rng: random.Random, base: float, sent: int = 5, loss: float = 0.0) -> list[float]:
    received = sum(1 for _ in range(sent) if rng.random() >= loss)
    return [round(base * (1 + abs(rng.gauss(0, 0.08))), 6) for _ in range(received)]


def plain_rounds(code: str, now: float, rng: random.Random) -> list[dict]:
    """Six rounds over the last ten minutes; the special missions end differently."""
    base = 0.02 + rng.random() * 0.2
    times = [now - 600 + 110 * i for i in range(6)]
    if code == SILENT:  # nothing for an hour: the collector calls it unknown
        return [icmp_round(code, t - 3600, rtts(rng, base)) for t in times]
    if code == DOWN:  # three good rounds, then every echo request lost
        return ([icmp_round(code, t, rtts(rng, base)) for t in times[:3]]
                + [icmp_round(code, t, []) for t in times[3:]])
    if code in DEGRADED:  # 40 % loss, over the default 5 % threshold
        return [icmp_round(code, t, rtts(rng, base)[:3]) for t in times]
    return [icmp_round(code, t, rtts(rng, base)) for t in times]


def history_rounds(now: float, rng: random.Random) -> list[dict]:
    """A week of one mission: every 5 minutes, then every minute over the last day, with a
    daily RTT cycle, an RTT spike, a lossy (degraded) afternoon and a 25-minute cut."""
    out = []
    t = now - 7 * 86_400
    while t < now - 30:
        recent = t > now - 86_400
        base = 0.038 + 0.006 * math.sin(2 * math.pi * t / 86_400)
        loss = 0.002
        if now - 5 * 3600 < t < now - 5 * 3600 + 2400:
            base += 0.06
        if now - 3.5 * 86_400 < t < now - 3.5 * 86_400 + 3 * 3600:
            loss, base = 0.3, base + 0.03
        if now - 20 * 3600 < t < now - 20 * 3600 + 1500:
            loss = 1.0
        out.append(icmp_round(HISTORY, t, rtts(rng, base, sent=10, loss=loss), sent=10,
                              interval_s=INTERVAL_S if recent else 300))
        out.append(tcp_round(HISTORY, t, 0.05 + rng.random() * 0.01,
                             INTERVAL_S if recent else 300))
        t += 60 if recent else 300
    return out


def batches(rounds: list[dict], size: int = 500) -> list[dict]:
    rounds = sorted(rounds, key=lambda m: m["started_at"])
    for seq, m in enumerate(rounds, 1):
        m["seq"] = seq
    return [{"protocol": 1, "probe_id": rounds[0]["probe_id"], "mission": rounds[0]["mission"],
             "outbox_id": "a" * 32, "measurements": rounds[i:i + size]}
            for i in range(0, len(rounds), size)]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def collector(tmp_path_factory):
    """A collector on 127.0.0.1 with 250 missions, one probe each, fed over HTTP."""
    store = Store(f"sqlite:///{tmp_path_factory.mktemp('status') / 'collector.sqlite'}")
    store.migrate()
    tokens = {code: store.add_probe(f"{code.lower()}-1", code) for code in CODES}
    registered_since(store, time.time() - 8 * 86_400)  # before a week of history
    app = create_app(CollectorConfig(), store)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        now = time.time()
        rng = random.Random(7)
        for code in CODES:
            rounds = history_rounds(now, rng) if code == HISTORY else plain_rounds(code, now, rng)
            for body in batches(rounds):
                response = await client.post(
                    "/api/v1/results", data=json.dumps(body),
                    headers={"Authorization": f"Bearer {tokens[code]}",
                             "Content-Type": "application/json"})
                assert response.status == 200, await response.text()
        collector = app[COLLECTOR]
        # What the collector's background jobs do every few seconds, done now, as by a
        # collector listening for an hour: one that has just started waits the silence
        # allowance before calling a mission silent (docs/states.md).
        collector.timelines.listening_since = now - 3600
        await collector.in_db(collector.timelines.tick, time.time())
        await collector.in_db(Rollups(store).run, time.time())
        yield client


async def page(client, path: str, **headers) -> tuple[int, str]:
    response = await client.get(path, headers=headers)
    return response.status, await response.text()


# --- reading the HTML ---

class _Tree(HTMLParser):
    """Just enough of a DOM: elements with attributes, children and text."""

    VOID = {"meta", "link", "input", "br", "img", "hr", "use", "path", "rect", "line",
            "circle"}

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = {"tag": "#root", "attrs": {}, "children": [], "text": []}
        self.stack = [self.root]
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = {"tag": tag, "attrs": dict(attrs), "children": [], "text": []}
        self.stack[-1]["children"].append(node)
        if tag not in self.VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag, attrs):
        self.stack[-1]["children"].append(
            {"tag": tag, "attrs": dict(attrs), "children": [], "text": []})

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i]["tag"] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1]["text"].append(data)
        self.stack[-1]["children"].append(data)


def parse_html(html: str) -> dict:
    return _Tree(html).root


def walk(node):
    for child in node["children"]:
        if isinstance(child, dict):
            yield child
            yield from walk(child)


def find(node, tag=None, cls=None, **attrs):
    for n in walk(node):
        if tag and n["tag"] != tag:
            continue
        if cls and cls not in n["attrs"].get("class", "").split():
            continue
        if all(n["attrs"].get(k.rstrip("_").replace("_", "-")) == v for k, v in attrs.items()):
            yield n


def one(node, tag=None, cls=None, **attrs):
    found = list(find(node, tag, cls, **attrs))
    assert len(found) == 1, f"expected one <{tag} class={cls} {attrs}>, found {len(found)}"
    return found[0]


def text(node) -> str:
    parts = []
    for child in node["children"]:
        parts.append(child if isinstance(child, str) else text(child))
    return " ".join(" ".join(parts).split())


def mission_table(dom) -> list[dict]:
    """The overview's rows: code, shown name, state attribute, state label, hidden."""
    tbody = one(one(dom, "table", id="missions"), "tbody")
    rows = []
    for tr in find(tbody, "tr"):
        cell = one(tr, "th")
        names = list(find(cell, "span", "name"))
        rows.append({"code": text(one(cell, "span", "code")),
                     "name": text(names[0]) if names else None,
                     "state": tr["attrs"]["data-state"],
                     "label": text(one(tr, "span", "label")),
                     "hidden": "hidden" in tr["attrs"]})
    return rows


def counts(dom) -> dict[str, int]:
    return {a["attrs"]["data-count"]: int(text(one(a, "strong")).replace(",", ""))
            for a in walk(dom) if "data-count" in a["attrs"]}


def assert_self_contained(dom) -> None:
    """Nothing is loaded from elsewhere: no CDN, fonts or scripts from outside."""
    for n in walk(dom):
        for name in ("src", "href", "action"):
            value = n["attrs"].get(name) or ""
            assert not value.startswith(("http:", "https:", "//")), (n["tag"], value)
        if n["tag"] == "script":
            assert "src" not in n["attrs"]


# --- the overview ---

async def test_overview_lists_every_mission_worst_first(collector):
    status, html = await page(collector, "/status")
    assert status == 200
    dom = parse_html(html)
    assert_self_contained(dom)
    rows = mission_table(dom)
    assert len(rows) == MISSIONS
    assert not any(r["hidden"] for r in rows)
    by_code = {r["code"]: r for r in rows}
    assert (by_code[DOWN]["state"], by_code[DOWN]["label"]) == ("down", "down")
    assert (by_code[SILENT]["state"], by_code[SILENT]["label"]) == ("unknown", "unknown")
    assert {by_code[c]["label"] for c in DEGRADED} == {"degraded"}
    assert counts(dom) == {"down": 1, "unknown": 1, "degraded": 2, "up": MISSIONS - 4}
    # Worst first: down, unknown, degraded, then up.
    assert [r["code"] for r in rows[:4]] == [DOWN, SILENT, *DEGRADED]
    assert one(one(dom, "table", id="missions"), "caption")
    headers = list(find(one(dom, "thead"), "th"))
    assert headers and all(th["attrs"].get("scope") == "col" for th in headers)
    assert one(dom, "th", aria_sort="ascending")  # the state column, worst first
    # The page refreshes itself, and can be told not to.
    assert one(dom, "meta", http_equiv="refresh")["attrs"]["content"] == "30"
    assert not list(find(parse_html((await page(collector, "/status?refresh=0"))[1]), "meta",
                         http_equiv="refresh"))


async def test_overview_row_shows_since_and_figures(collector):
    dom = parse_html((await page(collector, "/status"))[1])
    tbody = one(one(dom, "table", id="missions"), "tbody")
    row = next(tr for tr in find(tbody, "tr") if text(one(tr, "span", "code")) == DOWN)
    cells = list(find(row, "td"))
    assert "ago" in text(cells[1])  # relative
    assert one(cells[1], "time")["attrs"]["datetime"].endswith("Z")  # and absolute, UTC
    assert text(cells[2]) == "0 of 1"
    assert text(cells[4]) == "100%"  # every echo request of the newest round lost


async def test_filter_and_sort_work_without_javascript(collector):
    dom = parse_html((await page(collector, "/status?state=down"))[1])
    visible = [r["code"] for r in mission_table(dom) if not r["hidden"]]
    assert visible == [DOWN]
    assert text(one(dom, "strong", id="shown-count")) == "1"
    assert counts(dom)["up"] == MISSIONS - 4  # the counts are of every mission

    rows = mission_table(parse_html((await page(collector, "/status?q=m10"))[1]))
    assert {r["code"] for r in rows if not r["hidden"]} == {f"M{i}" for i in range(100, 110)}

    rows = mission_table(parse_html((await page(collector, "/status?sort=name"))[1]))
    labels = [(r["name"] or r["code"]).casefold() for r in rows]
    assert labels == sorted(labels)
    rows = mission_table(parse_html((await page(collector, "/status?sort=name&order=desc"))[1]))
    assert [(r["name"] or r["code"]).casefold() for r in rows] == sorted(labels, reverse=True)

    rows = mission_table(parse_html((await page(collector, "/status?sort=since"))[1]))
    assert rows[0]["code"] == DOWN  # the newest change: the cut ten minutes ago


async def test_languages(collector):
    dom = parse_html((await page(collector, "/status"))[1])
    html_tag = one(dom, "html")
    assert (html_tag["attrs"]["lang"], html_tag["attrs"]["dir"]) == ("en", "ltr")

    dom = parse_html((await page(collector, "/status?lang=fr"))[1])
    assert one(dom, "html")["attrs"]["lang"] == "fr"
    by_code = {r["code"]: r for r in mission_table(dom)}
    assert by_code[DOWN]["label"] == "interrompu"
    assert by_code[SILENT]["label"] == "inconnu"
    assert text(one(dom, "h1")) == "État de l\u2019accès des missions"
    # An explicit choice is kept in the links.
    assert all("lang=fr" in a["attrs"]["href"] for a in find(one(dom, "tbody"), "a"))

    for header, lang in (("fr-CH, fr;q=0.9, en;q=0.8", "fr"), ("de, es;q=0.5", "es"),
                         ("de", "en"), ("zh-Hans-CN", "zh"), ("en;q=0.5, ru", "ru")):
        dom = parse_html((await page(collector, "/status", **{"Accept-Language": header}))[1])
        assert one(dom, "html")["attrs"]["lang"] == lang, header

    for path, headers in (("/status?lang=ar", {}), ("/status", {"Accept-Language": "ar"}),
                          (f"/status/{DOWN}?lang=ar", {})):
        response = await collector.get(path, headers=headers)
        assert response.headers["Content-Language"] == "ar"
        html_tag = one(parse_html(await response.text()), "html")
        assert (html_tag["attrs"]["lang"], html_tag["attrs"]["dir"]) == ("ar", "rtl"), path

    # The language switcher offers the six official languages, each named in itself.
    nav = one(parse_html((await page(collector, "/status"))[1]), "nav", cls="languages")
    assert [a["attrs"]["lang"] for a in find(nav, "a")] == ["ar", "zh", "en", "fr", "ru", "es"]
    assert "Français" in text(nav) and "العربية" in text(nav)


# --- a mission ---

async def test_mission_page_with_charts_and_outages(collector):
    status, html = await page(collector, f"/status/{HISTORY}")
    assert status == 200
    dom = parse_html(html)
    assert_self_contained(dom)
    checks = {text(one(tr, "span", "code")): text(one(tr, "span", "label"))
              for tr in find(one(one(dom, "table", "checks"), "tbody"), "tr")}
    assert checks == {"internet-icmp": "up", "documents-tcp": "up"}

    charts = list(find(dom, "svg", "rtt"))
    assert len(charts) == 2  # the ICMP check over 24 hours and over 7 days
    for chart in charts:
        assert chart["attrs"]["role"] == "img"
        assert len(one(chart, "path", "band")["attrs"]["d"]) > 1000  # the min-max band
        medians = {cls for n in find(chart, "path", "median")
                   for cls in n["attrs"]["class"].split() if cls.startswith("l")}
        assert "l0" in medians  # mostly no loss
        assert "ms" in text(one(chart, "desc"))
    day, week = charts
    assert one(day, "path", "lost")  # the 25-minute cut: no reply at all
    assert len(list(find(week, "path", "median"))) >= 2  # lossy hours in another colour
    legend = text(one(dom, "ul", "legend"))
    assert "green: no loss" in legend and "red: loss of 20% or more" in legend

    outages = [[text(td) for td in find(tr, "td")]
               for tr in find(one(one(dom, "table", "outages"), "tbody"), "tr")]
    states = [o[0] for o in outages]
    assert "down" in states and "degraded" in states
    cut = outages[states.index("down")]
    # 25 minutes without replies; rounds every minute, three failed ones to go down and
    # two good ones to come back.
    assert cut[3] in ("22m", "23m", "24m", "25m"), cut
    assert "internet: down" in cut[4] and "rounds failed (timeout)" in cut[4]


async def test_mission_that_is_down(collector):
    dom = parse_html((await page(collector, f"/status/{DOWN}"))[1])
    assert text(one(one(dom, "dd", "big"), "span", "label")) == "down"
    outages = [[text(td) for td in find(tr, "td")]
               for tr in find(one(one(dom, "table", "outages"), "tbody"), "tr")]
    assert outages[0][0] == "down" and outages[0][2] == "ongoing"

    dom = parse_html((await page(collector, f"/status/{DOWN}?lang=fr"))[1])
    assert text(one(one(dom, "dd", "big"), "span", "label")) == "interrompu"
    assert "Interruptions et périodes dégradées" in text(dom)
    cause = text(one(one(dom, "table", "outages"), "td", "cause"))
    assert "internet : interrompu" in cause.replace("\u202f", " ")
    # The collector's own English cause, marked as such for screen readers.
    english = one(one(dom, "table", "outages"), "span", lang="en")
    assert text(english) == "3 of the last 5 rounds failed (timeout)"


async def test_unknown_mission_is_a_404_page(collector):
    for lang, words in (("en", "Mission not found"), ("fr", "Mission introuvable")):
        status, html = await page(collector, f"/status/NOPE?lang={lang}")
        assert status == 404
        assert text(one(parse_html(html), "h1")) == words


async def test_static_css_and_headers(collector):
    response = await collector.get("/status")
    assert "text/html" in response.headers["Content-Type"]
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    css = one(parse_html(await response.text()), "link", rel="stylesheet")["attrs"]["href"]
    response = await collector.get(css)
    assert response.status == 200 and "text/css" in response.headers["Content-Type"]
    assert (await collector.get("/status/", allow_redirects=False)).status == 302
    # The JSON index of / is left as it was.
    assert (await collector.get("/")).content_type == "application/json"


async def test_the_database_is_read_on_its_own_thread(collector, monkeypatch):
    app = collector.server.app
    threads = []
    real = {name: getattr(app[COLLECTOR].store, name) for name in ("intervals", "list_probes")}
    for name, method in real.items():
        def spy(*args, _method=method, **kwargs):
            threads.append(threading.current_thread().name)
            return _method(*args, **kwargs)
        monkeypatch.setattr(app[COLLECTOR].store, name, spy)
    for path in ("/status", f"/status/{HISTORY}", f"/status/{DOWN}"):
        assert (await collector.get(path)).status == 200
    assert threads and all(name.startswith("db") for name in threads), threads


# --- in a real browser ---

def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    try:
        return require_program("chromium", "chromium")
    except pytest.fail.Exception as exc:
        pytest.skip(f"chromium is missing and could not be installed ({exc}): the DOM "
                    "tests above still ran")


async def browse(url: str, tmp_path: Path, *args: str,
                 window: str = "1400,1000") -> tuple[bytes, str]:
    """Headless Chromium on one loopback URL; it resolves no host name and makes no
    background connections (updates, sync, metrics)."""
    assert url.startswith("http://127.0.0.1:"), url
    process = await asyncio.create_subprocess_exec(
        chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--disable-extensions", "--disable-default-apps",
        "--no-default-browser-check", "--disable-dev-shm-usage", "--hide-scrollbars",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={window}", *args, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    except TimeoutError:
        process.kill()
        await process.wait()
        pytest.fail(f"chromium did not finish with {url} in 120 s")
    log = "\n".join(line for line in err.decode(errors="replace").splitlines()
                     if "dbus" not in line)  # no system bus in a container: harmless
    assert process.returncode == 0, log[-2000:]
    return out, log


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


async def screenshot(collector, path: str, tmp_path: Path, name: str, window: str) -> Path:
    target = tmp_path / name
    _out, log = await browse(str(collector.make_url(path)), tmp_path,
                             f"--screenshot={target}", window=window)
    assert target.exists(), f"chromium wrote no screenshot: {log[-2000:]}"
    width, height = (int(v) for v in window.split(","))
    assert png_size(target) == (width, height)
    assert target.stat().st_size > 30_000, "an all but empty screenshot"
    if os.environ.get("UNHINDERED_SAVE_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(target, SCREENSHOTS / name)
    return target


@pytest.mark.slow
async def test_chromium_renders_the_overview(collector, tmp_path):
    await screenshot(collector, "/status?refresh=0", tmp_path, "overview.png", "1400,1000")
    out, _log = await browse(str(collector.make_url("/status")), tmp_path, "--dump-dom")
    dom = parse_html(out.decode())
    by_code = {r["code"]: r for r in mission_table(dom)}
    assert len(by_code) == MISSIONS
    assert (by_code[DOWN]["state"], by_code[DOWN]["label"]) == ("down", "down")


@pytest.mark.slow
async def test_chromium_renders_a_mission(collector, tmp_path):
    await screenshot(collector, f"/status/{HISTORY}?refresh=0", tmp_path, "mission.png",
                     "1400,1700")
    out, _log = await browse(str(collector.make_url(f"/status/{DOWN}")), tmp_path,
                             "--dump-dom")
    dom = parse_html(out.decode())
    assert text(one(one(dom, "dd", "big"), "span", "label")) == "down"


# --- the catalogs ---

async def test_catalogs_are_current_and_french_is_complete():
    """messages.pot holds exactly the templates' messages, every catalog was updated from
    it (pybabel update), and French translates all of them with the same placeholders."""
    check_catalogs()


def check_catalogs() -> None:
    root = Path(__file__).resolve().parents[2]
    with (root / "babel.cfg").open() as f:
        method_map, options_map = parse_mapping_cfg(f)
    used = {(ctx, msg if isinstance(msg, str) else msg[0])
            for _file, _line, msg, _comments, ctx in
            extract_from_dir(str(root), method_map, options_map)}

    def ids(catalog) -> set:
        return {(m.context, m.id if isinstance(m.id, str) else m.id[0])
                for m in catalog if m.id}

    locale = root / "unhindered" / "locale"
    with (locale / "messages.pot").open("rb") as f:
        assert ids(read_po(f)) == used, "run pybabel extract (docs/status-page.md)"
    for lang in LANGUAGES:
        if lang == DEFAULT_LANGUAGE:
            continue
        with (locale / lang / "LC_MESSAGES" / "messages.po").open("rb") as f:
            catalog = read_po(f, locale=lang)
        assert ids(catalog) == used, f"run pybabel update for {lang}"
        assert not list(catalog.check()), f"{lang}: placeholders differ from the source"
    with (locale / "fr" / "LC_MESSAGES" / "messages.po").open("rb") as f:
        french = read_po(f, locale="fr")
    untranslated = [m.id for m in french if m.id and (not m.string or m.fuzzy or (
        isinstance(m.string, tuple) and not all(m.string)))]
    assert not untranslated
