"""deploy/keycloak/hdhub-realm.json as Keycloak 26 imports it: only fields Keycloak reads,
its built-in client scopes and required actions kept, every secret and the public URL from
the operator's Secret (``${VAR}``, resolved at import), the portal on the code flow only, and
tokens that carry what the services read, checked through the Keycloak stand-in with the
identity service's own Keycloak adapter and token verifier."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from hdhub.common.auth import Role, TokenVerifier
from hdhub.common.revocation import Revocations
from tests.deploy.manifests import ROOT, values_file
from tests.deploy.pods import documented_secrets
from tests.keycloak_standin import representations as rep
from tests.keycloak_standin.app import BUILT_IN_MAPPERS, Realm, StandinServer

REALM_FILE = ROOT / "deploy" / "keycloak" / "hdhub-realm.json"
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


def realm() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(REALM_FILE.read_text())
    return loaded


@pytest.fixture(scope="module")
def realm_secret(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The Secret docs/operations.md has the operator give Keycloak for the import."""
    secrets = documented_secrets(tmp_path_factory.mktemp("operator"))
    assert (
        secrets["hdhub-realm"]["HDHUB_SERVICE_CLIENT_SECRET"]
        == secrets["hdhub-platform"]["HDHUB_SERVICE_CLIENT_SECRET"]
    )
    assert (
        secrets["hdhub-realm"]["HDHUB_IDENTITY_KEYCLOAK_ADMIN_CLIENT_SECRET"]
        == secrets["hdhub-identity"]["HDHUB_IDENTITY_KEYCLOAK_ADMIN_CLIENT_SECRET"]
    )
    return secrets["hdhub-realm"]


def _unknown(obj: dict[str, Any], fields: frozenset[str], where: str) -> list[str]:
    return [f"{where}.{key}" for key in obj if key not in fields]


def test_the_realm_file_holds_only_what_keycloak_reads() -> None:
    r = realm()
    unknown = _unknown(r, rep.REALM, "realm")
    for client in r["clients"]:
        unknown += _unknown(client, rep.CLIENT, client["clientId"])
        for mapper in client.get("protocolMappers", []):
            unknown += _unknown(mapper, rep.PROTOCOL_MAPPER, f"{client['clientId']}.{mapper['name']}")
            assert mapper["protocolMapper"] in BUILT_IN_MAPPERS, mapper  # no provider JAR needed
    unknown += _unknown(r["roles"], rep.ROLES, "roles")
    for role in r["roles"]["realm"]:
        unknown += _unknown(role, rep.ROLE, role["name"])
        unknown += _unknown(role.get("composites", {}), rep.ROLE_COMPOSITES, f"{role['name']}.composites")
    for user in r["users"]:
        unknown += _unknown(user, rep.USER, user["username"])
    groups = list(r["groups"])
    while groups:
        group = groups.pop()
        unknown += _unknown(group, rep.GROUP, group["name"])
        groups += group.get("subGroups", [])
    assert unknown == []


def test_keycloaks_built_in_scopes_and_required_actions_are_kept() -> None:
    """A realm file that defines ``clientScopes`` gets none of Keycloak's built-in ones
    (RealmManager.importRealm creates them only when the file has none): no ``basic`` scope,
    so no ``sub`` (Keycloak 25+), no ``roles`` scope, so no ``realm_access``. A client that
    lists ``defaultClientScopes`` has only those. A file that lists ``requiredActions`` gets
    only those; without, Keycloak registers its defaults, CONFIGURE_TOTP (MFA can be
    required) and UPDATE_PASSWORD (initial passwords) among them, enabled."""
    r = realm()
    assert {"clientScopes", "defaultDefaultClientScopes", "requiredActions"}.isdisjoint(r)
    assert not any("defaultClientScopes" in c or "optionalClientScopes" in c for c in r["clients"])


def test_the_portal_signs_people_in_by_code_flow_to_its_callback_only_and_nothing_is_left_open() -> None:
    r = realm()
    clients = {c["clientId"]: c for c in r["clients"]}
    assert len(clients) == len(r["clients"])  # (the portal's sign-in client is no service's)
    portal = clients["hdhub-portal"]
    assert portal["publicClient"] and portal["standardFlowEnabled"]
    assert not portal["directAccessGrantsEnabled"] and not portal["implicitFlowEnabled"]
    assert portal["attributes"]["pkce.code.challenge.method"] == "S256"
    assert portal["redirectUris"] == ["${HDHUB_PUBLIC_URL}/portal/callback"]
    assert portal["attributes"]["post.logout.redirect.uris"] == "${HDHUB_PUBLIC_URL}/portal/"
    uris = [u for c in clients.values() for u in c.get("redirectUris", [])]
    assert not any("*" in u for u in [*uris, *portal["attributes"].values()])
    # The scripts' client carries the portal's mappers: the claims checked through it below
    # are the portal's.
    assert clients["hdhub-cli"]["protocolMappers"] == portal["protocolMappers"]
    # Every confidential client's secret comes from the operator's Secret at import.
    for client in clients.values():
        if not client["publicClient"]:
            assert PLACEHOLDER.fullmatch(client["secret"]), client["clientId"]
    assert r["eventsEnabled"] and r["adminEventsEnabled"] and r["bruteForceProtected"]
    assert r["sslRequired"] in ("external", "all") and not r["registrationAllowed"]


def test_every_placeholder_is_a_key_of_the_documented_secret(realm_secret: dict[str, str]) -> None:
    assert set(PLACEHOLDER.findall(REALM_FILE.read_text())) == set(realm_secret)
    # The redirect URIs are exact: the platform's public URL, as the chart's values give it.
    assert realm_secret["HDHUB_PUBLIC_URL"] == values_file("values-prod.yaml")["platform"]["publicUrl"]


def _token(keycloak: StandinServer, **form: str) -> httpx.Response:
    return httpx.post(f"{keycloak.url}realms/hdhub/protocol/openid-connect/token", data=form)


async def test_tokens_of_the_realm_carry_what_the_services_read(realm_secret: dict[str, str]) -> None:
    from hdhub.identity.keycloak_backend import KeycloakBackend

    imported = Realm.from_export(REALM_FILE.read_text(), realm_secret)
    with StandinServer(imported) as keycloak:
        identity = KeycloakBackend.connect(
            server_url=keycloak.url,
            realm="hdhub",
            client_id="hdhub-identity",
            client_secret=realm_secret["HDHUB_IDENTITY_KEYCLOAK_ADMIN_CLIENT_SECRET"],
        )
        org = await identity.create_organisation(title="AZ Realm", nihdi_number="71000436")
        person = await identity.create_account(
            username="manager@realm.test",
            email="manager@realm.test",
            first_name="M",
            last_name="R",
            password="a-long-password-1",
            temporary=False,
        )
        await identity.set_roles(person.id, org.id, frozenset({"manager", "registrant"}))
        await identity.create_client(
            client_id="realm-his",
            organisation_id=org.id,
            name="HIS",
            roles=frozenset({"registrant"}),
            secret="his-s3cret",
        )
        verifier = TokenVerifier(
            issuer=f"{keycloak.url}realms/hdhub",
            jwks_url=f"{keycloak.url}realms/hdhub/protocol/openid-connect/certs",
            audience="hdhub",
            revocations=Revocations(None),
        )

        # A person: the portal's mappers (through the scripts' client: the portal has no
        # password grant, below).
        r = _token(
            keycloak,
            grant_type="password",
            client_id="hdhub-cli",
            username=person.username,
            password="a-long-password-1",
        )
        assert r.status_code == 200, r.text
        someone = await verifier.verify(r.json()["access_token"])
        assert someone.subject == person.id and not someone.is_system
        assert someone.memberships[org.id].roles == {Role.MANAGER, Role.REGISTRANT}
        assert "default-roles-hdhub" in someone.realm_roles
        refused = _token(
            keycloak,
            grant_type="password",
            client_id="hdhub-portal",
            username=person.username,
            password="a-long-password-1",
        )
        assert refused.status_code == 400 and refused.json()["error"] == "unauthorized_client"

        # A service, calling as itself with the installation's service secret.
        r = _token(
            keycloak,
            grant_type="client_credentials",
            client_id="hdhub-uploads",
            client_secret=realm_secret["HDHUB_SERVICE_CLIENT_SECRET"],
        )
        uploads = await verifier.verify(r.json()["access_token"])
        assert uploads.is_system and uploads.services == {"uploads"} and uploads.client_id == "hdhub-uploads"

        # A hospital system the identity service created: its one organisation and roles.
        r = _token(
            keycloak, grant_type="client_credentials", client_id="realm-his", client_secret="his-s3cret"
        )
        his = await verifier.verify(r.json()["access_token"])
        assert his.is_system and his.memberships[org.id].roles == {Role.REGISTRANT}


def test_the_stand_in_refuses_what_keycloak_would_not_give(realm_secret: dict[str, str]) -> None:
    """The realm as it was: a script mapper (no provider JAR), and ``clientScopes`` defined,
    which left tokens without ``sub`` and ``realm_access``."""
    scripted = realm()
    scripted["clients"][0]["protocolMappers"][1]["protocolMapper"] = "oidc-script-based-protocol-mapper"
    with pytest.raises(ValueError, match="no protocol mapper 'oidc-script-based-protocol-mapper'"):
        Realm.from_export(json.dumps(scripted), realm_secret)
    scoped = realm() | {"clientScopes": [{"name": "hdhub", "protocol": "openid-connect"}]}
    imported = Realm.from_export(json.dumps(scoped), realm_secret)
    client = imported.client("hdhub-uploads")
    assert client is not None
    claims = imported.claims(client, imported.service_accounts["hdhub-uploads"], "http://kc/realms/hdhub")
    assert "sub" not in claims and "realm_access" not in claims


def test_the_keycloak_readme_says_how_the_realm_is_imported() -> None:
    readme = (Path(REALM_FILE).parent / "README.md").read_text()
    assert "--import-realm" in readme and "hdhub-realm" in readme
