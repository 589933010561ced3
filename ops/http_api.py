"""The HTTP API: sequence commands published to the `commands` topic, the read models as JSON,
and its own OpenAPI 3.0 document at `/openapi.json`.

Commands are asynchronous: a 201/202 means the command passed the same checks the engine
applies (`decode_event`) and was published, not that the engine has decided it yet.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import itertools
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from aiohttp import web
from aiohttp.typedefs import Middleware
from aiokafka.errors import KafkaError  # type: ignore[import-untyped]

from aggregates.targets import request_subject
from ops.api_auth import AUTHORIZATION, Tokens, Unauthorized, check
from ops.api_cors import allowing
from ops.api_errors import ApiError, json_response
from ops.api_read_models import ReadModelSource
from ops.api_rules import DEFAULT_LIMIT, ENROLL_KEYS, MAX_COUNT, MAX_LIMIT
from ops.definition_files import definition_warnings
from ops.openapi import openapi_document
from projections.history import TIMEFRAMES, HistoryQuery, event_types_for
from projections.sequence_contacts import SequenceContactsQuery
from projections.state import UnknownSequenceError
from schemas.checking import NUL_REASON, first_nul
from schemas.definitions import DefinitionRejected, validate_definition_document
from schemas.envelope import CloudEvent, TimeOutOfRange, parse_event_time
from schemas.validation import EventRejected, decode_event

SOURCE = "dripstream-api"
DEFINITIONS_SUBJECT = "sequences"

Publish = Callable[[str, CloudEvent], Awaitable[None]]


@dataclass
class _State:
    publish: Publish
    read_models: ReadModelSource
    default_account: Mapping[str, Any] | None
    # Why commands are refused (405) before their bodies are read, when they are.
    read_only: str | None = None
    tokens: Tokens = field(default_factory=Tokens)
    counter: itertools.count[int] = field(default_factory=itertools.count)
    # What this process published lately: id -> (still defined, when). The read models lag
    # behind a command by a moment; past PUBLISHED_KEPT_SECONDS they say what is so (another
    # process, the CLI or the engine refusing a copy may have changed it since).
    published: dict[str, tuple[bool, float]] = field(default_factory=dict)

    def publishing(self, sequence_id: str, defined: bool) -> None:
        now = time.monotonic()
        for stale in [
            k for k, (_, at) in self.published.items() if now - at > PUBLISHED_KEPT_SECONDS
        ]:
            del self.published[stale]
        self.published[sequence_id] = (defined, now)

    def lately_published(self, sequence_id: str) -> bool | None:
        """Defined or not by this process's own command of the last moments; None if none."""
        entry = self.published.get(sequence_id)
        if entry is None:
            return None
        defined, at = entry
        if time.monotonic() - at > PUBLISHED_KEPT_SECONDS:
            del self.published[sequence_id]
            return None
        return defined

    # Idempotency-Key -> the request it came with and the answer given, for a day.
    answers: dict[str, _Answer] = field(default_factory=dict)
    # Keys whose first request is being answered: a second one waits for that answer.
    answering: dict[str, asyncio.Event] = field(default_factory=dict)
    # Held per id from a create's or copy's check that the id is free to its publishing, so
    # two requests for one id at once get one 201 and one 409 (in this process); requests
    # for other ids do not wait for it.
    new_ids: dict[str, asyncio.Lock] = field(default_factory=dict)
    # How many requests hold or wait for each of those locks: the last one out drops it.
    new_id_users: collections.Counter[str] = field(default_factory=collections.Counter)

    @contextlib.asynccontextmanager
    async def claiming(self, sequence_id: str) -> AsyncIterator[None]:
        lock = self.new_ids.setdefault(sequence_id, asyncio.Lock())
        self.new_id_users[sequence_id] += 1
        try:
            async with lock:
                yield
        finally:
            self.new_id_users[sequence_id] -= 1
            if not self.new_id_users[sequence_id]:
                del self.new_id_users[sequence_id], self.new_ids[sequence_id]

    def answered(self, key: str, now: float) -> _Answer | None:
        while self.answers:  # oldest first: drop what is past its day, or over the bound
            oldest = next(iter(self.answers))
            if (
                now - self.answers[oldest].at < ANSWERS_KEPT_SECONDS
                and len(self.answers) <= ANSWERS_KEPT
            ):
                break
            del self.answers[oldest]
        return self.answers.get(key)


@dataclass(frozen=True, slots=True)
class _Answer:
    fingerprint: str
    status: int
    body: bytes
    at: float


# Long enough for the worker and the projector to catch up with a command, short enough
# that a change made elsewhere soon counts.
PUBLISHED_KEPT_SECONDS = 30.0
# Idempotency answers: as long as the engine's own window for a repeated command id (a
# day), and a bound on how many.
ANSWERS_KEPT_SECONDS = 24 * 3600.0
ANSWERS_KEPT = 100_000


STATE: web.AppKey[_State] = web.AppKey("dripstream_api", _State)

# A body longer is not read at all (aiohttp's own limit, said here so the answer can name it).
MAX_BODY_BYTES = 1024 * 1024


def make_app(
    publish: Publish,
    read_models: ReadModelSource,
    *,
    default_account: Mapping[str, Any] | None = None,
    read_only: str | None = None,
    tokens: Tokens | None = None,
    allow_origins: tuple[str, ...] = (),
) -> web.Application:
    """The API. `default_account` is the account sent with a definition whose body has none
    (a `sequence.applied` document always carries one). `read_only`: every command is
    answered 405 with this message, whatever its body. `tokens`: who may send commands
    and read (ops/api_auth.py); none, anyone who reaches the port. `allow_origins`: the web
    pages' origins that may call it from a browser (ops/api_cors.py)."""
    middlewares: list[Middleware] = [_errors, _idempotent]
    if allow_origins:
        middlewares.insert(0, allowing(allow_origins))
    app = web.Application(middlewares=middlewares, client_max_size=MAX_BODY_BYTES)
    app[STATE] = _State(publish, read_models, default_account, read_only, tokens or Tokens())
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/sequences", _list_sequences)
    app.router.add_post("/sequences", _create_sequence)
    app.router.add_get("/sequences/{sequence_id}", _show_sequence)
    app.router.add_put("/sequences/{sequence_id}", _replace_sequence)
    app.router.add_delete("/sequences/{sequence_id}", _delete_sequence)
    app.router.add_post("/sequences/{sequence_id}/copy", _copy_sequence)
    app.router.add_post("/sequences/{sequence_id}/enrollments", _enroll)
    app.router.add_post("/sequences/{sequence_id}/removals", _remove)
    app.router.add_get("/sequences/{sequence_id}/contacts", _sequence_contacts)
    app.router.add_get("/sequences/{sequence_id}/history", _history)
    app.router.add_get("/contacts/{contact_id}", _contact)
    return app


@web.middleware
async def _errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        state = request.app[STATE]
        refusal = state.read_only
        command_refused = refusal is not None and request.method not in ("GET", "HEAD")
        try:
            check(request, state.tokens)
        except Unauthorized as refused:
            # A caller without a token learns nothing more (the read-only refusal names
            # the files served); one whose token may not send commands is told that no
            # token could here: "405, this API only reads", not "403, an admin token".
            if not (command_refused and refused.status == 403):
                raise ApiError(refused.status, refused.reason, AUTHORIZATION) from None
        unrouted = request.match_info.http_exception
        if unrouted is not None and not (
            command_refused and isinstance(unrouted, web.HTTPMethodNotAllowed)
        ):
            raise unrouted  # no such path (404), or a method it does not take (405)
        if command_refused:
            raise ApiError(405, str(refusal), None)
        _refuse_unknown_parameters(request)
        _refuse_a_body_not_json(request)
        _refuse_a_nul_in_the_path(request)
        return await handler(request)
    except ApiError as refused:
        answer = refused.response()
        if refused.status == 405:
            # The read-only API's refusal of a command: what of this path is still taken
            # (nothing, for a path that only takes commands).
            answer.headers["Allow"] = ", ".join(_reads_of(request))
        return answer
    except web.HTTPRequestEntityTooLarge:
        return ApiError(413, f"the body is over {MAX_BODY_BYTES:,} bytes", "body").response()
    except web.HTTPException as http:
        if http.status < 400:
            raise
        answer = json_response({"error": http.reason, "field": None}, http.status)
        if "Allow" in http.headers:  # a 405 names the methods the route takes
            answer.headers["Allow"] = http.headers["Allow"]
        return answer


def _reads_of(request: web.Request) -> list[str]:
    """The read methods the request's path takes, for a read-only API's `Allow`."""
    unrouted = request.match_info.http_exception
    if isinstance(unrouted, web.HTTPMethodNotAllowed):  # a method no route of it takes
        methods: set[str] = set(unrouted.allowed_methods)
    else:
        resource = request.match_info.route.resource
        methods = {route.method for route in resource} if resource is not None else set()
    return [m for m in ("GET", "HEAD") if m in methods or "*" in methods]


@web.middleware
async def _idempotent(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """A command retried with its Idempotency-Key gets the answer the first one got (a
    create retried after a timeout is not told "exists"); the key sent with another request
    is refused, not answered 2xx and then passed over by the engine as a repeat. Kept in
    this process: across processes the engine still decides one command id once. A request
    that comes while another under its key is being answered waits for that answer."""
    if request.method in ("GET", "HEAD"):
        return await handler(request)
    key = _idempotency_key(request)
    if key is None:
        return await handler(request)
    state = request.app[STATE]
    fingerprint = request[FINGERPRINT] = _fingerprint(request, await request.read())
    while (first := state.answering.get(key)) is not None:
        await first.wait()
    answered = state.answered(key, time.monotonic())
    if answered is not None:
        if answered.fingerprint != fingerprint:
            raise ApiError(
                422,
                "was sent with another request in the last 24 hours: a new request needs a new key",
                IDEMPOTENCY_KEY,
            )
        return web.Response(
            body=answered.body, status=answered.status, content_type="application/json"
        )
    done = state.answering[key] = asyncio.Event()
    try:
        response = await handler(request)
        if 200 <= response.status < 300 and isinstance(response, web.Response):
            body = response.body if isinstance(response.body, bytes) else b""
            state.answers[key] = _Answer(fingerprint, response.status, body, time.monotonic())
    finally:
        del state.answering[key]
        done.set()
    return response


# The query parameters each route reads; any other is refused by name, so a misspelt filter
# (`serach=`) is not answered with the whole unfiltered history.
HISTORY_PARAMETERS = ("search", "type", "timeframe", "now", "timezone", "limit", "offset")
CONTACTS_PARAMETERS = ("all", "limit", "offset")
ROUTE_PARAMETERS = {
    "/sequences/{sequence_id}/history": frozenset(HISTORY_PARAMETERS),
    "/sequences/{sequence_id}/contacts": frozenset(CONTACTS_PARAMETERS),
}


def _refuse_unknown_parameters(request: web.Request) -> None:
    route = request.match_info.route.resource
    known = ROUTE_PARAMETERS.get(route.canonical if route is not None else "", frozenset())
    unknown = sorted(set(request.query) - known)
    if unknown:
        expected = f"one of {', '.join(sorted(known))}" if known else "no query parameters"
        raise ApiError(400, f"unknown query parameter; this route takes {expected}", unknown[0])


FINGERPRINT = web.RequestKey("dripstream_fingerprint", str)  # set by _idempotent


def _fingerprint(request: web.Request, body: bytes) -> str:
    """What makes two requests the same request: method, path and body, the body as JSON
    means it (a client that serialises a retry with other spacing or key order sends the
    same request); a body that is no JSON, as its bytes."""
    try:
        meant = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else body
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):  # not JSON, or nested too deep
        meant = body
    return hashlib.sha256(f"{request.method} {request.path}\n".encode() + meant).hexdigest()


# --- commands --------------------------------------------------------------------------------


async def _create_sequence(request: web.Request) -> web.Response:
    body = await _body(request)
    sequence_id = body.get("id")
    async with request.app[STATE].claiming(str(sequence_id)):
        if isinstance(sequence_id, str) and await _known(request, sequence_id):
            raise ApiError(
                409, f"sequence {sequence_id!r} exists: PUT /sequences/{sequence_id}", "id"
            )
        return await _apply(request, body, 201)


async def _replace_sequence(request: web.Request) -> web.Response:
    path_id = request.match_info["sequence_id"]
    body = await _body(request)
    body.setdefault("id", path_id)
    if body["id"] != path_id:
        raise ApiError(422, f"must equal the path's sequence id {path_id!r}", "id")
    return await _apply(request, body, 200)


async def _apply(request: web.Request, body: dict[str, Any], status: int) -> web.Response:
    state = request.app[STATE]
    sequence = dict(body)
    account = sequence.pop("account", None)
    if account is not None and not isinstance(account, dict):
        raise ApiError(422, "must be an object", "account")
    account = account or state.default_account
    # The document as given (defaults are the engine's to fill, as for `sequences apply`);
    # without an account the engine keeps the one in force, as for a file without one.
    document: dict[str, Any] = {"sequences": [sequence]}
    if account is not None:
        document["account"] = dict(account)
    try:
        checked = validate_definition_document(document)
    except DefinitionRejected as rejected:
        key = rejected.key
        if rejected.sequence_id is None and rejected.location.startswith("sequences[0]"):
            key = rejected.location.removeprefix("sequences[0]").lstrip(".") or "body"
        raise ApiError(422, rejected.reason, key, sequence_id=rejected.sequence_id) from None
    event = await _send(request, "sequence.applied", DEFINITIONS_SUBJECT, document)
    state.publishing(str(sequence["id"]), True)
    # What `sequences apply` says on stderr (keys nothing reads, a sequence that loads
    # `invalid`, people a step cannot reach).
    warnings = definition_warnings(checked)
    answer = {"command_id": event.id, "sequence_id": sequence["id"], "warnings": warnings}
    return json_response(answer, status)


async def _delete_sequence(request: web.Request) -> web.Response:
    sequence_id = await _existing(request)
    event = await _send(
        request, "sequence.delete_requested", DEFINITIONS_SUBJECT, {"sequence_id": sequence_id}
    )
    request.app[STATE].publishing(sequence_id, False)
    return json_response({"command_id": event.id, "sequence_id": sequence_id}, 202)


COPY_KEYS = ("new_id", "new_name")


async def _copy_sequence(request: web.Request) -> web.Response:
    sequence_id = await _existing(request)
    body = await _body(request)
    _refuse_unknown_keys(body, COPY_KEYS)
    new_id = body.get("new_id")
    if not isinstance(new_id, str) or not new_id:
        raise ApiError(422, "is required: a non-empty string", "new_id")
    if "new_name" in body and (not isinstance(body["new_name"], str) or not body["new_name"]):
        raise ApiError(422, "must be a non-empty string", "new_name")
    data = {"sequence_id": sequence_id, "new_id": new_id}
    if "new_name" in body:
        data["new_name"] = body["new_name"]
    async with request.app[STATE].claiming(new_id):
        if await _known(request, new_id):
            raise ApiError(409, f"sequence {new_id!r} exists", "new_id")
        event = await _send(request, "sequence.copy_requested", DEFINITIONS_SUBJECT, data)
        request.app[STATE].publishing(new_id, True)
    return json_response({"command_id": event.id, "sequence_id": new_id}, 201)


async def _enroll(request: web.Request) -> web.Response:
    return await _targeted(request, "enrollment.requested")


async def _remove(request: web.Request) -> web.Response:
    """Take contacts out of the sequence by hand (the Sequences page's Contacts)."""
    return await _targeted(request, "enrollment.removal_requested")


async def _targeted(request: web.Request, kind: str) -> web.Response:
    """A command naming contacts by ids, tag, line or group, for one sequence."""
    sequence_id = await _existing(request)
    body = await _body(request)
    if body.get("sequence_id", sequence_id) != sequence_id:
        raise ApiError(422, f"must equal the path's sequence id {sequence_id!r}", "sequence_id")
    _refuse_unknown_keys(body, (*ENROLL_KEYS, "sequence_id"))
    if not any(key in body for key in ENROLL_KEYS):
        raise ApiError(422, "needs one of contact_ids, tag, line_id, contact_group", "body")
    data = {key: body[key] for key in ENROLL_KEYS if key in body}
    data["sequence_id"] = sequence_id
    event = await _send(request, kind, request_subject(sequence_id, data), data)
    return json_response({"command_id": event.id, "sequence_id": sequence_id}, 202)


async def _send(
    request: web.Request, event_type: str, subject: str, data: dict[str, Any]
) -> CloudEvent:
    """Build the command, check it exactly as a consumer will, publish it to `commands`."""
    state = request.app[STATE]
    event = CloudEvent(
        id=_command_id(request, state),
        source=SOURCE,
        type=event_type,
        time=datetime.now(UTC),
        subject=subject,
        data=data,
    )
    encoded = event.encode()
    if len(encoded) > MAX_COMMAND_BYTES:
        # Past this a command, or what the engine makes of it (the definition it publishes,
        # a copy per partition), would not fit a Kafka record: refused here, not accepted
        # and then dead-lettered where the client never hears of it.
        raise ApiError(
            413, f"the command is {len(encoded):,} bytes; at most {MAX_COMMAND_BYTES:,}", "body"
        )
    try:
        decode_event(encoded)
    except EventRejected as rejected:
        where = rejected.field.removeprefix("data").lstrip(".")
        if event_type == "sequence.applied":
            where = where.removeprefix("sequences[0]").lstrip(".")
        raise ApiError(422, rejected.reason, where or "body") from None
    try:
        await asyncio.wait_for(state.publish("commands", event), PUBLISH_TIMEOUT_SECONDS)
    except (TimeoutError, KafkaError) as error:
        raise ApiError(
            503,
            f"cannot reach Kafka ({type(error).__name__}): the command may still go through."
            " A retry with the same Idempotency-Key is decided once (without a key it may be"
            " a second command); a create or copy retried may be told 409 if the first went"
            " through: GET the sequence to know",
            None,
        ) from None
    return event


# A quarter of what the relay fits in one record (streams.relay.MAX_RECORD_BYTES, 508 KiB):
# the engine's `sequence.defined` of a definition carries it with its defaults filled in,
# about twice its size, and at half the record (256 KiB) a created sequence was answered 201
# and then dead-lettered by the relay, for good.
MAX_COMMAND_BYTES = 128 * 1024
# How long a command waits for the broker before the client is told 503.
PUBLISH_TIMEOUT_SECONDS = 15.0


IDEMPOTENCY_KEY = "Idempotency-Key"


def _command_id(request: web.Request, state: _State) -> str:
    """The command's CloudEvent id. With an `Idempotency-Key`, the key and the request's
    fingerprint: the engine decides one id from one source once (within a day), so a
    retried request cannot enroll a contact, or send, twice."""
    key = _idempotency_key(request)
    if key is None:
        return f"api-{uuid.uuid4().hex}-{next(state.counter)}"
    # The request's fingerprint too: another API process, which has not seen the key,
    # carries out another request sent with it rather than have the engine pass it over.
    return f"api-key-{key}-{request[FINGERPRINT][:16]}"


def _idempotency_key(request: web.Request) -> str | None:
    """The request's `Idempotency-Key`, stripped; refused (400) unless 1 to 200 characters,
    before anything else is told of the request (its sequence unknown, its id taken)."""
    key = request.headers.get(IDEMPOTENCY_KEY)
    if key is None:
        return None
    if not key.strip() or len(key) > 200:
        raise ApiError(400, "must be 1 to 200 characters", IDEMPOTENCY_KEY)
    return key.strip()


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise ApiError(400, f"not valid JSON: {error}", "body") from None
    if not isinstance(value, dict):
        raise ApiError(400, "must be a JSON object", "body")
    where = first_nul(value)
    if where is not None:
        # No id, name or text of the engine holds one (decoding an event refuses it too).
        raise ApiError(422, NUL_REASON, where or "body")
    return value


def _refuse_unknown_keys(body: Mapping[str, Any], takes: tuple[str, ...]) -> None:
    """A misspelt key (`tags`) would otherwise be passed over and the rest carried out."""
    unknown = sorted(set(body) - set(takes))
    if unknown:
        raise ApiError(422, f"unknown key; takes {', '.join(takes)}", unknown[0])


def _refuse_a_nul_in_the_path(request: web.Request) -> None:
    """No sequence or contact has a NUL in its id (PostgreSQL could not even compare one)."""
    for name, value in request.match_info.items():
        if "\x00" in value:
            raise ApiError(404, f"unknown {name.removesuffix('_id')} {value!r}", name)


CONTENT_TYPE = "Content-Type"


def _refuse_a_body_not_json(request: web.Request) -> None:
    """A command with a body (a DELETE's too, which no handler reads) that says it is not
    JSON: refused, not passed over, so a client sending a form learns it at once."""
    declared = request.headers.get(CONTENT_TYPE)
    if request.method in ("GET", "HEAD"):
        return  # a read takes no body: whatever came with it is not read
    if request.body_exists and declared is None:
        # Required, not assumed: a browser page of another site can send a body without a
        # preflight only as text, a form or with no type at all, so demanding JSON keeps a
        # visited page from sending commands to a loopback API without tokens.
        raise ApiError(415, "is required: application/json", CONTENT_TYPE)
    if request.body_exists and not _is_json(request.content_type):
        raise ApiError(415, f"must be application/json, not {request.content_type!r}", CONTENT_TYPE)


def _is_json(media_type: str) -> bool:
    """`application/json` or a JSON-based type (`application/cloudevents+json`)."""
    kind, _, subtype = media_type.lower().partition("/")
    return kind == "application" and (subtype == "json" or subtype.endswith("+json"))


async def _known(request: web.Request, sequence_id: str) -> bool:
    """Defined as far as this process knows: its own command of the last moments, else the
    read models."""
    state = request.app[STATE]
    lately = state.lately_published(sequence_id)
    if lately is not None:
        return lately
    try:
        # One sequence's row, not the whole list with its counts, for every command.
        await asyncio.to_thread(state.read_models.sequence, sequence_id)
    except UnknownSequenceError:
        return False
    return True


async def _existing(request: web.Request) -> str:
    sequence_id = request.match_info["sequence_id"]
    if not await _known(request, sequence_id):
        raise ApiError(404, f"unknown sequence {sequence_id!r}", "sequence_id")
    return sequence_id


# --- reads -----------------------------------------------------------------------------------


async def _list_sequences(request: web.Request) -> web.Response:
    return json_response(await asyncio.to_thread(request.app[STATE].read_models.sequences))


async def _show_sequence(request: web.Request) -> web.Response:
    sequence_id = request.match_info["sequence_id"]
    read = request.app[STATE].read_models.sequence
    try:
        return json_response(await asyncio.to_thread(read, sequence_id))
    except UnknownSequenceError as unknown:
        raise ApiError(404, str(unknown), "sequence_id") from None


async def _sequence_contacts(request: web.Request) -> web.Response:
    query = contacts_query(request.match_info["sequence_id"], request.query)
    read = request.app[STATE].read_models.sequence_contacts
    try:
        return json_response(await asyncio.to_thread(read, query))
    except UnknownSequenceError as unknown:
        raise ApiError(404, str(unknown), "sequence_id") from None


def contacts_query(sequence_id: str, params: Mapping[str, str]) -> SequenceContactsQuery:
    """The query string as a SequenceContactsQuery; a bad parameter is a 400 naming it."""
    ended = params.get("all") or "false"
    if ended not in ("true", "false"):
        raise ApiError(400, "must be true or false", "all")
    return SequenceContactsQuery(
        sequence_id=sequence_id,
        ended=ended == "true",
        limit=_limit(params),
        offset=_count(params, "offset") or 0,
    )


async def _history(request: web.Request) -> web.Response:
    query = history_query(request.match_info["sequence_id"], request.query)
    page = await asyncio.to_thread(request.app[STATE].read_models.history, query)
    if page is None:
        raise ApiError(404, f"unknown sequence {query.sequence_id!r}", "sequence_id")
    return json_response(page)


async def _contact(request: web.Request) -> web.Response:
    contact_id = request.match_info["contact_id"]
    summary = await asyncio.to_thread(request.app[STATE].read_models.contact, contact_id)
    if summary is None:
        raise ApiError(404, f"unknown contact {contact_id!r}", "contact_id")
    return json_response(summary)


def history_query(sequence_id: str, params: Mapping[str, str]) -> HistoryQuery:
    """The query string as a HistoryQuery; a bad parameter is a 400 naming it."""
    kind = params.get("type") or None
    if kind is not None:
        try:
            event_types_for(kind)
        except ValueError as error:
            raise ApiError(400, str(error), "type") from None
    timeframe = params.get("timeframe") or "all_time"
    if timeframe not in TIMEFRAMES:
        raise ApiError(400, f"must be one of {', '.join(TIMEFRAMES)}", "timeframe")
    now = None
    if params.get("now"):
        try:
            now = parse_event_time(params["now"])
        except TimeOutOfRange as error:
            raise ApiError(400, str(error), "now") from None
        except ValueError:
            raise ApiError(
                400, "must be an RFC 3339 time such as 2028-03-03T12:00:00Z", "now"
            ) from None
    search = params.get("search") or None
    if search is not None and "\x00" in search:
        raise ApiError(400, "must not contain a NUL character", "search")
    zone = params.get("timezone") or None
    if zone is not None:
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ApiError(400, f"unknown time zone {zone!r}", "timezone") from None
    return HistoryQuery(
        sequence_id=sequence_id,
        search=search,
        kind=kind,
        timeframe=timeframe,
        now=now,
        timezone=zone,
        limit=_limit(params),
        offset=_count(params, "offset") or 0,
    )


def _limit(params: Mapping[str, str]) -> int:
    limit = _count(params, "limit", most=MAX_LIMIT, beyond=": page with offset")
    return DEFAULT_LIMIT if limit is None else limit


_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def _count(
    params: Mapping[str, str], name: str, *, most: int = MAX_COUNT, beyond: str = ""
) -> int | None:
    text = params.get(name)
    if text is None or text == "":
        return None
    if not _WHOLE_NUMBER.fullmatch(text):
        raise ApiError(400, f"not a whole number: {text!r}", name)
    value = int(text)
    if value < 0:
        raise ApiError(400, "must not be negative", name)
    if value > most:
        raise ApiError(400, f"must be at most {most}{beyond}", name)
    return value


# --- OpenAPI ---------------------------------------------------------------------------------


async def _openapi(_request: web.Request) -> web.Response:
    return json_response(openapi_document())
