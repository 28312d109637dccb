"""The pages' texts, one catalogue per language: ``locale/<lang>/<page>.json``.

Every text a page shows comes from here, keyed ``<page>.<key>`` (``console.title``); adding a
language is adding a folder with the same files. French is the default and the reference:
a key missing in another language falls back to it.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

LOCALE_DIR = Path(__file__).with_name("locale")
DEFAULT_LANG = "fr"


@cache
def catalogue(lang: str = DEFAULT_LANG) -> dict[str, str]:
    texts = {} if lang == DEFAULT_LANG else dict(catalogue(DEFAULT_LANG))
    folder = LOCALE_DIR / lang
    if not folder.is_dir():
        raise KeyError(f"no catalogue for language {lang!r} in {LOCALE_DIR}")
    for path in sorted(folder.glob("*.json")):
        for key, text in json.loads(path.read_text(encoding="utf-8")).items():
            texts[f"{path.stem}.{key}"] = text
    return texts


def page_texts(page: str, lang: str = DEFAULT_LANG) -> dict[str, str]:
    """The texts of one page without its prefix, e.g. to hand them to the page's script."""
    prefix = f"{page}."
    return {k[len(prefix):]: v for k, v in catalogue(lang).items() if k.startswith(prefix)}


def languages() -> list[str]:
    return sorted(p.name for p in LOCALE_DIR.iterdir() if p.is_dir())
