"""A data-entry form's live connection (``/portal/o/{org}/forms/{dcd}/{version}/live``,
pages/entry.py) against `hdhub run all`: it answers a change as the POST route does; it
refuses a handshake without a session, from another organisation's member, from a member
without the right to enter registrations or without the form's registry, and from another
origin; a garbage or oversized
message closes the connection cleanly and the next one is answered; a signed-out session
closes it at the next re-read (every change re-reads here: HDHUB_PORTAL_LIVE_SESSION_SECONDS=0),
and so does a membership taken away; registrations' refusal is answered, not closed."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.e2e.conftest import Platform, run_all

pytestmark = pytest.mark.e2e

NURSE = ("nurse@az-demo.test", "demo-nurse")  # registrant of az-demo
BIOLOGIST = ("biologist@lab-demo.test", "demo-lab")  # registrant of lab-demo
CERTIFICATES = ("certificates@az-demo.test", "demo-certs")  # az-demo, no registration rights
DATA = ("data@az-demo.test", "demo-data")  # registrant of az-demo, removed by the manager below
MANAGER = ("manager@az-demo.test", "demo-manager")
FORM = "/portal/o/az-demo/forms/ANGIO_HOSP/1.0.0"
#: Discharged before admitted (a cross-field constraint), a skip rule, a calculation.
VALUES = [
    ("IDC_PAT", "49111000228"),
    ("DT_HOSPZ", "03/02/2025"),
    ("DT_DISCH", "01/02/2025"),
    ("MS_HEIGHT", "171"),
    ("MS_WEIGHT", "80,5"),
    ("CD_RISK_FACTORS", "hypertension"),
    ("CD_RISK_FACTORS", "diabetes"),
]


@pytest.fixture(scope="module")
def portal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    with run_all(tmp_path_factory.mktemp("live"), HDHUB_PORTAL_LIVE_SESSION_SECONDS="0") as running:
        yield running


def signed_in(portal: Platform, username: str, password: str) -> httpx.Client:
    """A browser's session: the code flow through the login page, cookies kept."""
    client = httpx.Client(base_url=portal.base_url, timeout=60)
    r = client.get("/portal/login?next=/portal/")
    login = client.get(r.headers["location"])
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', login.text))
    r = client.post(
        "/realms/hdhub/protocol/openid-connect/auth",
        data={**fields, "username": username, "password": password},
    )
    client.get(r.headers["location"])
    assert client.get("/portal/").status_code == 200
    return client


def csrf_of(client: httpx.Client) -> str:
    page = client.get("/portal/")
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def live(
    portal: Platform, client: httpx.Client | None, path: str = FORM, origin: str | None = None
) -> ClientConnection:
    cookies = "; ".join(f"{name}={value}" for name, value in (client.cookies.items() if client else []))
    return connect(
        portal.base_url.replace("http://", "ws://") + path + "/live",
        origin=origin or portal.base_url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookies} if cookies else None,
        open_timeout=30,
    )


def token_of(portal: Platform, username: str, password: str) -> str:
    """An access token for the API (the password grant the demo realm allows)."""
    form = {"grant_type": "password", "client_id": "hdhub-portal", "username": username, "password": password}
    r = httpx.post(f"{portal.base_url}/realms/hdhub/protocol/openid-connect/token", data=form)
    return str(r.json()["access_token"])


def ask(socket: ClientConnection, seq: int, csrf: str) -> dict:  # type: ignore[type-arg]
    socket.send(json.dumps({"seq": seq, "form": urlencode([("csrf_token", csrf), *VALUES])}))
    return json.loads(socket.recv(timeout=30))  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def nurse(portal: Platform) -> Iterator[httpx.Client]:
    client = signed_in(portal, *NURSE)
    yield client
    client.close()


def test_a_change_is_answered_as_the_post_route_answers_it(portal: Platform, nurse: httpx.Client) -> None:
    csrf = csrf_of(nurse)
    posted = nurse.post(
        f"{FORM}/evaluate",
        content=urlencode([("csrf_token", csrf), *VALUES]),
        headers={"Origin": portal.base_url, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert posted.status_code == 200
    with live(portal, nurse) as socket:
        first, second = ask(socket, 1, csrf), ask(socket, 2, csrf)
    assert first == {"seq": 1, **posted.json()}
    assert second["seq"] == 2 and second["fields"] == first["fields"]
    assert first["fields"]["DT_DISCH"]["errors"]  # the constraint, from the engine
    assert first["fields"]["MS_BMI"]["value"] == "27.5"  # from "80,5": the decimal comma read


@pytest.mark.parametrize(
    ("who", "path"),
    [
        (None, FORM),  # signed out
        (BIOLOGIST, FORM),  # another organisation's member
        (CERTIFICATES, FORM),  # a member without the right to enter registrations
        (NURSE, "/portal/o/lab-demo/forms/ANGIO_HOSP/1.0.0"),  # not the nurse's organisation
    ],
)
def test_the_handshake_is_refused_to_whoever_may_not_evaluate_the_form(
    portal: Platform, who: tuple[str, str] | None, path: str
) -> None:
    client = signed_in(portal, *who) if who else None
    with pytest.raises(InvalidStatus) as refused:
        live(portal, client, path)
    # Closed before it was accepted (4401 signed out, 4403 the others): uvicorn says 403.
    assert refused.value.response.status_code == 403


def test_the_handshake_is_refused_from_another_origin(portal: Platform, nurse: httpx.Client) -> None:
    for origin in ("https://evil.example", portal.base_url.replace("127.0.0.1", "localhost")):
        with pytest.raises(InvalidStatus) as refused:
            live(portal, nurse, origin=origin)
        assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("not json", 1007),
        (json.dumps({"seq": "1", "form": ""}), 1007),
        (json.dumps([1, 2]), 1007),
        (b"\x00\x01", 1007),
        (json.dumps({"seq": 1, "form": "IDC_PAT=" + "9" * 300_000}), 1009),
        (json.dumps({"seq": 1, "form": "csrf_token=wrong&IDC_PAT=1"}), 4403),
    ],
)
def test_a_bad_message_closes_the_connection_and_the_next_one_is_answered(
    portal: Platform, nurse: httpx.Client, message: str | bytes, code: int
) -> None:
    with live(portal, nurse) as socket:
        socket.send(message)
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
    reason = closed.value.rcvd.reason  # none of ours; uvicorn's words over the size limit
    assert "Traceback" not in reason and ".py" not in reason
    with live(portal, nurse) as socket:
        assert ask(socket, 7, csrf_of(nurse))["seq"] == 7


def test_a_signed_out_session_closes_the_connection_at_its_next_change(portal: Platform) -> None:
    client = signed_in(portal, *NURSE)
    csrf = csrf_of(client)
    with live(portal, client) as socket:
        assert ask(socket, 1, csrf)["seq"] == 1
        client.post("/portal/logout", data={"csrf_token": csrf}, headers={"Origin": portal.base_url})
        assert client.get("/portal/", follow_redirects=False).status_code == 303
        socket.send(json.dumps({"seq": 2, "form": urlencode([("csrf_token", csrf), *VALUES])}))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_a_member_removed_meanwhile_is_closed_out_at_the_next_change(portal: Platform) -> None:
    client = signed_in(portal, *DATA)
    csrf = csrf_of(client)
    manager = token_of(portal, *MANAGER)
    with portal.client(manager) as api, live(portal, client) as socket:
        assert ask(socket, 1, csrf)["seq"] == 1
        time.sleep(1.1)  # revocation is by whole seconds: a token of the same second passes
        members = api.get("/api/v1/organisations/az-demo/members").json()["items"]
        [data] = [m for m in members if m["email"] == DATA[0]]
        assert api.delete(f"/api/v1/organisations/az-demo/members/{data['account_id']}").status_code == 204
        socket.send(json.dumps({"seq": 2, "form": urlencode([("csrf_token", csrf), *VALUES])}))
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
    # Removing a member ends their sessions at the issuer: the re-read finds it signed out.
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def test_a_form_registrations_does_not_know_is_answered_with_its_status(
    portal: Platform, nurse: httpx.Client
) -> None:
    with live(portal, nurse, "/portal/o/az-demo/forms/NO_SUCH_FORM/1.0.0") as socket:
        assert ask(socket, 1, csrf_of(nurse)) == {"seq": 1, "error": 404}
        assert ask(socket, 2, csrf_of(nurse)) == {"seq": 2, "error": 404}  # and it stays open


def test_the_handshake_is_refused_for_a_registry_not_granted(portal: Platform) -> None:
    """A member granted PACEMAKER only: ANGIO's form is refused at the handshake (as the
    form's page is), PACEMAKER's answered."""
    manager = token_of(portal, *MANAGER)
    email = "pacemaker-only@az-demo.test"
    with portal.client(manager) as api:
        r = api.post(
            "/api/v1/organisations/az-demo/members",
            json={"email": email, "roles": ["registrant"], "registries": ["HDBP0300"]},
        )
        assert r.status_code == 201, r.text
        r2 = api.post(
            "/api/v1/accounts/password",
            json={
                "username": email,
                "current_password": r.json()["initial_password"],
                "new_password": "pace-maker-1",
            },
        )
        assert r2.status_code == 204, r2.text
        versions = {
            d["code"]: d["versions"][-1]["version"]
            for r in api.get("/api/v1/registries").json()["items"]
            for d in r["dcds"]
        }
    client = signed_in(portal, email, "pace-maker-1")
    with pytest.raises(InvalidStatus) as refused:
        live(portal, client)
    assert refused.value.response.status_code == 403
    with live(portal, client, f"/portal/o/az-demo/forms/PACEMAKER/{versions['PACEMAKER']}") as socket:
        assert ask(socket, 1, csrf_of(client))["seq"] == 1
