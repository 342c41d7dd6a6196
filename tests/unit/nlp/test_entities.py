"""Canonical entity tagging: one rule per test, on short hand-written articles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.models import Article, Entity, TaggedArticle
from pipeline.nlp.entities import EntityTagger
from pipeline.nlp.language import detect_language
from pipeline.nlp.structure import table_rows
from pipeline.settings import EntitySettings, Settings


@pytest.fixture(scope="module")
def tagger() -> EntityTagger:
    return EntityTagger(EntitySettings(aliases={"Big Blue": "IBM"}, remember_people=1000))


def art(title: str = "", text: str = "", summary: str = "", id: str = "a1") -> Article:
    return Article(id=id, feed="test", source="test", title=title, summary=summary, text=text)


def tag_one(tagger: EntityTagger, **kwargs: str) -> TaggedArticle:
    return tagger.tag([art(**kwargs)])[0]


def names(tagged: TaggedArticle, etype: str | None = None) -> list[str]:
    return [e.name for e in tagged.entities if etype is None or e.type == etype]


def by_name(tagged: TaggedArticle, name: str) -> Entity:
    return next(e for e in tagged.entities if e.name == name)


def test_partial_person_names_resolve_to_the_full_name(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger,
        title="Merkel hosts climate summit",
        text="German Chancellor Angela Merkel opened the summit in Berlin on Monday. "
        "Merkel said the talks would run late. Later, Merkel met delegates.",
    )
    people = names(t, "person")
    assert people == ["Angela Merkel"]
    merkel = by_name(t, "Angela Merkel")
    assert {"Merkel", "Angela Merkel"} <= set(merkel.mentions)
    assert merkel.count >= 3


def test_a_family_name_first_is_the_person_not_a_town_of_that_name(tagger: EntityTagger) -> None:
    """The gazetteer knows a town called Kim; in an article about Kim Jong Un, "Kim" alone is him."""
    t = tag_one(
        tagger,
        title="North Korea's Kim inspects rocket sites at Russian cosmodrome",
        text="Kim Jong Un toured the Vostochny launch site on Wednesday. Kim asked detailed questions, "
        "state media said.",
    )
    assert "Kim" not in names(t)
    assert "Kim" in by_name(t, "Kim Jong Un").mentions and by_name(t, "Kim Jong Un").type == "person"


def test_possessives_and_punctuation_are_stripped(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger,
        title="North Korea’s missile test worries Japan",
        text="North Korea’s latest launch landed in the sea. Japan's government protested, and "
        "Canada's envoy called it reckless.",
    )
    assert {"North Korea", "Japan", "Canada"} <= set(names(t, "location"))
    assert not [n for n in names(t) if "’" in n or "'s" in n]


def test_aliases_and_abbreviations_share_one_name(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger,
        title="U.S. and EU officials meet the ECB",
        text="Officials from the United States met the European Central Bank in Frankfurt. The US delegation "
        "said the ECB should hold rates. Later the European Union said it agreed.",
    )
    locations, orgs = names(t, "location"), names(t, "organization")
    assert "United States" in locations
    assert not {"US", "U.S.", "the United States"} & set(names(t))
    assert "European Central Bank" in orgs and "ECB" not in orgs
    assert "European Union" in orgs and "EU" not in orgs


def test_settings_aliases_extend_the_table(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger, title="IBM results", text="IBM reported higher profit. Analysts said Big Blue beat forecasts."
    )
    ibm = [e for e in t.entities if e.name == "IBM"]
    assert len(ibm) == 1 and "Big Blue" not in names(t)


def test_demonyms_and_adjectives_are_not_places(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger,
        title="Russian and Western diplomats meet in Geneva",
        text="Russian officials and Western diplomats met in Geneva. A Chinese delegation and French "
        "negotiators joined later, according to Swiss officials.",
    )
    all_names = set(names(t))
    assert not {"Russian", "Western", "Chinese", "French", "Swiss"} & all_names
    assert "Geneva" in names(t, "location")


def test_all_caps_headline_is_recased(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger,
        title="MERKEL WARNS OF SLOWDOWN AS GERMANY REPORTS WEAK EXPORTS",
        text="Chancellor Angela Merkel warned on Tuesday that Germany faced a slowdown after exports fell. "
        "Merkel said the government would act.",
    )
    assert names(t, "person") == ["Angela Merkel"]
    assert "MERKEL" in by_name(t, "Angela Merkel").mentions
    assert "Germany" in names(t, "location")
    assert not [n for n in names(t) if n.isupper() and len(n) > 4], names(t)


def test_all_caps_title_only_still_finds_places(tagger: EntityTagger) -> None:
    t = tag_one(tagger, title="EARTHQUAKE HITS TURKEY AND SYRIA, THOUSANDS FEARED DEAD")
    assert t.language == "en"
    assert {"Turkey", "Syria"} <= set(names(t, "location"))
    assert not {"Earthquake", "Thousands", "EARTHQUAKE"} & set(names(t))


def test_non_english_articles_get_a_language_but_no_entities(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger,
        title="Le président français rencontre le chancelier allemand à Berlin",
        text="Le président de la République a rencontré mardi le chancelier allemand pour discuter de "
        "l'avenir de l'Union européenne et de la guerre en Ukraine.",
    )
    assert t.language == "fr"
    assert t.entities == []


def test_same_entity_gets_the_same_name_across_articles(tagger: EntityTagger) -> None:
    first, second, third = tagger.tag(
        [
            art(
                id="1",
                title="Zelensky visits Washington",
                text="Volodymyr Zelensky met US lawmakers on Tuesday.",
            ),
            art(
                id="2",
                title="Zelensky urges more aid",
                text="Zelensky told U.S. lawmakers that time was short.",
            ),
            art(id="3", title="Aid vote delayed", text="The vote in the United States was delayed again."),
        ]
    )
    assert "Volodymyr Zelensky" in names(first, "person")
    assert "Volodymyr Zelensky" in names(second, "person")
    assert "Zelensky" not in names(second)
    for t in (first, second, third):
        assert "United States" in names(t, "location"), names(t)


def test_empty_and_odd_inputs_never_crash(tagger: EntityTagger) -> None:
    assert tagger.tag([]) == []
    odd = [
        art(id="e", title=""),
        art(id="p", title="!!! ??? ..."),
        art(id="n", title="2024-05-01 12:00"),
        art(id="u", title="\u200b\u00a0 \t\n"),
        art(id="x", title="<b>", text="&amp;&nbsp; " * 50),
        art(id="t", title="Tesla"),
        art(id="z", title="a" * 50_000),
    ]
    tagged = tagger.tag(odd)
    assert [t.id for t in tagged] == [a.id for a in odd]
    assert tagged[0].language is None and tagged[0].entities == []
    assert tagged[1].entities == []


def test_results_table_places_are_teams(tagger: EntityTagger) -> None:
    text = (
        "Results on Sunday:\nToronto 3 Chicago 2\nBoston 1 Detroit 4\nDallas 2 Phoenix 2\nDenver 0 Seattle 1"
    )
    t = tag_one(tagger, title="Hockey results", text=text)
    assert "Toronto" in names(t, "organization")
    assert "Toronto" not in names(t, "location")
    assert table_rows("Toronto 3 Chicago 2\nThe game was close.\nLONDON 2024-01-02") == [(0, 19)]


def test_language_detection_on_short_titles() -> None:
    assert detect_language("Putin to visit North Korea") == "en"
    assert detect_language("JAPAN GET LUCKY WIN") == "en"
    assert detect_language("") is None
    assert detect_language("12:00 - 3:1") is None
    assert detect_language("Der Bundeskanzler besucht heute die Hauptstadt der Ukraine") == "de"


def test_cli_tag_writes_one_row_per_article(tmp_path: Path) -> None:
    from pipeline.nlp.entities import cli_tag

    src = tmp_path / "in.jsonl"
    src.write_text(
        json.dumps(
            {"id": "1", "title": "Putin meets Xi in Beijing", "text": "Vladimir Putin met Xi Jinping."}
        )
        + "\n"
        + json.dumps({"id": 2, "title": ""})
        + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "out.jsonl"
    assert cli_tag(src, out, Settings()) == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["1", "2"]
    assert {"Vladimir Putin", "Beijing"} <= {e["name"] for e in rows[0]["entities"]}
    assert rows[1]["entities"] == []


def test_dateline_place_is_a_location(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger,
        title="Rebels free hostages",
        text="LIMA 1996-09-02\nGuerrillas freed 12 hostages near the town of Satipo , police said .",
    )
    assert "Lima" in names(t, "location")
    assert "LIMA" in by_name(t, "Lima").mentions


def test_match_summary_scorers_are_people_and_teams_organisations(tagger: EntityTagger) -> None:
    text = (
        "Summary of first division matches on Sunday :\n"
        "Ajax 2 ( Kluivert 23 , Litmanen 71 pen ) Groningen 0 . Halftime 1-0 . Attendance 28,000\n"
        "Feyenoord 1 ( Larsson 58 ) Vitesse 1 ( Gillhaus 12 ) . Attendance 40,000\n"
        "Twente 0 Utrecht 0 . Attendance 9,000"
    )
    t = tag_one(tagger, title="Soccer - Dutch league summary", text=text)
    assert {"Kluivert", "Litmanen", "Larsson", "Gillhaus"} <= set(names(t, "person"))
    assert {"Ajax", "Groningen", "Feyenoord", "Utrecht"} <= set(names(t, "organization"))
    assert not {"Halftime", "Attendance"} & set(names(t))


def test_cricket_scorecard_names_are_people(tagger: EntityTagger) -> None:
    text = "Scoreboard on the first day :\nSaeed Anwar c Stewart b Mullally 44\nAamir Sohail lbw b Cork 12"
    t = tag_one(tagger, title="Cricket - scoreboard", text=text)
    assert {"Saeed Anwar", "Stewart", "Mullally", "Aamir Sohail", "Cork"} <= set(names(t, "person"))


def test_given_names_and_organisation_suffixes_settle_the_type(tagger: EntityTagger) -> None:
    t = tag_one(
        tagger,
        title="Leeds hold Chelsea",
        text="Leeds United held Chelsea to a draw . Fred Couples and Ernie Els play golf in Akron .",
    )
    assert "Leeds United" in names(t, "organization")
    assert {"Leeds", "Leeds United"} <= set(by_name(t, "Leeds United").mentions)
    assert {"Fred Couples", "Ernie Els"} <= set(names(t, "person"))


def test_event_names_are_not_places(tagger: EntityTagger) -> None:
    t = tag_one(tagger, title="Tennis", text="Results from the Canadian Open in Toronto on Thursday .")
    assert "Canadian Open" not in names(t, "location")
    assert "Toronto" in names(t, "location")


def test_language_of_english_prose_and_name_heavy_tables() -> None:
    prose = (
        "The government said on Tuesday that it would review the plan after talks with the unions, and that "
        "a decision was expected before the end of the month, when the budget is due to be presented."
    )
    assert detect_language(prose) == "en"
    table = (
        "Results of the first division matches played on Sunday in the Netherlands , with the scorers :\n"
        "Vitesse Arnhem 2 ( Van den Brom 10 , Gillhaus 61 ) Willem II Tilburg 1 ( Konterman 33 )\n"
        "NAC Breda 0 Roda JC Kerkrade 2 ( Van Houdt 44 , Vurens 70 )\n"
        "De Graafschap Doetinchem 1 ( Van der Weerden 5 ) Sparta Rotterdam 1 ( Van Gobbel 80 )\n"
        "Heerenveen 3 ( De Jong 12 , Van Dijk 40 , Van Nistelrooy 77 ) Volendam 0"
    )
    assert detect_language(table) == "en"
    assert detect_language("Het kabinet heeft dinsdag gezegd dat de plannen voor de nieuwe wet worden "
                           "aangepast, omdat de oppositie het voorstel niet goed genoeg vindt.") == "nl"
