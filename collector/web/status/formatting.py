"""The reader's language and how the status page writes numbers, dates and durations in it.

The language comes from ?lang= or Accept-Language (English by default); numbers, dates and
units follow CLDR, through Babel. Kept apart from the views and charts, which both format
with it, and free of anything of the collector: it depends on the request and Babel only.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from aiohttp import web
from babel import Locale
from babel.dates import format_timedelta
from babel.numbers import format_decimal, format_percent
from babel.units import format_unit

from unhindered.i18n import DEFAULT_LANGUAGE, LANGUAGES, parse_accept_language, primary

# --- languages ---

def choose_language(request: web.Request) -> tuple[str, bool]:
    """(language, chosen explicitly by ?lang=)."""
    asked = primary(request.query.get("lang", ""))
    if asked in LANGUAGES:
        return asked, True
    for tag in parse_accept_language(request.headers.get("Accept-Language", "")):
        if primary(tag) in LANGUAGES:
            return primary(tag), False
    return DEFAULT_LANGUAGE, False


def endonym(code: str) -> str:
    """A language's name in itself, as a menu item: "Français", "Русский", "العربية"."""
    name = Locale.parse(code).get_display_name() or code
    return name[:1].upper() + name[1:]


# --- formatting in the reader's language (numbers and dates by CLDR, through Babel) ---

class Formatter:
    def __init__(self, lang: str, now: float) -> None:
        self.lang, self.now = lang, now

    def number(self, value: float | int) -> str:
        return format_decimal(value, locale=self.lang)

    def ms(self, seconds: float | None) -> str:
        if seconds is None:
            return "—"
        ms = seconds * 1000
        return format_decimal(ms, format="#,##0.0" if ms < 100 else "#,##0", locale=self.lang)

    def pct(self, ratio: float | None) -> str:
        if ratio is None:
            return "—"
        # One decimal at most, with the locale's own pattern (spacing, sign position).
        return format_percent(round(ratio, 3), locale=self.lang, decimal_quantization=False)

    def utc(self, ts: float | None) -> str:
        if ts is None:
            return "—"
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")

    def iso(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def ago(self, ts: float | None) -> str:
        if ts is None:
            return "—"
        return format_timedelta(timedelta(seconds=ts - self.now), add_direction=True,
                                threshold=1.0, locale=self.lang)

    def duration(self, seconds: float) -> str:
        """Exact to the minute (to the second under a minute), two units at most."""
        seconds = max(0, round(seconds))
        if seconds < 60:
            return format_unit(seconds, "duration-second", length="narrow", locale=self.lang)
        parts = []
        for unit, size in (("day", 86_400), ("hour", 3600), ("minute", 60)):
            count, seconds = divmod(seconds, size)
            if count or parts:
                parts.append((unit, count))
        parts = [(u, c) for u, c in parts[:2] if c]
        return " ".join(format_unit(c, f"duration-{u}", length="narrow", locale=self.lang)
                        for u, c in parts)
