"""The HTTP API over the welcome scenario's output: every endpoint, the OpenAPI document, every
JSON answer checked against the schema the document gives it, and the published commands."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ops import http_api
from ops.api_auth import Tokens
from ops.api_cli import read_only, read_only_reason
from ops.api_errors import ApiError
from ops.api_read_models import FileReadModels
from ops.http_api import MAX_COMMAND_BYTES, PUBLISHED_KEPT_SECONDS, STATE, history_query, make_app
from ops.openapi import openapi_document
from projections.history import HistoryQuery
from projections.loading import load_file
from projections.sequence_detail import detail_of
from schemas.definitions import load_definition_file, validate_definition_document
from schemas.envelope import CloudEvent
from schemas.validation import decode_event
from streams.embedded import replay
from streams.relay import MAX_RECORD_BYTES
from tests.engine.helpers import ACCOUNT, sequence
from tests.projections.drip_scenario import drip_outputs, without_definitions, write

SCENARIOS = Path(__file__).resolve().parents[1] / "engine" / "scenarios"
UNTIL = datetime.fromisoformat("2028-03-04T00:00:00+00:00")
DOCUMENT = openapi_document()


@pytest.fixture(scope="module")
def definitions() -> dict[str, Any]:
    return load_definition_file(SCENARIOS / "welcome.yaml")


@pytest.fixture(scope="module")
def output_file(tmp_path_factory: pytest.TempPathFactory, definitions: dict[str, Any]) -> Path:
    lines: list[bytes] = []
    replay(
        definitions,
        (SCENARIOS / "welcome.events.jsonl").read_bytes().splitlines(),
        lambda events: lines.extend(event.encode() for event in events),
        lambda rejected: pytest.fail(rejected.message()),
        until=UNTIL,
    )
    path = tmp_path_factory.mktemp("api") / "welcome.out.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


class Sink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, CloudEvent]] = []

    async def __call__(self, topic: str, event: CloudEvent) -> None:
        self.sent.append((topic, event))

    def only(self) -> CloudEvent:
        assert len(self.sent) == 1
        topic, event = self.sent[0]
        assert topic == "commands"
        decoded = decode_event(event.encode())  # what a consumer will see
        assert decoded.source == "dripstream-api"
        return decoded


@pytest.fixture
def sink() -> Sink:
    return Sink()


@pytest.fixture
async def client(
    output_file: Path, sink: Sink, definitions: dict[str, Any]
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    models, errors = load_file(output_file)
    assert errors == []
    app = make_app(sink, FileReadModels(models), default_account=definitions["account"])
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


# --- checking answers against the document ------------------------------------------------


def _as_json_schema(node: Any) -> Any:
    """OpenAPI 3.0's `nullable` as JSON Schema's `type: [T, "null"]`."""
    if isinstance(node, list):
        return [_as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable") is True and "type" in node:
        out["type"] = [node["type"], "null"]
    return out


def _response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    operation = DOCUMENT["paths"][path][method]
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    return {
        **_as_json_schema(schema),
        "components": _as_json_schema(DOCUMENT["components"]),
    }


async def call(
    client: TestClient[web.Request, web.Application],
    method: str,
    url: str,
    template: str,
    status: int,
    **kwargs: Any,
) -> Any:
    """Make the request, check the status, validate the JSON against the documented schema."""
    response = await client.request(method.upper(), url, **kwargs)
    body = await response.json()
    assert response.status == status, body
    jsonschema.validate(body, _response_schema(template, method, status))
    return body


WELCOME_SEQUENCE = "/sequences/{sequence_id}"


# --- OpenAPI --------------------------------------------------------------------------------


async def test_the_openapi_document_describes_every_route(
    client: TestClient[web.Request, web.Application],
) -> None:
    response = await client.get("/openapi.json")
    assert response.status == 200
    served = await response.json()
    assert served == DOCUMENT
    assert served["openapi"].startswith("3.0.")
    assert {"title", "version"} <= served["info"].keys()
    app = client.app
    assert app is not None
    routes = {
        (route.resource.canonical, route.method.lower())
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {
        (path, method)
        for path, item in served["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert routes == documented
    for path, item in served["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert operation["responses"], (path, method)
            for reply in operation["responses"].values():
                for media in reply.get("content", {}).values():
                    ref = media["schema"]["$ref"].rsplit("/", 1)[1]
                    assert ref in served["components"]["schemas"]
    for schema in served["components"]["schemas"].values():
        jsonschema.Draft7Validator.check_schema(_as_json_schema(schema))


# --- reads ----------------------------------------------------------------------------------


async def test_get_sequences_is_the_sequences_list(
    client: TestClient[web.Request, web.Application], output_file: Path
) -> None:
    rows = await call(client, "get", "/sequences", "/sequences", 200)
    models, _ = load_file(output_file)
    assert rows == [row.to_json() for row in models.sequences.rows()]
    assert [row["id"] for row in rows] == ["welcome"]
    assert rows[0]["contacts"] == 1


async def test_history_with_filters_and_paging(
    client: TestClient[web.Request, web.Application],
) -> None:
    template = "/sequences/{sequence_id}/history"
    page = await call(client, "get", "/sequences/welcome/history", template, 200)
    assert page["sequence_id"] == "welcome"
    assert page["total"] == len(page["rows"]) > 3
    times = [row["time"] for row in page["rows"]]
    assert times == sorted(times, reverse=True)

    limited = await call(
        client,
        "get",
        "/sequences/welcome/history",
        template,
        200,
        params={"limit": "2", "offset": "1", "timezone": "America/Denver"},
    )
    assert limited["total"] == page["total"]
    assert limited["rows"] == page["rows"][1:3]

    enrolled = await call(
        client,
        "get",
        "/sequences/welcome/history",
        template,
        200,
        params={"type": "enrollment", "search": "(720) 555-0142", "timeframe": "all_time"},
    )
    assert enrolled["total"] >= 1
    assert {row["type"] for row in enrolled["rows"]} <= {
        "enrollment.enrolled",
        "enrollment.rejected",
    }
    assert {row["contact_id"] for row in enrolled["rows"]} == {"c-100"}

    later = await call(
        client,
        "get",
        "/sequences/welcome/history",
        template,
        200,
        params={"timeframe": "today", "now": "2030-01-01T12:00:00Z"},
    )
    assert later["total"] == 0


async def test_get_a_sequence_is_sequences_show_json(
    client: TestClient[web.Request, web.Application], output_file: Path
) -> None:
    shown = await call(client, "get", "/sequences/welcome", WELCOME_SEQUENCE, 200)

    models, _ = load_file(output_file)
    assert shown == detail_of(models.sequences.catalog, models.sequences.book, "welcome").to_json()
    assert (shown["contacts"], shown["remaining_tasks"]) == (1, 2)
    assert [step["id"] for step in shown["definition"]["steps"]] == ["hello", "mail", "call", "tag"]
    assert shown["definition"]["schedule"]["open"] == "08:30"
    assert shown["definition"]["triggers"] == [
        {"type": "contact_tagged", "tags": ["web-lead"], "action": "enroll"}
    ]


async def test_a_sequences_contacts_are_its_enrollments_paged_with_the_total(
    client: TestClient[web.Request, web.Application],
) -> None:
    template = "/sequences/{sequence_id}/contacts"
    url = "/sequences/welcome/contacts"

    active = await call(client, "get", url, template, 200)
    everyone = await call(client, "get", url, template, 200, params={"all": "true"})
    second = await call(
        client, "get", url, template, 200, params={"all": "true", "limit": "1", "offset": "1"}
    )
    explicit = await call(client, "get", url, template, 200, params={"all": "false"})

    assert [(r["contact_id"], r["state"]) for r in active["rows"]] == [("c-100", "active")]
    assert active["rows"][0]["next_step_id"] == "call"
    assert (active["total"], explicit) == (1, active)
    assert [(r["contact_id"], r["state"], r["reason"]) for r in everyone["rows"]] == [
        ("c-100", "active", None),
        ("c-101", "disenrolled", "responded"),
    ]
    assert second == {**everyone, "rows": everyone["rows"][1:]}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"all": "yes"}, "all"),
        ({"limit": "10001"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"state": "active"}, "state"),
    ],
)
async def test_a_bad_contacts_parameter_is_named(
    client: TestClient[web.Request, web.Application], params: dict[str, str], field: str
) -> None:
    template = "/sequences/{sequence_id}/contacts"
    body = await call(client, "get", "/sequences/welcome/contacts", template, 400, params=params)
    assert body["field"] == field


@pytest.fixture
async def drip_client(
    tmp_path: Path, sink: Sink, request: pytest.FixtureRequest
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    """The API over the drip scenario (tests/projections/drip_scenario.py): a deleted
    sequence, and with `indirect` True, a stream without definitions."""
    events = drip_outputs()
    if getattr(request, "param", False):
        events = without_definitions(events)
    models, _ = load_file(write(events, tmp_path / "drip.jsonl"))
    async with TestClient(TestServer(make_app(sink, FileReadModels(models)))) as test_client:
        yield test_client


@pytest.mark.parametrize(
    ("sequence_id", "error"),
    [("gone", "unknown sequence 'gone': deleted"), ("nope", "unknown sequence 'nope'")],
)
async def test_a_deleted_sequence_is_404_as_an_unknown_one(
    drip_client: TestClient[web.Request, web.Application], sequence_id: str, error: str
) -> None:
    for url, template in (
        (f"/sequences/{sequence_id}", WELCOME_SEQUENCE),
        (f"/sequences/{sequence_id}/contacts", "/sequences/{sequence_id}/contacts"),
    ):
        body = await call(drip_client, "get", url, template, 404)
        assert (body["error"], body["field"]) == (error, "sequence_id")
    listed = await call(drip_client, "get", "/sequences", "/sequences", 200)
    assert [row["id"] for row in listed] == ["drip", "idle"]


@pytest.mark.parametrize("drip_client", [True], indirect=True)
async def test_a_sequence_from_a_stream_without_its_definition_has_a_null_one(
    drip_client: TestClient[web.Request, web.Application],
) -> None:
    shown = await call(drip_client, "get", "/sequences/drip", WELCOME_SEQUENCE, 200)
    assert shown["definition"] is None
    assert (shown["steps"], shown["contacts"]) == (3, 2)


async def test_contact_view(client: TestClient[web.Request, web.Application]) -> None:
    contact = await call(client, "get", "/contacts/c-100", "/contacts/{contact_id}", 200)
    assert contact["contact_id"] == "c-100"
    assert contact["phone"] == "+17205550142"
    assert [e["sequence_id"] for e in contact["enrollments"]] == ["welcome"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"timeframe": "last_year"}, "timeframe"),
        ({"limit": "ten"}, "limit"),
        ({"offset": "-1"}, "offset"),
        ({"type": "nonsense"}, "type"),
        ({"now": "yesterday"}, "now"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        # what once answered 500: a limit past bigint, a moment whose month or day would
        # leave the calendar, a NUL the database refuses, and a digit that is not ASCII
        ({"limit": "99999999999999999999999"}, "limit"),
        ({"now": "0001-01-01T00:00:00Z", "timeframe": "today"}, "now"),
        ({"now": "9999-12-31T23:59:59Z", "timeframe": "last_month"}, "now"),
        ({"search": "a\x00b"}, "search"),
        ({"limit": "\uff11"}, "limit"),
    ],
)
async def test_a_bad_history_parameter_is_named(
    client: TestClient[web.Request, web.Application], params: dict[str, str], field: str
) -> None:
    body = await call(
        client,
        "get",
        "/sequences/welcome/history",
        "/sequences/{sequence_id}/history",
        400,
        params=params,
    )
    assert body["field"] == field


async def test_unknown_sequence_and_contact_are_404(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    history = "/sequences/{sequence_id}/history"
    body = await call(client, "get", "/sequences/nope/history", history, 404)
    assert body["field"] == "sequence_id"
    body = await call(client, "get", "/contacts/nobody", "/contacts/{contact_id}", 404)
    assert body["field"] == "contact_id"
    await call(client, "delete", "/sequences/nope", WELCOME_SEQUENCE, 404)
    await call(
        client,
        "post",
        "/sequences/nope/enrollments",
        "/sequences/{sequence_id}/enrollments",
        404,
        json={"tag": "hot"},
    )
    await call(
        client,
        "post",
        "/sequences/nope/copy",
        "/sequences/{sequence_id}/copy",
        404,
        json={"new_id": "x"},
    )
    assert sink.sent == []


@pytest.mark.parametrize("params", [{"limit": "--1"}, {"offset": "--3"}, {"limit": "1-"}])
async def test_a_malformed_number_is_400_naming_it(
    client: TestClient[web.Request, web.Application], params: dict[str, str]
) -> None:
    history = "/sequences/{sequence_id}/history"
    body = await call(client, "get", "/sequences/welcome/history", history, 400, params=params)
    assert body["field"] == next(iter(params))


async def test_a_limit_past_the_page_cap_names_the_cap(
    client: TestClient[web.Request, web.Application],
) -> None:
    history = "/sequences/{sequence_id}/history"
    params = {"limit": "99999999999999999999"}
    body = await call(client, "get", "/sequences/welcome/history", history, 400, params=params)
    assert body["error"] == "must be at most 10000: page with offset"


async def test_a_method_a_route_does_not_take_is_405_with_allow(
    client: TestClient[web.Request, web.Application],
) -> None:
    answer = await client.patch("/sequences/welcome", json={})
    assert answer.status == 405
    assert {method.strip() for method in answer.headers["Allow"].split(",")} >= {
        "GET",
        "PUT",
        "DELETE",
    }


async def test_a_copy_with_a_key_it_does_not_take_is_refused_by_name(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    body = await call(
        client,
        "post",
        "/sequences/welcome/copy",
        "/sequences/{sequence_id}/copy",
        422,
        json={"new_id": "welcome-2", "name": "Welcome again"},
    )
    assert body["field"] == "name"
    assert sink.sent == []


async def test_a_nul_deep_in_a_body_is_refused_where_it_is(
    client: TestClient[web.Request, web.Application], definitions: dict[str, Any], sink: Sink
) -> None:
    sequence = _new_sequence(definitions, "nul-inside")
    sequence["steps"][0]["text"] = "Hi\u0000"
    body = await call(client, "post", "/sequences", "/sequences", 422, json=sequence)
    assert body["field"] == "steps[0].text"
    assert sink.sent == []


# --- commands -------------------------------------------------------------------------------


def _new_sequence(definitions: dict[str, Any], sequence_id: str) -> dict[str, Any]:
    sequence: dict[str, Any] = copy.deepcopy(definitions["sequences"][0])
    sequence.pop("created", None)
    sequence["id"] = sequence_id
    sequence.pop("intake_address", None)
    return sequence


async def test_post_sequence_publishes_sequence_applied(
    client: TestClient[web.Request, web.Application], sink: Sink, definitions: dict[str, Any]
) -> None:
    sequence = _new_sequence(definitions, "nurture")
    body = await call(client, "post", "/sequences", "/sequences", 201, json=sequence)
    event = sink.only()
    assert body == {"command_id": event.id, "sequence_id": "nurture", "warnings": []}
    assert event.type == "sequence.applied"
    assert event.subject == "sequences"
    assert [s["id"] for s in event.data["sequences"]] == ["nurture"]
    assert event.data["account"]["timezone"] == definitions["account"]["timezone"]

    # Now known to this API: a second POST conflicts, enrolling into it works.
    again = await call(client, "post", "/sequences", "/sequences", 409, json=sequence)
    assert again["field"] == "id"
    await call(
        client,
        "post",
        "/sequences/nurture/enrollments",
        "/sequences/{sequence_id}/enrollments",
        202,
        json={"contact_ids": ["c-100"]},
    )


async def test_a_definition_is_answered_with_the_warnings_sequences_apply_gives(
    client: TestClient[web.Request, web.Application], sink: Sink, definitions: dict[str, Any]
) -> None:
    # given a typo'd setting and a shortcode the engine does not know
    sequence = _new_sequence(definitions, "typo")
    sequence["remove_on_respons"] = False
    sequence["steps"][0]["text"] = "Hi [Frist]"
    # when it is created
    body = await call(client, "post", "/sequences", "/sequences", 201, json=sequence)
    # then it is published, and the author is told what will not do what they meant
    assert len(sink.sent) == 1
    assert body["warnings"] == [
        "sequence typo: remove_on_respons: unknown key, ignored",
        "sequence 'typo' is invalid, nobody is enrolled in it:"
        f" step {sequence['steps'][0]['id']} ({sequence['steps'][0]['type']}):"
        " unknown shortcode [Frist] in text",
    ]


async def test_a_definition_is_answered_naming_a_ring_group_member_it_cannot_reach(
    client: TestClient[web.Request, web.Application], sink: Sink, definitions: dict[str, Any]
) -> None:
    # given a texted ring group with a member who has only an e-mail
    sequence = _new_sequence(definitions, "desk")
    sequence["account"] = {
        "users": {
            "u-1": {"name": "Ann", "phone": "+12125550001"},
            "u-2": {"name": "Bo", "email": "bo@example.com"},
        },
        "ring_groups": {"rg-desk": ["u-1", "u-2"]},
    }
    sequence["steps"] = [{"id": "s1", "type": "sms_ring_group", "ring_group": "rg-desk",
                          "text": "New lead"}]  # fmt: skip
    # when it is created
    body = await call(client, "post", "/sequences", "/sequences", 201, json=sequence)
    # then it runs, and the author is told who will not hear
    assert len(sink.sent) == 1
    assert body["warnings"] == [
        "sequence 'desk': ring group 'rg-desk' member 'u-2' has no phone,"
        " so step s1 (sms_ring_group) will not reach them"
    ]


async def test_post_sequence_with_its_own_account(
    client: TestClient[web.Request, web.Application], sink: Sink, definitions: dict[str, Any]
) -> None:
    sequence = _new_sequence(definitions, "other")
    sequence["account"] = {"timezone": "Europe/Paris", "opt_out_phrase": "STOP to stop."}
    await call(client, "post", "/sequences", "/sequences", 201, json=sequence)
    assert sink.only().data["account"]["timezone"] == "Europe/Paris"


async def test_put_replaces_and_the_ids_must_match(
    client: TestClient[web.Request, web.Application], sink: Sink, definitions: dict[str, Any]
) -> None:
    sequence = _new_sequence(definitions, "welcome")
    sequence["name"] = "Welcome, renamed"
    body = await call(client, "put", "/sequences/welcome", WELCOME_SEQUENCE, 200, json=sequence)
    event = sink.only()
    assert body == {"command_id": event.id, "sequence_id": "welcome", "warnings": []}
    assert event.data["sequences"][0]["name"] == "Welcome, renamed"

    refused = await call(client, "put", "/sequences/other", WELCOME_SEQUENCE, 422, json=sequence)
    assert refused["field"] == "id"
    assert len(sink.sent) == 1


async def test_a_refused_definition_names_the_key_and_the_sequence(
    client: TestClient[web.Request, web.Application], sink: Sink, definitions: dict[str, Any]
) -> None:
    sequence = _new_sequence(definitions, "broken")
    del sequence["steps"][1]["subject"]
    body = await call(client, "post", "/sequences", "/sequences", 422, json=sequence)
    assert body["field"] == "steps[1].subject"
    assert body["sequence_id"] == "broken"

    sequence = _new_sequence(definitions, "broken")
    sequence["account"] = {"timezone": "Nowhere/Land", "opt_out_phrase": "STOP"}
    body = await call(client, "post", "/sequences", "/sequences", 422, json=sequence)
    assert body["field"] == "account.timezone"
    assert sink.sent == []


async def test_without_any_account_a_definition_keeps_the_account_in_force(
    output_file: Path, sink: Sink, definitions: dict[str, Any]
) -> None:
    # given a server with no default account
    app = make_app(sink, FileReadModels.load(output_file))
    async with TestClient(TestServer(app)) as bare:
        # when a sequence is posted without one
        await call(
            bare, "post", "/sequences", "/sequences", 201, json=_new_sequence(definitions, "x")
        )
    # then it is published without an account, as a sequence file without one is
    published = sink.only()
    assert published.type == "sequence.applied"
    assert "account" not in published.data
    assert [s["id"] for s in published.data["sequences"]] == ["x"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [(b"{not json", "body"), (b"[1, 2]", "body")],
)
async def test_invalid_json_is_400(
    client: TestClient[web.Request, web.Application], sink: Sink, raw: bytes, field: str
) -> None:
    for method, url, template in [
        ("post", "/sequences", "/sequences"),
        ("put", "/sequences/welcome", WELCOME_SEQUENCE),
        ("post", "/sequences/welcome/copy", "/sequences/{sequence_id}/copy"),
        ("post", "/sequences/welcome/enrollments", "/sequences/{sequence_id}/enrollments"),
    ]:
        body = await call(
            client,
            method,
            url,
            template,
            400,
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        assert body["field"] == field
    assert sink.sent == []


async def test_delete_publishes_delete_requested(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    body = await call(client, "delete", "/sequences/welcome", WELCOME_SEQUENCE, 202)
    event = sink.only()
    assert body == {"command_id": event.id, "sequence_id": "welcome"}
    assert event.type == "sequence.delete_requested"
    assert event.data == {"sequence_id": "welcome"}
    # Deleted as far as this API knows.
    await call(client, "delete", "/sequences/welcome", WELCOME_SEQUENCE, 404)


async def test_copy_publishes_copy_requested(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    template = "/sequences/{sequence_id}/copy"
    body = await call(
        client,
        "post",
        "/sequences/welcome/copy",
        template,
        201,
        json={"new_id": "welcome-2", "new_name": "Welcome again"},
    )
    event = sink.only()
    assert body == {"command_id": event.id, "sequence_id": "welcome-2"}
    assert event.type == "sequence.copy_requested"
    assert event.data == {
        "sequence_id": "welcome",
        "new_id": "welcome-2",
        "new_name": "Welcome again",
    }
    missing = await call(client, "post", "/sequences/welcome/copy", template, 422, json={})
    assert missing["field"] == "new_id"
    taken = await call(
        client, "post", "/sequences/welcome/copy", template, 409, json={"new_id": "welcome"}
    )
    assert taken["field"] == "new_id"
    assert len(sink.sent) == 1


@pytest.mark.parametrize(
    ("body", "subject"),
    [
        ({"contact_ids": ["c-100"]}, "c-100"),
        ({"contact_ids": ["c-100", "c-200"]}, "sequence:welcome"),
        ({"tag": "hot"}, "sequence:welcome"),
        ({"line_id": "line-main"}, "sequence:welcome"),
        ({"contact_group": ["c-1", {"tag": "vip"}]}, "sequence:welcome"),
    ],
)
async def test_enrollment_publishes_enrollment_requested(
    client: TestClient[web.Request, web.Application],
    sink: Sink,
    body: dict[str, Any],
    subject: str,
) -> None:
    answer = await call(
        client,
        "post",
        "/sequences/welcome/enrollments",
        "/sequences/{sequence_id}/enrollments",
        202,
        json=body,
    )
    event = sink.only()
    assert answer == {"command_id": event.id, "sequence_id": "welcome"}
    assert event.type == "enrollment.requested"
    assert event.subject == subject
    assert event.data == {"sequence_id": "welcome", **body}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"contact_ids": []}, "contact_ids"),
        ({"tag": ""}, "tag"),
        ({"contact_group": [{"tag": "a", "line_id": "b"}]}, "contact_group[0]"),
        ({"contact_ids": ["c-1"], "sequence_id": "other"}, "sequence_id"),
    ],
)
async def test_a_bad_enrollment_names_the_field(
    client: TestClient[web.Request, web.Application],
    sink: Sink,
    body: dict[str, Any],
    field: str,
) -> None:
    answer = await call(
        client,
        "post",
        "/sequences/welcome/enrollments",
        "/sequences/{sequence_id}/enrollments",
        422,
        json=body,
    )
    assert answer["field"] == field
    assert sink.sent == []


async def test_an_account_that_is_not_an_object_is_named(
    client: TestClient[web.Request, web.Application], sink: Sink, definitions: dict[str, Any]
) -> None:
    sequence = {**_new_sequence(definitions, "odd"), "account": 5}
    body = await call(client, "post", "/sequences", "/sequences", 422, json=sequence)
    assert body["field"] == "account"
    assert sink.sent == []


async def test_a_copy_to_an_id_a_definition_could_not_have_is_refused(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    for bad in ("has space", "x/y", "x:y"):
        body = await call(
            client,
            "post",
            "/sequences/welcome/copy",
            "/sequences/{sequence_id}/copy",
            422,
            json={"new_id": bad},
        )
        assert body["field"] == "new_id"
    assert sink.sent == []


async def test_an_idempotency_key_is_the_commands_id(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    # a retried request carries the same key: it gets the first answer and publishes
    # nothing more; the command's id holds the key (and the request's fingerprint), which
    # the engine decides once (tests/engine: a repeated identity is skipped)
    answers = [
        await call(
            client,
            "post",
            "/sequences/welcome/enrollments",
            "/sequences/{sequence_id}/enrollments",
            202,
            json={"contact_ids": ["c-100"]},
            headers={"Idempotency-Key": "retry-7"},
        )
        for _ in range(2)
    ]
    assert answers[0] == answers[1]
    [(_, sent)] = sink.sent
    assert sent.id.startswith("api-key-retry-7-")
    assert answers[0]["command_id"] == sent.id


async def test_a_create_retried_with_its_key_gets_its_first_answer_not_exists(
    client: TestClient[web.Request, web.Application], sink: Sink, definitions: dict[str, Any]
) -> None:
    body = _new_sequence(definitions, "retried")
    first = await client.post("/sequences", json=body, headers={"Idempotency-Key": "c-1"})
    again = await client.post("/sequences", json=body, headers={"Idempotency-Key": "c-1"})
    assert (first.status, again.status) == (201, 201)
    assert await first.json() == await again.json()
    assert len(sink.sent) == 1


async def test_a_retry_serialised_another_way_is_the_same_request(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    headers = {"Idempotency-Key": "spaced", "Content-Type": "application/json"}
    url = "/sequences/welcome/enrollments"
    first = await client.post(url, data=b'{"contact_ids":["c-1"],"tag":"hot"}', headers=headers)
    again = await client.post(
        url, data=b'{"tag": "hot", "contact_ids": [ "c-1" ]}', headers=headers
    )
    assert (first.status, again.status) == (202, 202)
    assert await first.json() == await again.json()
    assert len(sink.sent) == 1


async def test_creates_of_one_id_at_once_get_one_201_and_the_rest_409(
    output_file: Path, definitions: dict[str, Any]
) -> None:
    # given a broker slow to take each command, so the requests overlap
    sent: list[CloudEvent] = []

    async def slow(_topic: str, event: CloudEvent) -> None:
        await asyncio.sleep(0.05)
        sent.append(event)

    models, _ = load_file(output_file)
    async with TestClient(TestServer(make_app(slow, FileReadModels(models)))) as client:
        # when ten clients create the same id at once, each with its own name
        bodies = [{**_new_sequence(definitions, "race"), "name": f"Race {n}"} for n in range(10)]
        answers = await asyncio.gather(*(client.post("/sequences", json=b) for b in bodies))
    # then one is created, and the others are told it exists, not that they created it
    assert sorted(a.status for a in answers) == [201] + [409] * 9
    assert len(sent) == 1


async def test_creates_of_other_ids_do_not_wait_for_each_other(
    output_file: Path, definitions: dict[str, Any]
) -> None:
    # given a broker that takes each command only when told to
    release = asyncio.Event()
    handed: list[CloudEvent] = []

    async def held(_topic: str, event: CloudEvent) -> None:
        handed.append(event)
        await release.wait()

    models, _ = load_file(output_file)
    async with TestClient(TestServer(make_app(held, FileReadModels(models)))) as client:
        # when two creates of different ids are sent together
        both = [client.post("/sequences", json=_new_sequence(definitions, i)) for i in ("a", "b")]
        pending = asyncio.gather(*both)
        await asyncio.sleep(0.2)
        # then both were handed to the broker at once: neither waited for the other's answer
        handed_before_release = len(handed)
        release.set()
        answers = await pending
    assert [a.status for a in answers] == [201, 201]
    assert handed_before_release == 2


async def test_a_body_nested_too_deep_to_fingerprint_as_json_is_no_500(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    nested = "[" * 300 + "]" * 300
    body = f'{{"tag": "x", "x": {nested}}}'.encode()
    response = await client.post(
        "/sequences/welcome/enrollments",
        data=body,
        headers={"Idempotency-Key": "deep", "Content-Type": "application/json"},
    )
    assert response.status == 422, await response.text()
    assert sink.sent == []


async def test_a_key_sent_again_with_another_request_is_refused_and_nothing_sent(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    headers = {"Idempotency-Key": "k-9"}
    path = "/sequences/welcome/enrollments"
    first = await client.post(path, json={"contact_ids": ["c-1"]}, headers=headers)
    other = await client.post(path, json={"contact_ids": ["c-2"]}, headers=headers)
    assert first.status == 202
    assert other.status == 422
    body = await other.json()
    assert body["field"] == "Idempotency-Key"
    assert "another request" in body["error"]
    assert [event.data["contact_ids"] for _, event in sink.sent] == [["c-1"]]


async def test_two_requests_at_once_under_one_key_give_one_command(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    # given two different requests sent together under one key (a client's bug, or a
    # retry racing the first attempt)
    headers = {"Idempotency-Key": "k-race"}
    path = "/sequences/welcome/enrollments"
    first, other = await asyncio.gather(
        client.post(path, json={"contact_ids": ["c-1"]}, headers=headers),
        client.post(path, json={"contact_ids": ["c-2"]}, headers=headers),
    )
    # then the second waits for the first, and is refused
    assert (first.status, other.status) == (202, 422)
    assert [event.data["contact_ids"] for _, event in sink.sent] == [["c-1"]]


async def test_over_a_file_the_api_only_reads(output_file: Path) -> None:
    models, _ = load_file(output_file)
    app = make_app(
        read_only([output_file]), FileReadModels(models), read_only=read_only_reason([output_file])
    )
    async with TestClient(TestServer(app)) as reader:
        answer = await reader.post("/sequences/welcome/enrollments", json={"tag": "hot"})
        body = await answer.json()
        # a body that would be refused (422) live is still no command here: 405
        invalid = await reader.post("/sequences", json={"id": "x"})
        listed = await reader.get("/sequences")
    assert answer.status == 405
    # the same with a read token set, which would otherwise say commands need an admin token
    guarded = make_app(
        read_only([output_file]),
        FileReadModels(models),
        read_only=read_only_reason([output_file]),
        tokens=Tokens(read="r"),
    )
    async with TestClient(TestServer(guarded)) as reader:
        refused = await reader.post("/sequences", json={"id": "x"})
    assert refused.status == 405
    # a path that only takes commands takes nothing here; one with reads, its reads
    assert answer.headers["Allow"] == ""
    assert invalid.headers["Allow"] == "GET, HEAD"
    assert body["error"].startswith("read-only: this API serves the file")
    assert invalid.status == 405
    assert listed.status == 200


async def test_over_a_file_a_path_or_method_no_route_takes_is_told_so(output_file: Path) -> None:
    models, _ = load_file(output_file)
    app = make_app(
        read_only([output_file]), FileReadModels(models), read_only=read_only_reason([output_file])
    )
    async with TestClient(TestServer(app)) as reader:
        nowhere = await reader.post("/no/such/route")
        asked = await reader.get("/no/such/route", params={"x": "1"})
        patched = await reader.patch("/sequences")
        posted = await reader.post("/openapi.json")
    # then no such path is 404 (not "read-only", not a query parameter refused)
    assert (nowhere.status, asked.status) == (404, 404)
    # and a method a path does not take names the reads it does
    assert (patched.status, patched.headers["Allow"]) == (405, "GET, HEAD")
    assert (posted.status, posted.headers["Allow"]) == (405, "GET, HEAD")


async def test_over_a_file_a_command_without_a_token_learns_nothing_of_the_files(
    output_file: Path,
) -> None:
    models, _ = load_file(output_file)
    app = make_app(
        read_only([output_file]),
        FileReadModels(models),
        read_only=read_only_reason([output_file]),
        tokens=Tokens(admin="a", read="r"),
    )
    async with TestClient(TestServer(app)) as stranger:
        answer = await stranger.delete("/sequences/welcome")
        said = await answer.text()
    assert answer.status == 401
    assert str(output_file) not in said


async def test_an_idempotency_key_of_the_wrong_length_is_refused_first(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    # given keys of 201 characters and of blanks, on requests that would be 404 and 409
    long_key = {"Idempotency-Key": "k" * 201}
    unknown = await client.post("/sequences/nope/enrollments", json={"tag": "a"}, headers=long_key)
    taken = await client.post(
        "/sequences", json={"id": "welcome"}, headers={"Idempotency-Key": " "}
    )
    # then both are told of the key, and nothing is sent
    for answer in (unknown, taken):
        body = await answer.json()
        assert (answer.status, body["field"]) == (400, "Idempotency-Key")
    assert sink.sent == []


def test_the_documents_paging_limits_are_the_ones_the_api_keeps() -> None:
    document = openapi_document()
    history = document["paths"]["/sequences/{sequence_id}/history"]["get"]["parameters"]
    offset = next(p for p in history if p["name"] == "offset")
    assert offset["schema"]["maximum"] == http_api.MAX_COUNT
    with pytest.raises(ApiError):
        history_query("w", {"offset": str(http_api.MAX_COUNT + 1)})


def test_history_pages_by_default_and_never_returns_more_than_the_cap() -> None:
    # a history can hold millions of rows: one request once took 17 s for 21 MB
    assert history_query("w", {}).limit == 100
    assert history_query("w", {"limit": "5"}).limit == 5
    assert history_query("w", {"limit": "10000"}).limit == 10_000
    with pytest.raises(ApiError) as refused:
        history_query("w", {"limit": "10001"})
    assert refused.value.status == 400
    assert refused.value.field == "limit"


async def test_an_empty_contact_id_is_named_as_the_bodys_field(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    answer = await client.post("/sequences/welcome/enrollments", json={"contact_ids": [""]})
    body = await answer.json()
    assert answer.status == 422
    assert body["field"] == "contact_ids[0]"
    assert sink.sent == []


async def test_a_body_over_the_limit_and_a_reused_key_get_documented_answers(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    enroll = "/sequences/welcome/enrollments"
    template = "/sequences/{sequence_id}/enrollments"
    huge = {"contact_ids": ["c-" + "9" * (2**20)]}
    refused = await call(client, "post", enroll, template, 413, json=huge)
    assert refused == {"error": "the body is over 1,048,576 bytes", "field": "body"}
    headers = {"Idempotency-Key": "k-413"}
    await call(client, "post", enroll, template, 202, json={"tag": "a"}, headers=headers)
    await call(client, "post", enroll, template, 422, json={"tag": "b"}, headers=headers)
    assert len(sink.sent) == 1


async def test_a_body_that_says_it_is_not_json_is_415_and_nothing_sent(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    # curl -d sends form encoding unless told otherwise: that body is not taken as JSON
    body = await call(
        client,
        "post",
        "/sequences/welcome/enrollments",
        "/sequences/{sequence_id}/enrollments",
        415,
        data=b'{"tag": "hot"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert body["field"] == "Content-Type"
    assert "application/x-www-form-urlencoded" in body["error"]
    assert sink.sent == []


async def test_a_body_without_a_content_type_is_refused(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    # A page of another site may send a body with no type without a browser's preflight:
    # demanding JSON keeps it from sending commands to a loopback API without tokens.
    response = await client.post(
        "/sequences/welcome/enrollments",
        data=b'{"tag": "hot"}',
        skip_auto_headers=["Content-Type"],
    )
    assert response.status == 415
    assert (await response.json()) == {
        "error": "is required: application/json",
        "field": "Content-Type",
    }
    assert sink.sent == []


@pytest.mark.parametrize(
    "content_type", ["application/json; charset=utf-8", "application/cloudevents+json"]
)
async def test_a_json_body_is_taken(
    client: TestClient[web.Request, web.Application], sink: Sink, content_type: str
) -> None:
    headers = {"Content-Type": content_type}
    await call(
        client,
        "post",
        "/sequences/welcome/enrollments",
        "/sequences/{sequence_id}/enrollments",
        202,
        data=b'{"tag": "hot"}',
        headers=headers,
        skip_auto_headers=["Content-Type"],
    )
    assert sink.only().data["tag"] == "hot"


@pytest.mark.parametrize(
    ("method", "url", "template", "parameter"),
    [
        ("get", "/sequences/welcome/history", "/sequences/{sequence_id}/history", "serach"),
        ("get", "/sequences", "/sequences", "status"),
        ("get", "/contacts/c-1", "/contacts/{contact_id}", "fields"),
        ("get", "/sequences/welcome", WELCOME_SEQUENCE, "fields"),
        ("delete", "/sequences/welcome", WELCOME_SEQUENCE, "force"),
    ],
)
async def test_an_unknown_query_parameter_is_named_not_passed_over(
    client: TestClient[web.Request, web.Application],
    sink: Sink,
    method: str,
    url: str,
    template: str,
    parameter: str,
) -> None:
    body = await call(client, method, url, template, 400, params={parameter: "x"})
    assert body["field"] == parameter
    assert sink.sent == []


@pytest.mark.parametrize(
    ("body", "subject"),
    [({"contact_ids": ["c-1"]}, "c-1"), ({"tag": "hot"}, "sequence:welcome")],
)
async def test_a_removal_publishes_enrollment_removal_requested(
    client: TestClient[web.Request, web.Application],
    sink: Sink,
    body: dict[str, Any],
    subject: str,
) -> None:
    answer = await call(
        client,
        "post",
        "/sequences/welcome/removals",
        "/sequences/{sequence_id}/removals",
        202,
        json=body,
    )
    event = sink.only()
    assert answer == {"command_id": event.id, "sequence_id": "welcome"}
    assert (event.type, event.subject) == ("enrollment.removal_requested", subject)
    assert event.data == {"sequence_id": "welcome", **body}


async def test_a_removal_without_contacts_or_from_an_unknown_sequence_is_refused(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    template = "/sequences/{sequence_id}/removals"
    body = await call(client, "post", "/sequences/welcome/removals", template, 422, json={})
    assert body["field"] == "body"
    await call(client, "post", "/sequences/nope/removals", template, 404, json={"tag": "hot"})
    assert sink.sent == []


async def test_what_this_process_published_counts_only_until_the_read_models_can_say(
    client: TestClient[web.Request, web.Application],
    definitions: dict[str, Any],
) -> None:
    # given a sequence this process just created, and one it just deleted
    created = _new_sequence(definitions, "fresh")
    await call(client, "post", "/sequences", "/sequences", 201, json=created)
    await call(client, "delete", "/sequences/welcome", WELCOME_SEQUENCE, 202)
    enrollments = "/sequences/{sequence_id}/enrollments"
    # then at first its own commands are what it goes by (the read models lag behind)
    await call(client, "post", "/sequences/fresh/enrollments", enrollments, 202, json={"tag": "t"})
    await call(
        client, "post", "/sequences/welcome/enrollments", enrollments, 404, json={"tag": "t"}
    )
    # when the moment has passed (the engine may have refused them, or another changed them)
    state = client.app[STATE]
    for sequence_id, (defined, at) in list(state.published.items()):
        state.published[sequence_id] = (defined, at - PUBLISHED_KEPT_SECONDS - 1)
    # then the read models say what is so: `fresh` never reached them, `welcome` is there
    await call(client, "post", "/sequences/fresh/enrollments", enrollments, 404, json={"tag": "t"})
    await call(
        client, "post", "/sequences/welcome/enrollments", enrollments, 202, json={"tag": "t"}
    )


async def test_a_delete_with_a_body_that_is_not_json_is_415_and_nothing_sent(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    body = await call(
        client,
        "delete",
        "/sequences/welcome",
        WELCOME_SEQUENCE,
        415,
        data=b"please delete",
        headers={"Content-Type": "text/plain"},
    )
    assert body["field"] == "Content-Type"
    assert sink.sent == []


@pytest.mark.parametrize("path", ["enrollments", "removals"])
async def test_a_misspelt_key_in_a_request_naming_contacts_is_named_not_passed_over(
    client: TestClient[web.Request, web.Application], sink: Sink, path: str
) -> None:
    body = await call(
        client,
        "post",
        f"/sequences/welcome/{path}",
        f"/sequences/{{sequence_id}}/{path}",
        422,
        json={"contact_ids": ["c-1"], "tags": "x"},
    )
    assert body["field"] == "tags"
    assert sink.sent == []


def test_read_models_of_several_files_are_those_of_the_files_joined(
    output_file: Path, tmp_path: Path
) -> None:
    # given an output stream split in two files
    lines = output_file.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    # when both are loaded, in order
    both = FileReadModels.load(first, second)
    whole = FileReadModels.load(output_file)
    # then the API answers as for the whole file
    assert both.sequences() == whole.sequences()
    assert both.history(HistoryQuery("welcome")) == whole.history(HistoryQuery("welcome"))
    assert both.sequences() != FileReadModels.load(second).sequences()


def test_a_definition_at_the_command_limit_comes_back_within_a_kafka_record() -> None:
    # given a definition as large as a command may be, all of it in the one field the
    # engine's sequence.defined carries twice (its description)
    big = sequence(description="x" * MAX_COMMAND_BYTES)
    document = validate_definition_document({"account": ACCOUNT, "sequences": [big]})
    # when the engine defines it
    outputs: list[CloudEvent] = []
    replay(document, [], outputs.extend, lambda _rejected: None)
    # then what it says fits one record the relay can publish (else: a 201, then a dead letter)
    [defined] = outputs
    assert defined.type == "sequence.defined"
    assert len(defined.encode()) + len(defined.subject.encode()) < MAX_RECORD_BYTES


async def test_a_command_too_large_for_a_kafka_record_is_refused_413(
    client: TestClient[web.Request, web.Application], sink: Sink
) -> None:
    # An enrollment naming so many contacts that it, or its copies per partition, would be
    # dead-lettered rather than decided: refused before it is published.
    ids = [f"c-{n:07d}" for n in range(30_000)]
    response = await client.post("/sequences/welcome/enrollments", json={"contact_ids": ids})
    body = await response.json()
    assert response.status == 413, body
    assert body["field"] == "body"
    assert f"at most {MAX_COMMAND_BYTES:,}" in body["error"]
    assert sink.sent == []


async def test_a_broker_that_does_not_answer_is_a_503_not_a_hang(
    output_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a publisher that never hears back from Kafka
    async def unanswered(_topic: str, _event: CloudEvent) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(http_api, "PUBLISH_TIMEOUT_SECONDS", 0.2)
    models, _ = load_file(output_file)
    async with TestClient(TestServer(make_app(unanswered, FileReadModels(models)))) as client:
        # when a command is sent
        response = await client.post("/sequences/welcome/enrollments", json={"tag": "hot"})
        body = await response.json()
    # then the client is told at once, and how to retry
    assert response.status == 503, body
    assert body["error"].startswith("cannot reach Kafka (TimeoutError)")
    assert "same Idempotency-Key" in body["error"]


def test_an_api_over_a_file_tells_its_bad_lines_and_serves_the_rest(tmp_path: Path) -> None:
    history = tmp_path / "history.jsonl"
    history.write_bytes(b"garbage\n" * 25)
    said: list[str] = []
    FileReadModels.load(history, say=said.append)
    assert said[0].startswith(f"{history}:1: not JSON")
    assert said[20:] == [f"{history}: 5 more bad lines not shown"]
