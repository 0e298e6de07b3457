"""The six official languages and their catalogues (unhindered/locale/, one gettext domain
for the status page and reports, "messages", and one for the alert e-mails, "alerts"),
read from the .po files themselves: no build step, and a .po cannot be stale against a
compiled copy. Babel, which reads them, comes with the collector's extra: only the
collector writes text for people."""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from babel.support import NullTranslations

LOCALE_DIR = Path(__file__).parent / "locale"
DOMAIN = "messages"
# Arabic, Chinese, English, French, Russian, Spanish: the order the organisation lists them.
LANGUAGES = ("ar", "zh", "en", "fr", "ru", "es")
DEFAULT_LANGUAGE = "en"


def load_translations(lang: str, domain: str = DOMAIN) -> NullTranslations:
    """The catalogue of `lang`, compiled in memory from its .po file; English and missing
    catalogues give the source text."""
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import NullTranslations, Translations

    po = LOCALE_DIR / lang / "LC_MESSAGES" / f"{domain}.po"
    if lang == DEFAULT_LANGUAGE or not po.is_file():
        return NullTranslations()
    with po.open("rb") as f:
        catalog = read_po(f, locale=lang, domain=domain)
    mo = io.BytesIO()
    write_mo(mo, catalog)  # fuzzy entries are left out, as pybabel compile does
    mo.seek(0)
    return Translations(mo, domain=domain)


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an Accept-Language header, most preferred first (q=0 dropped)."""
    tags: list[tuple[float, int, str]] = []
    for i, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if tag and q > 0:
            tags.append((-q, i, tag.strip()))
    return [tag for _q, _i, tag in sorted(tags)]


def primary(tag: str) -> str:
    """The primary language of a tag: zh-Hans-CN -> zh."""
    return tag.replace("_", "-").split("-")[0].lower()
