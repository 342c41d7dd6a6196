"""The Kibana saved objects (`deploy/kibana/newsflow.ndjson`) and their import (`pipeline/search/kibana.py`).

The NDJSON is checked against the index templates, so renaming or retyping a mapped field breaks this test
instead of silently breaking a dashboard panel. No Kibana is needed: the import talks to a local HTTP server.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from pipeline.search import kibana
from pipeline.search.templates import article_mappings, story_mappings
from pipeline.settings import Indices

NDJSON = kibana.DEFAULT_NDJSON
EXPECTED_TYPES = {"index-pattern", "search", "lens", "dashboard"}
AGGREGATABLE = {"keyword", "date", "boolean", "byte", "short", "integer", "long", "float", "double", "half_float"}
RECORDS = "___records___"  # Lens' pseudo-field for "count of documents"
# Lens operations that do not read a field value: count works on any field or on the documents themselves.
FIELDLESS_OPS = {"count"}


# --- helpers: what the engine has ----------------------------------------------------------------------------
def flatten(properties: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Field path -> mapping type, including object paths and multi-fields (`title.keyword`)."""
    out: dict[str, str] = {}
    for name, spec in properties.items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            out[path] = "object"
            out.update(flatten(spec["properties"], f"{path}."))
        else:
            out[path] = spec.get("type", "object")
        for sub, sub_spec in spec.get("fields", {}).items():
            out[f"{path}.{sub}"] = sub_spec["type"]
    return out


def fields_for_data_view(title: str) -> dict[str, str]:
    """The mapped fields a data view sees: its title pattern must cover one of newsflow's index families."""
    indices = Indices()
    family = title.rstrip("*")
    if family == indices.articles:
        return flatten(article_mappings()["properties"])
    if family == indices.stories:
        return flatten(story_mappings()["properties"])
    raise AssertionError(f"data view {title!r} matches no newsflow index family")


def kuery_fields(query: str) -> list[str]:
    """Field names in a KQL string (`is_duplicate: false and entities.person:*`); quoted values are ignored."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    return re.findall(r"(?:^|[\s(])([A-Za-z_@][\w.@]*)\s*:", unquoted)


# --- the checker -----------------------------------------------------------------------------------------------
def load(path: Path = NDJSON) -> list[dict[str, Any]]:
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    objects = []
    for n, line in enumerate(lines, start=1):
        try:
            objects.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise AssertionError(f"{path}:{n}: not JSON: {exc}") from None
    return objects


class Checker:
    """Collects every problem in a set of saved objects (so one run names them all)."""

    def __init__(self, objects: list[dict[str, Any]]) -> None:
        self.objects = objects
        self.by_key = {(o.get("type"), o.get("id")): o for o in objects}
        self.problems: list[str] = []

    def run(self) -> list[str]:
        for obj in self.objects:
            where = f"{obj.get('type')} {obj.get('id')}"
            for key in ("type", "id", "attributes", "references"):
                if key not in obj:
                    self.problems.append(f"{where}: no {key!r}")
            if obj.get("type") not in EXPECTED_TYPES:
                self.problems.append(f"{where}: unexpected type")
            for ref in obj.get("references", []):
                if (ref.get("type"), ref.get("id")) not in self.by_key:
                    self.problems.append(
                        f"{where}: reference {ref.get('name')} -> {ref.get('type')} {ref.get('id')} is not in the file"
                    )
            check = getattr(self, f"check_{str(obj.get('type')).replace('-', '_')}", None)
            if check and not any(p.startswith(where + ":") for p in self.problems):
                check(where, obj)
        if len(self.by_key) != len(self.objects):
            self.problems.append("two objects share one (type, id)")
        return self.problems

    def data_view_fields(self, obj: dict[str, Any], ref_name: str) -> dict[str, str]:
        ref = next(r for r in obj["references"] if r["name"] == ref_name)
        return fields_for_data_view(self.by_key[("index-pattern", ref["id"])]["attributes"]["title"])

    def field(self, where: str, fields: dict[str, str], name: str, *, aggregatable: bool = False) -> None:
        if name not in fields or fields[name] == "object":
            self.problems.append(f"{where}: field {name!r} is not mapped")
        elif aggregatable and fields[name] not in AGGREGATABLE:
            self.problems.append(f"{where}: field {name!r} is {fields[name]}, which cannot be aggregated or sorted")

    def query(self, where: str, fields: dict[str, str], query: dict[str, Any] | None) -> None:
        if query and query.get("language") == "kuery":
            for name in kuery_fields(str(query.get("query", ""))):
                self.field(where, fields, name)

    def check_index_pattern(self, where: str, obj: dict[str, Any]) -> None:
        attrs = obj["attributes"]
        fields = fields_for_data_view(attrs["title"])
        self.field(where, fields, attrs["timeFieldName"], aggregatable=True)
        if fields.get(attrs["timeFieldName"]) != "date":
            self.problems.append(f"{where}: time field {attrs['timeFieldName']!r} is not a date")

    def check_search(self, where: str, obj: dict[str, Any]) -> None:
        attrs = obj["attributes"]
        source = json.loads(attrs["kibanaSavedObjectMeta"]["searchSourceJSON"])
        fields = self.data_view_fields(obj, source["indexRefName"])
        for column in attrs.get("columns", []):
            self.field(where, fields, column)
        for name, _direction in attrs.get("sort", []):
            self.field(where, fields, name, aggregatable=True)
        self.query(where, fields, source.get("query"))

    def check_lens(self, where: str, obj: dict[str, Any]) -> None:
        state = obj["attributes"]["state"]
        columns_seen: set[str] = set()
        for layer_id, layer in state["datasourceStates"]["formBased"]["layers"].items():
            fields = self.data_view_fields(obj, f"indexpattern-datasource-layer-{layer_id}")
            for col_id, col in layer["columns"].items():
                columns_seen.add(col_id)
                source = col.get("sourceField")
                if col["operationType"] in FIELDLESS_OPS and source == RECORDS:
                    pass
                elif source is None:
                    self.problems.append(f"{where}: column {col_id} has no sourceField")
                else:
                    self.field(where, fields, source, aggregatable=True)
                self.query(where, fields, col.get("filter"))
            if sorted(layer["columnOrder"]) != sorted(layer["columns"]):
                self.problems.append(f"{where}: layer {layer_id} columnOrder does not list its columns")
            self.query(where, fields, state.get("query"))
        for vis_layer in state["visualization"].get("layers", []):
            used = [vis_layer.get("xAccessor"), *vis_layer.get("accessors", []), *vis_layer.get("primaryGroups", [])]
            used += vis_layer.get("metrics", [])
            for col_id in filter(None, used):
                if col_id not in columns_seen:
                    self.problems.append(f"{where}: visualization uses unknown column {col_id}")

    def check_dashboard(self, where: str, obj: dict[str, Any]) -> None:
        refs = {r["name"]: r for r in obj["references"]}
        for panel in json.loads(obj["attributes"]["panelsJSON"]):
            name = f"{panel['panelIndex']}:{panel['panelRefName']}"
            if name not in refs:
                self.problems.append(f"{where}: panel {panel['panelIndex']} has no reference {name!r}")
            elif refs[name]["type"] != panel["type"]:
                self.problems.append(f"{where}: panel {panel['panelIndex']} is a {panel['type']}, its reference not")


def problems(objects: list[dict[str, Any]]) -> list[str]:
    return Checker(objects).run()


def find(objects: list[dict[str, Any]], type_: str, title: str) -> dict[str, Any]:
    matches = [o for o in objects if o["type"] == type_ and o["attributes"]["title"] == title]
    assert len(matches) == 1, f"expected one {type_} titled {title!r}, found {len(matches)}"
    return matches[0]


def lens_fields(obj: dict[str, Any]) -> set[str]:
    layers = obj["attributes"]["state"]["datasourceStates"]["formBased"]["layers"].values()
    return {c.get("sourceField") for layer in layers for c in layer["columns"].values()}


# --- the shipped file -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return load()


def test_every_line_is_a_saved_object_and_every_field_is_mapped(objects: list[dict[str, Any]]) -> None:
    assert problems(objects) == []


def test_data_views_and_saved_searches_are_the_promised_ones(objects: list[dict[str, Any]]) -> None:
    views = {o["attributes"]["title"]: o for o in objects if o["type"] == "index-pattern"}
    assert views["newsflow-articles*"]["attributes"]["timeFieldName"] == "@timestamp"
    assert views["newsflow-stories*"]["attributes"]["timeFieldName"] == "first_seen"
    assert views["newsflow-articles*"]["id"] == "newsflow-articles-dv"

    latest = find(objects, "search", "Latest stories")
    assert latest["attributes"]["sort"] == [["last_seen", "desc"]]
    assert latest["references"][0]["id"] == views["newsflow-stories*"]["id"]
    unique = json.loads(
        find(objects, "search", "Unique articles (no duplicates)")["attributes"]["kibanaSavedObjectMeta"][
            "searchSourceJSON"
        ]
    )
    assert unique["query"] == {"query": "is_duplicate: false", "language": "kuery"}
    by_entity = find(objects, "search", "By entity")["attributes"]
    assert {"entities.person", "entities.organization", "entities.location"} <= set(by_entity["columns"])


def test_dashboard_shows_every_promised_panel(objects: list[dict[str, Any]]) -> None:
    dashboard = next(o for o in objects if o["type"] == "dashboard")
    panel_ids = {r["id"] for r in dashboard["references"]}
    panels = [o for o in objects if o["id"] in panel_ids and o["type"] == "lens"]
    fields = set().union(*(lens_fields(p) for p in panels))
    assert {"first_seen", "entities.person", "entities.organization", "entities.location", "source"} <= fields
    assert "is_duplicate" in fields  # the duplicate ratio
    assert len(json.loads(dashboard["attributes"]["panelsJSON"])) == len(dashboard["references"])


# --- the checker catches what it should (these would pass vacuously if it did not) -----------------------------
def _mutated(objects: list[dict[str, Any]], obj_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    clone = copy.deepcopy(objects)
    return clone, next(o for o in clone if o["id"] == obj_id)


def test_checker_rejects_an_aggregation_on_a_text_field(objects: list[dict[str, Any]]) -> None:
    clone, lens = _mutated(objects, "newsflow-top-sources")
    lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]["top-sources"]["columns"]["term"][
        "sourceField"
    ] = "title"
    assert problems(clone) == ["lens newsflow-top-sources: field 'title' is text, which cannot be aggregated or sorted"]


def test_checker_rejects_unknown_fields_and_dangling_references(objects: list[dict[str, Any]]) -> None:
    clone, search = _mutated(objects, "newsflow-by-entity")
    search["attributes"]["columns"].append("entities.planet")
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    source["query"]["query"] = 'is_dupe: false and title:"a: b"'
    search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"] = json.dumps(source)
    clone = [o for o in clone if o["id"] != "newsflow-top-places"]
    found = problems(clone)
    assert "search newsflow-by-entity: field 'entities.planet' is not mapped" in found
    assert "search newsflow-by-entity: field 'is_dupe' is not mapped" in found
    assert any("newsflow-overview" in p and "lens newsflow-top-places is not in the file" in p for p in found)
    assert len(found) == 3, found


def test_flatten_walks_objects_and_multi_fields() -> None:
    fields = flatten(article_mappings()["properties"])
    assert fields["title"] == "text"
    assert fields["title.keyword"] == "keyword"
    assert fields["entities.person"] == "keyword"
    assert fields["entities"] == "object"
    assert kuery_fields('is_duplicate: false and (entities.person:"A: B" or source : x)') == [
        "is_duplicate",
        "entities.person",
        "source",
    ]


# --- the import -------------------------------------------------------------------------------------------------
class FakeKibana(BaseHTTPRequestHandler):
    """Answers like Kibana's import API and remembers each request."""

    requests: ClassVar[list[dict[str, Any]]] = []
    answer: ClassVar[tuple[int, dict[str, Any]]] = (200, {"success": True, "successCount": 12})

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        url = urlparse(self.path)
        FakeKibana.requests.append(
            {"path": url.path, "query": parse_qs(url.query), "headers": dict(self.headers), "body": body}
        )
        status, payload = FakeKibana.answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_kibana() -> Iterator[str]:
    FakeKibana.requests = []
    FakeKibana.answer = (200, {"success": True, "successCount": 12})
    server = HTTPServer(("127.0.0.1", 0), FakeKibana)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_import_posts_the_file_as_multipart_with_kbn_xsrf(fake_kibana: str) -> None:
    assert kibana.import_saved_objects(fake_kibana, NDJSON) == 12
    [req] = FakeKibana.requests
    assert req["path"] == "/api/saved_objects/_import"
    assert req["query"] == {"overwrite": ["true"]}
    assert req["headers"]["kbn-xsrf"] == "true"
    content_type = req["headers"]["Content-Type"]
    assert content_type.startswith("multipart/form-data; boundary=")
    boundary = content_type.split("boundary=", 1)[1].encode()
    [part] = [p for p in req["body"].split(b"--" + boundary) if b"Content-Disposition" in p]
    head, _, content = part.partition(b"\r\n\r\n")
    assert b'name="file"' in head
    assert b'filename="newsflow.ndjson"' in head
    assert content.rstrip(b"\r\n") == NDJSON.read_bytes().rstrip(b"\n")


def test_import_lists_each_refused_object_on_one_line(fake_kibana: str) -> None:
    FakeKibana.answer = (
        200,
        {
            "success": False,
            "successCount": 10,
            "errors": [
                {
                    "id": "newsflow-top-people",
                    "type": "lens",
                    "meta": {"title": "Top people"},
                    "error": {
                        "type": "missing_references",
                        "references": [{"type": "index-pattern", "id": "newsflow-articles-dv"}],
                    },
                },
                {
                    "id": "newsflow-overview",
                    "type": "dashboard",
                    "title": "newsflow overview",
                    "error": {"type": "unknown", "message": "bad panelsJSON"},
                },
            ],
        },
    )
    with pytest.raises(kibana.KibanaError) as info:
        kibana.import_saved_objects(fake_kibana, NDJSON)
    message = str(info.value)
    assert "\n" not in message
    assert message == (
        f"Kibana at {fake_kibana} did not import 2 object(s): "
        'lens newsflow-top-people ("Top people"): missing_references (index-pattern newsflow-articles-dv); '
        'dashboard newsflow-overview ("newsflow overview"): unknown (bad panelsJSON)'
    )


def test_import_reports_an_http_error_in_one_line(fake_kibana: str) -> None:
    FakeKibana.answer = (415, {"statusCode": 415, "error": "Unsupported Media Type", "message": "Unsupported\nfile"})
    with pytest.raises(kibana.KibanaError) as info:
        kibana.import_saved_objects(fake_kibana, NDJSON, overwrite=False)
    assert str(info.value) == f"Kibana at {fake_kibana} refused the import: HTTP 415: Unsupported file"
    assert FakeKibana.requests[0]["query"] == {"overwrite": ["false"]}


def test_import_reports_unreachable_kibana_and_missing_file(tmp_path: Path) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(kibana.KibanaError, match=r"^Kibana not reachable at http://kb:5601 \(ConnectError\)"):
        kibana.import_saved_objects("http://kb:5601", NDJSON, transport=httpx.MockTransport(refuse))
    missing = tmp_path / "none.ndjson"
    with pytest.raises(kibana.KibanaError, match=f"^cannot read {re.escape(str(missing))}: No such file"):
        kibana.import_saved_objects("http://kb:5601", missing)


def test_kibana_url_comes_from_flag_then_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIBANA_URL", raising=False)
    assert kibana.kibana_url() == "http://127.0.0.1:5601"
    monkeypatch.setenv("KIBANA_URL", "http://kibana:5601/")
    assert kibana.kibana_url() == "http://kibana:5601"
    assert kibana.kibana_url("http://other:1") == "http://other:1"


def test_cli_kibana_import_prints_one_line(
    fake_kibana: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from pipeline.cli import commands as cli

    monkeypatch.setattr(cli, "configure_logging", lambda verbose: None)
    assert cli.main(["kibana", "import", "--url", fake_kibana]) == 0
    out = capsys.readouterr().out
    assert out == f"Kibana at {fake_kibana}: imported 12 saved object(s) from {NDJSON} (existing ones overwritten)\n"


# --- Kibana 8 saved-objects import format -----------------------------------------------------------------------
# What Kibana 8.15 (the docker compose one) checks or assumes on import, beyond "it is JSON": the attribute keys
# its schemas accept (objects with unknown keys are refused), migration versions it knows, and the Lens /
# dashboard shapes that the migrations at and before each object's `typeMigrationVersion` produce.
TARGET_KIBANA = (8, 15, 5)
SEARCH_ATTRIBUTES = {  # the saved-search schema (8.8.0 and later model versions)
    "title", "description", "columns", "sort", "grid", "rowHeight", "rowsPerPage", "hideChart", "breakdownField",
    "kibanaSavedObjectMeta", "isTextBasedQuery", "usesAdHocDataView", "timeRestore", "timeRange",
    "refreshInterval", "viewMode", "hideAggregatedPreview", "hits", "version", "sampleSize", "headerRowHeight",
}
DASHBOARD_ATTRIBUTES = {  # the dashboard attributes schema (unknown keys forbidden)
    "title", "description", "kibanaSavedObjectMeta", "timeRestore", "timeFrom", "timeTo", "refreshInterval",
    "controlGroupInput", "panelsJSON", "optionsJSON", "hits", "version",
}
INDEX_PATTERN_JSON_STRINGS = ("fields", "fieldFormatMap", "runtimeFieldMap", "typeMeta", "fieldAttrs", "sourceFilters")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def format_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Every way the objects would be refused or mis-migrated by a Kibana 8 import."""
    found: list[str] = []
    for obj in objects:
        where = f"{obj['type']} {obj['id']}"
        core, typ = obj.get("coreMigrationVersion"), obj.get("typeMigrationVersion")
        if "migrationVersion" in obj:
            found.append(f"{where}: legacy migrationVersion (Kibana 8.8+ exports use typeMigrationVersion)")
        if not core or not typ:
            found.append(f"{where}: no coreMigrationVersion/typeMigrationVersion: Kibana would guess its format")
            continue
        if _version(core) > TARGET_KIBANA or _version(typ) > TARGET_KIBANA:
            found.append(f"{where}: migration versions {core}/{typ} are newer than Kibana {TARGET_KIBANA}")
        attrs = obj["attributes"]
        if obj["type"] == "search" and (extra := set(attrs) - SEARCH_ATTRIBUTES):
            found.append(f"{where}: attributes the search schema refuses: {sorted(extra)}")
        if obj["type"] == "dashboard":
            found.extend(_dashboard_format(where, obj))
        if obj["type"] == "index-pattern":
            for key in INDEX_PATTERN_JSON_STRINGS:
                if key in attrs and not isinstance(attrs[key], str):
                    found.append(f"{where}: {key} must be a JSON string")
                elif key in attrs:
                    json.loads(attrs[key])
        if obj["type"] == "lens":
            found.extend(_lens_format(where, obj))
    return found


def _dashboard_format(where: str, obj: dict[str, Any]) -> list[str]:
    found = [f"{where}: attribute {k!r} is not in the dashboard schema" for k in obj["attributes"]
             if k not in DASHBOARD_ATTRIBUTES]
    panels = json.loads(obj["attributes"]["panelsJSON"])
    indexes = [p["panelIndex"] for p in panels]
    if len(set(indexes)) != len(indexes):
        found.append(f"{where}: two panels share a panelIndex")
    for p in panels:
        if p["gridData"].get("i") != p["panelIndex"]:
            found.append(f"{where}: panel {p['panelIndex']}: gridData.i differs from panelIndex")
        if p.get("panelRefName") != f"panel_{p['panelIndex']}":
            found.append(f"{where}: panel {p['panelIndex']}: panelRefName is not panel_<panelIndex>")
        if _version(p.get("version", "0.0.0")) > TARGET_KIBANA:
            found.append(f"{where}: panel {p['panelIndex']}: version {p['version']} is newer than the target Kibana")
    json.loads(obj["attributes"]["optionsJSON"])
    return found


def _lens_format(where: str, obj: dict[str, Any]) -> list[str]:
    """Lens renamed its datasource `indexpattern` -> `formBased` and a pie's `metric` -> `metrics` in the
    8.6.0 migration, and `groups` -> `primaryGroups` in 8.5.0: the shape must match the version claimed."""
    found: list[str] = []
    state = obj["attributes"]["state"]
    at_least_860 = _version(obj["typeMigrationVersion"]) >= (8, 6, 0)
    if at_least_860 != ("formBased" in state["datasourceStates"]):
        found.append(f"{where}: datasource key does not match typeMigrationVersion {obj['typeMigrationVersion']}")
    layers = (state["datasourceStates"].get("formBased") or state["datasourceStates"].get("indexpattern") or {})
    refs = {r["name"] for r in obj["references"]}
    for layer_id in layers.get("layers", {}):
        if f"indexpattern-datasource-layer-{layer_id}" not in refs:
            found.append(f"{where}: layer {layer_id} has no data view reference")
    for vis_layer in state["visualization"].get("layers", []):
        if vis_layer.get("layerType") != "data":
            found.append(f"{where}: visualization layer {vis_layer.get('layerId')} has no layerType 'data'")
        if obj["attributes"]["visualizationType"] == "lnsPie" and at_least_860 and (
            "metric" in vis_layer or "groups" in vis_layer or "metrics" not in vis_layer
        ):
            found.append(f"{where}: pie layer uses the pre-8.6 metric/groups keys")
    return found


def test_the_file_has_the_kibana_8_import_format(objects: list[dict[str, Any]]) -> None:
    assert NDJSON.suffix == ".ndjson"  # Kibana refuses any other file extension
    assert NDJSON.read_bytes().endswith(b"\n")
    assert format_problems(objects) == []


def test_the_format_checks_catch_what_kibana_would_refuse(objects: list[dict[str, Any]]) -> None:
    clone, search = _mutated(objects, "newsflow-latest-stories")
    search["attributes"]["columnsJSON"] = "[]"
    dashboard = next(o for o in clone if o["type"] == "dashboard")
    panels = json.loads(dashboard["attributes"]["panelsJSON"])
    panels[1]["panelIndex"] = panels[0]["panelIndex"]
    dashboard["attributes"]["panelsJSON"] = json.dumps(panels)
    lens = next(o for o in clone if o["id"] == "newsflow-duplicate-ratio")
    lens["typeMigrationVersion"] = "8.5.0"
    found = format_problems(clone)
    assert "search newsflow-latest-stories: attributes the search schema refuses: ['columnsJSON']" in found
    assert "dashboard newsflow-overview: two panels share a panelIndex" in found
    assert "lens newsflow-duplicate-ratio: datasource key does not match typeMigrationVersion 8.5.0" in found
