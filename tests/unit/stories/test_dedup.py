"""Story clustering engine: stories, duplicates, replay, restart, expiry, odd inputs. Own fixtures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.errors import BadInputError
from pipeline.models import Entity, TaggedArticle
from pipeline.settings import DedupSettings, Settings
from pipeline.stories.engine import StoryEngine
from pipeline.stories.features import features
from pipeline.stories.offline import cli_cluster
from pipeline.stories.scoring import conflicts, similarity
from pipeline.stories.store import MemoryStore
from pipeline.stories.upkeep import story_moves

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def art(
    aid: str,
    title: str,
    text: str = "",
    *,
    source: str = "example.org",
    hours: float = 0.0,
    url: str | None = None,
    entities: list[tuple[str, str]] | None = None,
    language: str | None = "en",
) -> TaggedArticle:
    when = T0 + timedelta(hours=hours)
    return TaggedArticle(
        id=aid,
        feed="https://feeds.example.org/rss",
        source=source,
        url=url,
        title=title,
        text=text,
        published=when,
        fetched_at=when,
        language=language,
        entities=[Entity(name=n, type=t) for n, t in (entities or [])],
    )


# Two outlets, one event, little shared wording.
PUTIN_A = art(
    "a1",
    "Putin to travel to Pyongyang for talks with Kim Jong Un",
    "Vladimir Putin will fly to Pyongyang on Tuesday for a two-day state visit, the Kremlin announced, his "
    "first trip to North Korea in more than two decades. Kremlin aides said Putin and Kim Jong Un would sign "
    "a partnership treaty covering trade and security. Seoul and Washington voiced concern that Moscow could "
    "help the North with missile technology in exchange for artillery shells used in Ukraine.",
    source="Wire One",
    entities=[("Vladimir Putin", "person"), ("Pyongyang", "location"), ("Kim Jong Un", "person")],
)
PUTIN_B = art(
    "a2",
    "Kremlin confirms Russian leader's North Korea trip",
    "The Russian president is expected in the North Korean capital Pyongyang this week, officials in Moscow "
    "confirmed, ending weeks of speculation. Putin last visited in 2000. Analysts in Seoul expect the "
    "leaders to deepen military cooperation; the visit comes as Kim Jong Un seeks partners beyond Beijing "
    "and Russia looks for ammunition for its war.",
    source="Daily Two",
    hours=3,
    entities=[("Vladimir Putin", "person"), ("Pyongyang", "location"), ("Kim Jong Un", "person")],
)
KIM_IN_RUSSIA = art(
    "b1",
    "Kim Jong Un arrives in Vladivostok by armoured train",
    "North Korean leader Kim Jong Un arrived in the Russian port city of Vladivostok on his armoured train, "
    "state media reported, ahead of a summit at the Vostochny cosmodrome. Kim toured a fighter jet factory "
    "in Komsomolsk-on-Amur and inspected Pacific Fleet warships with the Russian defence minister.",
    source="Wire One",
    hours=-24 * 7,
    entities=[("Kim Jong Un", "person"), ("Vladivostok", "location"), ("Russia", "location")],
)
STRIKE_A = art(
    "c1",
    "Lufthansa pilots walk out, grounding hundreds of flights in Frankfurt and Munich",
    "Pilots at Lufthansa began a 24-hour strike on Wednesday after pay talks with the Vereinigung Cockpit "
    "union collapsed. The German carrier cancelled more than 800 flights from its Frankfurt and Munich hubs, "
    "stranding about 100,000 passengers. The union wants a 15 percent raise and better pensions.",
    source="Wire One",
    entities=[
        ("Lufthansa", "organization"),
        ("Vereinigung Cockpit", "organization"),
        ("Frankfurt", "location"),
    ],
)
STRIKE_B = art(
    "c2",
    "Ryanair cabin crew in Spain stage strike over contracts",
    "Cabin crew at Ryanair's Spanish bases stopped work on Thursday, the USO and Sitcpla unions said, "
    "demanding contracts under Spanish labour law. The Irish low-cost airline said it had cancelled 60 "
    "flights in Madrid, Barcelona and Malaga and accused the unions of holding holidaymakers to ransom.",
    source="Daily Two",
    hours=26,
    entities=[("Ryanair", "organization"), ("USO", "organization"), ("Madrid", "location")],
)


def engine(**overrides: object) -> StoryEngine:
    return StoryEngine(DedupSettings(**overrides))


def test_differently_worded_reports_of_one_event_share_a_story() -> None:
    e = engine()
    first, second = e.assign(PUTIN_A), e.assign(PUTIN_B)
    assert first.is_new_story and not second.is_new_story
    assert second.story_id == first.story_id
    assert second.duplicate_of is None
    assert second.story.article_count == 2
    assert second.story.sources == ["Wire One", "Daily Two"]


def test_look_alike_events_stay_apart() -> None:
    e = engine()
    kim = e.assign(KIM_IN_RUSSIA)
    putin = e.assign(PUTIN_A)
    strike_a, strike_b = e.assign(STRIKE_A), e.assign(STRIKE_B)
    assert kim.story_id != putin.story_id
    assert strike_a.story_id != strike_b.story_id


def test_look_alike_events_stay_apart_on_words_alone() -> None:
    """Same week, no time gap, no entities: the words must do it."""
    e = engine()
    kim = e.assign(KIM_IN_RUSSIA.model_copy(update={"published": T0, "entities": []}))
    putin = e.assign(PUTIN_A.model_copy(update={"entities": []}))
    a = e.assign(STRIKE_A.model_copy(update={"entities": []}))
    b = e.assign(STRIKE_B.model_copy(update={"entities": []}))
    assert kim.story_id != putin.story_id
    assert a.story_id != b.story_id


# One boxer, two fights: same words, but another year, opponent and city.
FIGHT_A = art(
    "f1",
    "Oskarov stops Petrakis in seventh round to keep heavyweight titles",
    "Heavyweight champion Vardan Oskarov kept his three world title belts on Saturday night, stopping "
    "challenger Leon Petrakis in the seventh round in Hamburg. Oskarov dropped Petrakis with a left hook "
    "in the sixth and the referee waved the fight off a round later. It was the 2011 defence the champion "
    "had promised, his tenth straight win by knockout.",
    source="Ring Wire",
    entities=[("Vardan Oskarov", "person"), ("Leon Petrakis", "person"), ("Hamburg", "location")],
)
FIGHT_B = art(
    "f2",
    "Oskarov too strong for Dlamini in Zurich",
    "Marcus Dlamini lasted until the sixth round against Vardan Oskarov in Zurich on Saturday, when the "
    "referee stepped in to save the American challenger. The heavyweight champion, unbeaten since 2014, "
    "now holds the belts longer than anyone in the division; Dlamini said he would ask for a rematch.",
    source="Fight Daily",
    hours=5,
    entities=[("Vardan Oskarov", "person"), ("Marcus Dlamini", "person"), ("Zurich", "location")],
)


def test_disagreeing_event_facts_lower_the_score() -> None:
    """Years and places both disagree (the shared champion keeps people from disagreeing): two conflicts."""
    plain, strict = engine(conflict_penalty=1.0), engine()
    for e in (plain, strict):
        e.assign(FIGHT_A)
    story = plain.store.stories[plain.store.articles["f1"]["story_id"]]
    feats = features(FIGHT_B, strict.settings)
    assert conflicts(story, feats) == 2
    unpenalised = similarity(story, feats, plain.settings)
    assert unpenalised >= strict.settings.similarity_threshold  # a would-be join: the penalty applies
    assert similarity(story, feats, strict.settings) == pytest.approx(0.8 * unpenalised)
    # reports of one event that agree on the year and the city are not penalised
    same_event = features(FIGHT_A.model_copy(update={"id": "f1b", "source": "Other"}), strict.settings)
    assert conflicts(story, same_event) == 0


def test_conflicting_facts_keep_a_look_alike_event_out_of_a_story() -> None:
    threshold = {"similarity_threshold": 0.45}  # between the penalised and the plain score of FIGHT_B
    plain, strict = engine(conflict_penalty=1.0, **threshold), engine(**threshold)
    assert plain.assign(FIGHT_A).story_id == plain.assign(FIGHT_B).story_id
    assert strict.assign(FIGHT_A).story_id != strict.assign(FIGHT_B).story_id


def test_verbatim_and_lightly_edited_copies_are_duplicates_of_the_first() -> None:
    e = engine()
    original = e.assign(PUTIN_A)
    verbatim = e.assign(PUTIN_A.model_copy(update={"id": "a1-copy", "source": "Syndicator"}))
    edited_text = (
        PUTIN_A.text.replace("on Tuesday", "on Tuesday morning")
        .replace("voiced concern", "expressed concern")
        .replace("Kremlin aides", "Aides")
    )
    edited = e.assign(
        PUTIN_A.model_copy(update={"id": "a1-edit", "text": edited_text, "url": "https://b.example/x?id=2"})
    )
    assert verbatim.duplicate_of == "a1" and edited.duplicate_of == "a1"
    assert verbatim.story_id == edited.story_id == original.story_id
    story = edited.story
    assert story.article_count == 1 and story.duplicate_count == 2
    assert story.sources == ["Wire One"]  # copies are not new reporting: no second source
    assert story.article_ids == ["a1", "a1-copy", "a1-edit"]


def test_same_url_under_new_guid_is_a_duplicate() -> None:
    e = engine()
    e.assign(PUTIN_A.model_copy(update={"url": "https://www.news.example/putin?utm_source=rss"}))
    repost = e.assign(
        PUTIN_B.model_copy(update={"id": "a9", "url": "http://news.example/putin/", "source": "Wire One"})
    )
    assert repost.duplicate_of == "a1"


def test_a_copy_of_a_copy_points_at_the_first_seen_article() -> None:
    e = engine()
    e.assign(PUTIN_A)
    e.assign(PUTIN_A.model_copy(update={"id": "x2", "url": "https://one.example/a"}))
    third = e.assign(PUTIN_A.model_copy(update={"id": "x3", "url": "https://one.example/a"}))
    assert third.duplicate_of == "a1"


def test_replay_returns_the_same_answer_and_changes_nothing() -> None:
    e = engine()
    e.assign(PUTIN_A)
    first = e.assign(PUTIN_B)
    before = json.dumps(e.store.stories[first.story_id], sort_keys=True)
    again = e.assign(PUTIN_B)
    assert again.replayed and not first.replayed
    assert (again.story_id, again.duplicate_of) == (first.story_id, first.duplicate_of)
    assert json.dumps(e.store.stories[first.story_id], sort_keys=True) == before
    assert again.story.revision == first.story.revision


STREAM = [KIM_IN_RUSSIA, PUTIN_A, STRIKE_A, PUTIN_B, STRIKE_B, PUTIN_A.model_copy(update={"id": "a1-copy"})]


def test_restarted_engine_over_the_same_store_assigns_identically() -> None:
    never_stopped = engine()
    expected = [(r.story_id, r.duplicate_of, r.story.revision) for r in map(never_stopped.assign, STREAM)]
    store = MemoryStore()
    got = [engine_over(store).assign(a) for a in STREAM[:3]]
    restarted = engine_over(json_roundtrip(store))  # the tables come back from their changelogs
    got += [restarted.assign(a) for a in STREAM[3:]]
    assert [(r.story_id, r.duplicate_of, r.story.revision) for r in got] == expected


def engine_over(store: MemoryStore) -> StoryEngine:
    return StoryEngine(DedupSettings(), store)


def json_roundtrip(store: MemoryStore) -> MemoryStore:
    """State must survive a JSON round trip unchanged (the changelog stores it as JSON)."""
    return MemoryStore(
        stories=json.loads(json.dumps(store.stories)),
        articles=json.loads(json.dumps(store.articles)),
        keys=json.loads(json.dumps(store.keys)),
    )


def test_story_ids_are_deterministic() -> None:
    a = [r.story_id for r in map(engine().assign, STREAM)]
    b = [r.story_id for r in map(engine().assign, STREAM)]
    assert a == b and all(s.startswith("s-") for s in a)


def test_expire_drops_idle_stories_with_their_articles_and_keys() -> None:
    e = engine(story_window_hours=48)
    old = e.assign(KIM_IN_RUSSIA)  # a week before the others
    e.assign(PUTIN_A)
    removed = e.expire(T0 + timedelta(hours=1))
    assert removed == 1
    assert old.story_id not in e.store.stories
    assert KIM_IN_RUSSIA.id not in e.store.articles
    assert all(v != KIM_IN_RUSSIA.id for v in e.store.keys.values())
    assert e.expire(T0 + timedelta(hours=1)) == 0
    # after expiry the same text starts a fresh story instead of joining a closed one
    assert e.assign(KIM_IN_RUSSIA.model_copy(update={"id": "b1-later"})).is_new_story


def test_a_story_closes_after_the_window_even_before_expire_runs() -> None:
    e = engine(story_window_hours=24)
    first = e.assign(PUTIN_A)
    later = T0 + timedelta(days=5)
    late = e.assign(PUTIN_B.model_copy(update={"published": later, "fetched_at": later}))
    assert late.story_id != first.story_id


def test_revision_increases_on_every_change() -> None:
    e = engine()
    revisions = [
        e.assign(a).story.revision for a in (PUTIN_A, PUTIN_B, PUTIN_A.model_copy(update={"id": "d"}))
    ]
    assert revisions == [1, 2, 3]


def test_odd_articles_get_a_story_and_never_crash() -> None:
    e = engine()
    title_only = e.assign(art("t1", "Earthquake of magnitude 6.1 strikes off northern Chile"))
    undated = e.assign(
        TaggedArticle(id="u1", feed="f", source="s", title="Undated item", text="Some words about nothing.")
    )
    german = e.assign(
        art(
            "de1",
            "Streik bei der Bahn",
            "Die Gewerkschaft ruft zum Streik auf. Züge fallen aus.",
            language="de",
        )
    )
    empty = e.assign(art("e1", "", ""))
    cjk = e.assign(art("zh1", "东京发生地震", "东京今天发生强烈地震，没有海啸预警。"))
    for r in (title_only, undated, german, empty, cjk):
        assert r.story_id.startswith("s-") and r.story.article_count == 1
    assert empty.story.title  # never an empty headline


def test_title_only_reports_join_a_matching_story() -> None:
    e = engine()
    story = e.assign(PUTIN_A)
    flash = e.assign(
        art("f1", "Putin to visit Pyongyang for talks with Kim Jong Un", source="Flash", hours=1)
    )
    assert flash.story_id == story.story_id


def test_representative_title_is_the_best_formed_headline() -> None:
    e = engine()
    e.assign(PUTIN_A.model_copy(update={"title": "PUTIN PYONGYANG TRIP"}))
    better = e.assign(
        PUTIN_B.model_copy(update={"title": "Putin to visit North Korea for talks with Kim Jong Un"})
    )
    assert better.story.title == "Putin to visit North Korea for talks with Kim Jong Un"
    worse = e.assign(art("a3", "Putin, Pyongyang, Kim...", PUTIN_B.text + " More later.", hours=4))
    assert worse.story_id == better.story_id
    assert worse.story.title == "Putin to visit North Korea for talks with Kim Jong Un"


def test_story_snapshot_merges_entities() -> None:
    e = engine()
    e.assign(PUTIN_A)
    story = e.assign(PUTIN_B).story
    counts = {ent.name: ent.count for ent in story.entities}
    assert counts["Vladimir Putin"] == 2 and counts["Kim Jong Un"] == 2
    assert story.first_seen == T0 and story.last_seen == T0 + timedelta(hours=3)


def test_cli_cluster_writes_one_row_per_article(tmp_path: Path) -> None:
    rows = [
        {"id": "1", "title": PUTIN_A.title, "text": PUTIN_A.text, "source": "a"},
        {"id": "2", "title": PUTIN_B.title, "text": PUTIN_B.text, "source": "b"},
        {"id": "3", "title": PUTIN_A.title, "text": PUTIN_A.text, "source": "c"},
        {"id": "4", "title": STRIKE_A.title},
    ]
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert (
        cli_cluster(
            src, out, Settings(), tagger=lambda batch: [TaggedArticle(**a.model_dump()) for a in batch]
        )
        == 0
    )
    got = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [g["id"] for g in got] == ["1", "2", "3", "4"]
    assert got[0]["story_id"] == got[1]["story_id"] == got[2]["story_id"] != got[3]["story_id"]
    assert got[2]["duplicate_of"] == "1" and got[0]["duplicate_of"] is None


def test_cli_cluster_names_the_bad_line(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"id": "1", "title": "ok"}\n{"title": "no id"}\n', encoding="utf-8")
    with pytest.raises(BadInputError, match=":2:"):
        cli_cluster(src, tmp_path / "out.jsonl", Settings())


# --- settle: quiet small stories merge into the story they belong to -------------------------------------------

PUTIN_C = art(
    "a3",
    "North Korea prepares welcome for visiting Russian president",
    "Pyongyang is preparing a lavish reception for Vladimir Putin, state media reported, with Kim Jong Un "
    "expected to greet the Russian leader at the airport. The summit is set to produce agreements on energy, "
    "transport links and military cooperation, officials said.",
    source="Third Daily",
    hours=2,
    entities=[("Vladimir Putin", "person"), ("Pyongyang", "location"), ("Kim Jong Un", "person")],
)


# A side report of the same event: on topic (above the threshold) but far less alike than the reports the
# story was built from (below its cohesion bar), so on arrival it opens a story of its own.
BRIDGE = art(
    "a5",
    "Tumen river bridge to open for summit traffic",
    "Engineers are finishing a road bridge over the Tumen river between Russia and North Korea, which "
    "officials hope to open during Putin's visit to Pyongyang. Freight operators said the crossing would "
    "cut delivery times by days.",
    source="Rail Gazette",
    hours=6,
    entities=[("Vladimir Putin", "person"), ("Pyongyang", "location"), ("Russia", "location"), ("Tumen", "location")],
)


def later(article: TaggedArticle, hours: float) -> TaggedArticle:
    when = article.published + timedelta(hours=hours)
    return article.model_copy(update={"published": when, "fetched_at": when})


def settling_engine() -> StoryEngine:
    """Three reports make a big story in these tests; by default stories of up to three reports are small."""
    return engine(small_story_max=2)


def stream_with_side_report(e: StoryEngine) -> tuple[str, str]:
    """Three reports make the story; the side report is left alone. Returns both story ids."""
    big = e.assign(PUTIN_A).story_id
    assert e.assign(PUTIN_B).story_id == big and e.assign(PUTIN_C).story_id == big
    alone = e.assign(BRIDGE)
    assert alone.is_new_story  # not accepted on arrival
    return big, alone.story_id


def test_a_quiet_small_story_merges_into_the_story_it_belongs_to() -> None:
    e = settling_engine()
    big, alone = stream_with_side_report(e)
    revisions = (e.store.stories[big]["revision"], e.store.stories[alone]["revision"])
    quiet_since = BRIDGE.published.timestamp()
    assert e.settle(quiet_since + 30 * 60) == []  # not quiet long enough yet (settle_minutes: 60)
    merges = e.settle(quiet_since + 61 * 60)
    assert [(m.merged_story_id, m.article_ids, m.story_id) for m in merges] == [(alone, ("a5",), big)]
    merged = merges[0].story
    assert merged.article_count == 4 and merged.sources[-1] == "Rail Gazette"
    assert merged.article_ids == ["a1", "a2", "a3", "a5"] and merged.revision > revisions[0]
    assert merges[0].merged_revision == revisions[1]
    assert merges[0].published == (BRIDGE.published.timestamp(),)
    assert alone not in e.store.stories
    replayed = e.assign(BRIDGE)  # at-least-once: a replay of the moved article answers with its new story
    assert replayed.replayed and replayed.story_id == big
    assert e.settle(quiet_since + 10 * 3600) == []  # nothing left to merge; settling again changes nothing


def test_after_a_merge_copies_of_the_moved_report_find_its_new_story() -> None:
    e = settling_engine()
    big, _ = stream_with_side_report(e)
    e.settle(BRIDGE.published.timestamp() + 2 * 3600)
    assert set(e.store.stories) == {big}
    copy = later(BRIDGE.model_copy(update={"id": "a5-copy", "url": None}), 1)
    follow_up = e.assign(copy)
    assert (follow_up.story_id, follow_up.duplicate_of) == (big, "a5")  # copies find a moved report's story


def test_settle_keeps_look_alike_events_apart() -> None:
    """The merge test has no cohesion bar, so the look-alike pairs must still fail on the threshold itself."""
    e = settling_engine()
    putin = e.assign(PUTIN_A).story_id
    e.assign(PUTIN_B)
    e.assign(PUTIN_C)
    kim = e.assign(KIM_IN_RUSSIA).story_id
    strikes = [e.assign(STRIKE_A).story_id, e.assign(STRIKE_B).story_id]
    assert e.settle(T0.timestamp() + 30 * 24 * 3600) == []
    assert {putin, kim, *strikes} <= set(e.store.stories)


def test_story_moves_refile_each_article_of_a_merge() -> None:
    e = settling_engine()
    _, alone = stream_with_side_report(e)
    (merge,) = e.settle(BRIDGE.published.timestamp() + 2 * 3600)
    (move,) = story_moves(merge)
    assert (move.article_id, move.story_id, move.merged_story_id) == ("a5", merge.story_id, alone)
    assert move.published == BRIDGE.published and move.story.article_count == 4
    assert move.model_dump_json().startswith('{"message":"story_move"')
