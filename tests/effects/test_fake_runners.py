"""The fake providers run alone from the command line (`python -m effects.fakes.…`), as a
user points `dripstream effects` at them: they print their URL, take the credentials the
README names, and with `--log` print every request they answered."""

from __future__ import annotations

import base64
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from effects.fakes import mailgun_server
from effects.fakes.sendgrid_server import API_KEY
from effects.fakes.twilio_server import ACCOUNT_SID, AUTH_TOKEN, UNSUBSCRIBED_NUMBER

REPO = Path(__file__).resolve().parents[2]


def _start(module: str, *flags: str) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", module, *flags],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, process.stdout.readline().strip()


@pytest.fixture
def running() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        process.terminate()
        process.wait(timeout=10)


def _post(url: str, body: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _logged(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "the fake printed nothing"
    logged: dict[str, Any] = orjson.loads(line)
    return logged


def test_the_fake_twilio_logs_each_request_it_answers(
    running: list[subprocess.Popen[str]],
) -> None:
    # given the fake Twilio run alone with --log
    process, url = _start("effects.fakes.twilio_server", "--log")
    running.append(process)
    assert url.startswith("http://127.0.0.1:")
    auth = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    messages = f"{url}/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    form = {"To": "+16465550100", "From": "+12125550000", "Body": "Hi Ana"}
    headers = {"Authorization": f"Basic {auth}"}
    # when a text is sent with its credentials, one to an opted-out number, one with a wrong token
    sent = _post(messages, urllib.parse.urlencode(form).encode(), headers)
    refused = _post(
        messages, urllib.parse.urlencode({**form, "To": UNSUBSCRIBED_NUMBER}).encode(), headers
    )
    wrong = base64.b64encode(f"{ACCOUNT_SID}:nope".encode()).decode()
    unauthorized = _post(
        messages, urllib.parse.urlencode(form).encode(), {"Authorization": f"Basic {wrong}"}
    )
    # then each answer is logged on stdout as a JSON line
    assert (sent, refused, unauthorized) == (201, 400, 401)
    first = _logged(process)
    assert first["resource"] == "Messages"
    assert (first["status"], first["to"], first["from"], first["body"]) == (
        201,
        "+16465550100",
        "+12125550000",
        "Hi Ana",
    )
    assert first["sid"].startswith("SM")
    assert (_logged(process)["code"], _logged(process)["code"]) == (21610, 20003)


def test_the_fake_sendgrid_runs_alone_and_logs_each_mail(
    running: list[subprocess.Popen[str]],
) -> None:
    # given the fake SendGrid run alone with --log
    process, url = _start("effects.fakes.sendgrid_server", "--log")
    running.append(process)
    assert url.startswith("http://127.0.0.1:")
    mail = {
        "personalizations": [{"to": [{"email": "ana@example.com"}]}],
        "from": {"email": "team@example.com"},
        "subject": "Your quote",
        "content": [{"type": "text/plain", "value": "Here it is."}],
        "custom_args": {"effect_id": "fx:welcome:c-1:1:mail:1"},
    }
    # when a mail is sent with its key, and one with another key
    sent = _post(f"{url}/v3/mail/send", orjson.dumps(mail), {"Authorization": f"Bearer {API_KEY}"})
    refused = _post(f"{url}/v3/mail/send", orjson.dumps(mail), {"Authorization": "Bearer SG.x"})
    # then both answers are logged on stdout
    assert (sent, refused) == (202, 401)
    accepted = _logged(process)
    assert accepted["status"] == 202
    assert accepted["to"] == ["ana@example.com"]
    assert (accepted["subject"], accepted["text"]) == ("Your quote", "Here it is.")
    assert accepted["effect_id"] == "fx:welcome:c-1:1:mail:1"
    assert accepted["message_id"].startswith("fakeSG")
    assert _logged(process) == {"status": 401}


def test_the_fake_mailgun_runs_alone_and_logs_each_message(
    running: list[subprocess.Popen[str]],
) -> None:
    # given the fake Mailgun run alone with --log
    process, url = _start("effects.fakes.mailgun_server", "--log")
    running.append(process)
    assert url.startswith("http://127.0.0.1:")
    messages = f"{url}/v3/{mailgun_server.DOMAIN}/messages"
    form = urllib.parse.urlencode(
        {
            "from": "team@mg.example.com",
            "to": "ana@example.com",
            "subject": "Your quote",
            "text": "Here it is.",
            "v:effect_id": "fx:welcome:c-1:1:mail:1",
        }
    ).encode()

    def basic(key: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"api:{key}".encode()).decode()}

    # when a message is sent with its key, one to a refused address, and one with another key
    sent = _post(messages, form, basic(mailgun_server.API_KEY))
    refused = _post(
        messages,
        form.replace(b"ana%40example.com", b"rejected%40example.com"),
        basic(mailgun_server.API_KEY),
    )
    unauthorized = _post(messages, form, basic("guess"))
    # then each answer is logged on stdout as a JSON line
    assert (sent, refused, unauthorized) == (200, 400, 401)
    accepted = _logged(process)
    assert accepted["status"] == 200
    assert accepted["to"] == ["ana@example.com"]
    assert (accepted["subject"], accepted["text"]) == ("Your quote", "Here it is.")
    assert accepted["effect_id"] == "fx:welcome:c-1:1:mail:1"
    assert accepted["message_id"].endswith(f"@{mailgun_server.DOMAIN}")
    assert _logged(process)["status"] == 400
    assert _logged(process) == {"status": 401}


@pytest.mark.parametrize(
    "module",
    [
        "effects.fakes.twilio_server",
        "effects.fakes.sendgrid_server",
        "effects.fakes.mailgun_server",
    ],
)
def test_a_fake_stops_cleanly_on_sigterm(module: str) -> None:
    process, url = _start(module)
    assert url.startswith("http://127.0.0.1:")
    process.terminate()
    assert process.wait(timeout=10) == 0
