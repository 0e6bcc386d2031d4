"""A stand-in for the parts of Keycloak's admin REST API and OIDC endpoints that
:mod:`hdhub.identity.keycloak_backend` uses and that the services rely on, following
Keycloak's documented request and response shapes and status codes (Admin REST API of
Keycloak 26, OIDC token endpoint):

- ``POST /realms/{realm}/protocol/openid-connect/token``: ``client_credentials`` for a
  confidential client with a service account, ``password`` for people through a client with
  direct access grants (``unauthorized_client`` otherwise, as Keycloak answers for a client
  without them); ``invalid_grant`` "Invalid user credentials" (401) and "Account is not fully
  set up" (400) while a required action is pending. Tokens are RS256 JWTs whose claims come
  from the realm as Keycloak builds them: the client's default client scopes (Keycloak's
  built-in ``basic``, ``profile``, ``email``, ``roles``, ``web-origins``, ``acr``, which exist
  only when the realm file defines no ``clientScopes``) and its protocol mappers, each of a
  mapper type Keycloak ships (:data:`BUILT_IN_MAPPERS`); the keys at ``.../certs``.
- ``/admin/realms/{realm}/groups`` (search with ``q=attribute:value``, ``exact``, paged with
  ``first`` / ``max``), ``/groups/{id}``, ``/groups/{id}/children``, ``/groups/{id}/members``,
  ``/group-by-path/{path}``; ``/users`` (search with ``exact``), ``/users/{id}``,
  ``/users/{id}/reset-password``, ``/users/{id}/groups[/{groupId}]``,
  ``/users/{id}/logout`` (ends the sessions, sets the user's ``notBefore``),
  ``/users/{id}/role-mappings/realm``; ``/roles/{name}``, ``/roles/{name}/users``
  (paged with ``first`` / ``max``); ``/clients`` (search by ``clientId``), ``/clients/{id}``. Creation answers 201 with ``Location``,
  a duplicate 409 ``{"errorMessage": ...}``, an unknown id 404, changes 204; every admin
  call needs the admin client's bearer token (401 otherwise).

A realm is either the minimal one the identity adapter's contract tests need (:class:`Realm`)
or a realm export as Keycloak imports it at start, ``${VAR}`` placeholders resolved from the
environment (:meth:`Realm.from_export`). It keeps everything in memory; it is a test double,
not a Keycloak.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI, Form, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response

#: The OIDC protocol mapper types Keycloak 26 registers without a provider JAR (the
#: ``protocolMapper`` ids of its built-in OIDC mappers). The script mapper is not among them:
#: scripts need a JAR of their own (Keycloak's "JavaScript providers").
BUILT_IN_MAPPERS = frozenset(
    {
        "oidc-usermodel-attribute-mapper",
        "oidc-usermodel-property-mapper",
        "oidc-usermodel-realm-role-mapper",
        "oidc-usermodel-client-role-mapper",
        "oidc-full-name-mapper",
        "oidc-address-mapper",
        "oidc-hardcoded-claim-mapper",
        "oidc-hardcoded-role-mapper",
        "oidc-role-name-mapper",
        "oidc-group-membership-mapper",
        "oidc-audience-mapper",
        "oidc-audience-resolve-mapper",
        "oidc-allowed-origins-mapper",
        "oidc-acr-mapper",
        "oidc-sub-mapper",
        "oidc-usersessionmodel-note-mapper",
        "oidc-usersession-note-mapper",
        "oidc-claims-param-token-mapper",
        "oidc-pairwise-sha256",
        "oidc-organization-membership-mapper",
        "oidc-amr-mapper",
        "oidc-nonce-backwards-compatible-mapper",
    }
)
#: Keycloak's built-in client scopes that every client gets by default (created at import
#: only when the realm file defines no ``clientScopes``), and what their mappers put in an
#: access token.
DEFAULT_SCOPES = ("acr", "basic", "email", "profile", "roles", "web-origins")


@dataclass
class Realm:
    admin_client: str = "hdhub-identity"
    admin_secret: str = "standin-secret"
    #: clientId -> ClientRepresentation, as imported (secret included)
    client_reps: dict[str, dict[str, Any]] = field(
        default_factory=lambda: {
            "hdhub-cli": {"clientId": "hdhub-cli", "publicClient": True, "directAccessGrantsEnabled": True},
        }
    )
    #: Keycloak's built-in client scopes exist (the realm file defined no ``clientScopes``).
    built_in_scopes: bool = True
    #: realm role name -> its composites' realm roles and client roles (clientId -> roles)
    composites: dict[str, tuple[list[str], dict[str, list[str]]]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_members: dict[str, set[str]] = field(default_factory=dict)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: realm role name -> ids of the users holding it (the realm export's roles)
    realm_roles: dict[str, set[str]] = field(
        default_factory=lambda: {"hdhub-operator": set(), "default-roles-hdhub": set()}
    )
    #: clientId -> the id of its service-account user
    service_accounts: dict[str, str] = field(default_factory=dict)
    #: user id -> open sessions (one per password grant), ended by logout
    sessions: dict[str, int] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    signing_key: Any = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )

    def __post_init__(self) -> None:
        if self.admin_client not in self.client_reps:
            self.client_reps[self.admin_client] = {
                "clientId": self.admin_client,
                "publicClient": False,
                "secret": self.admin_secret,
                "serviceAccountsEnabled": True,
            }
        for client_id, rep in self.client_reps.items():
            if rep.get("serviceAccountsEnabled") and client_id not in self.service_accounts:
                self._add_user({"username": f"service-account-{client_id}", "enabled": True}, client_id)

    def _add_user(self, rep: dict[str, Any], service_account_of: str | None = None) -> str:
        uid = str(uuid.uuid4())
        self.users[uid] = {
            "id": uid,
            "username": rep["username"].lower(),
            "email": rep.get("email"),
            "firstName": rep.get("firstName", ""),
            "lastName": rep.get("lastName", ""),
            "enabled": rep.get("enabled", False),
            "emailVerified": rep.get("emailVerified", False),
            "requiredActions": list(rep.get("requiredActions") or []),
            "createdTimestamp": 0,
        }
        for role in rep.get("realmRoles") or []:
            self.realm_roles.setdefault(role, set()).add(uid)
        if service_account_of:
            self.service_accounts[service_account_of] = uid
            self.users[uid]["serviceAccountClientId"] = service_account_of
        return uid

    @classmethod
    def from_export(cls, text: str, env: dict[str, str]) -> Realm:
        """A realm as Keycloak imports a realm file at start: every ``${VAR}`` replaced by
        the variable's value (an unset one is an error here, so a test sees it)."""
        unresolved = sorted(set(re.findall(r"\$\{([^}:]+)\}", text)) - set(env))
        if unresolved:
            raise KeyError(f"the realm file needs these variables, unset: {unresolved}")
        rep = json.loads(re.sub(r"\$\{([^}:]+)\}", lambda m: _json_inner(env[m.group(1)]), text))
        admin = next(c for c in rep["clients"] if c["clientId"] == "hdhub-identity")
        roles = (rep.get("roles") or {}).get("realm") or []
        realm = cls(
            admin_client=admin["clientId"],
            admin_secret=admin["secret"],
            client_reps={c["clientId"]: c for c in rep["clients"]},
            built_in_scopes="clientScopes" not in rep,
            composites={
                r["name"]: (
                    list((r.get("composites") or {}).get("realm") or []),
                    dict((r.get("composites") or {}).get("client") or {}),
                )
                for r in roles
            },
            realm_roles={r["name"]: set() for r in roles} | {"default-roles-hdhub": set()},
            service_accounts={},
        )
        realm.service_accounts.clear()
        realm.users.clear()
        for user in rep.get("users") or []:
            realm._add_user(user, user.get("serviceAccountClientId"))
        for client_id, client in realm.client_reps.items():
            for mapper in client.get("protocolMappers") or []:
                if mapper["protocolMapper"] not in BUILT_IN_MAPPERS:
                    raise ValueError(
                        f"{client_id}: Keycloak has no protocol mapper {mapper['protocolMapper']!r}"
                    )
            if client.get("serviceAccountsEnabled") and client_id not in realm.service_accounts:
                realm._add_user({"username": f"service-account-{client_id}", "enabled": True}, client_id)
        return realm

    def client(self, client_id: str | None) -> dict[str, Any] | None:
        """A realm client, or one the identity adapter created."""
        if client_id in self.client_reps:
            return self.client_reps[client_id]
        return next((c for c in self.clients.values() if c["clientId"] == client_id), None)

    def effective_roles(self, uid: str) -> tuple[set[str], dict[str, set[str]]]:
        """A user's realm roles (every user holds the realm's default role) and client roles,
        composites expanded."""
        realm = {name for name, holders in self.realm_roles.items() if uid in holders} | {
            "default-roles-hdhub"
        }
        client: dict[str, set[str]] = {}
        todo = list(realm)
        while todo:
            inner, client_roles = self.composites.get(todo.pop(), ([], {}))
            for name in inner:
                if name not in realm:
                    realm.add(name)
                    todo.append(name)
            for client_id, names in client_roles.items():
                client.setdefault(client_id, set()).update(names)
        return realm, client

    def group_paths(self, uid: str) -> list[str]:
        return sorted(self.groups[g]["path"] for g, members in self.group_members.items() if uid in members)

    def claims(self, client: dict[str, Any], uid: str, issuer: str) -> dict[str, Any]:
        """An access token's claims, built as Keycloak builds them for this client and user."""
        user = self.users[uid]
        now = int(time.time())
        claims: dict[str, Any] = {
            "exp": now + 300,
            "iat": now,
            "jti": str(uuid.uuid4()),
            "iss": issuer,
            "typ": "Bearer",
            "azp": client["clientId"],
            "scope": "",
        }
        audience: list[str] = []
        scopes = client.get("defaultClientScopes") or list(DEFAULT_SCOPES)
        if self.built_in_scopes:
            realm_roles, client_roles = self.effective_roles(uid)
            for scope in scopes:
                if scope == "basic":
                    claims["sub"] = uid
                    claims["auth_time"] = now
                elif scope == "profile":
                    claims["preferred_username"] = user["username"]
                    names = [user.get("firstName"), user.get("lastName")]
                    if any(names):
                        claims["name"] = " ".join(n for n in names if n)
                elif scope == "email" and user.get("email"):
                    claims["email"] = user["email"]
                    claims["email_verified"] = bool(user.get("emailVerified"))
                elif scope == "roles":
                    claims["realm_access"] = {"roles": sorted(realm_roles)}
                    if client_roles:
                        claims["resource_access"] = {c: {"roles": sorted(r)} for c, r in client_roles.items()}
                        audience += sorted(client_roles)
                elif scope == "acr":
                    claims["acr"] = "1"
            claims["scope"] = " ".join(s for s in ("profile", "email") if s in scopes)
        for mapper in client.get("protocolMappers") or []:
            config = mapper.get("config") or {}
            if config.get("access.token.claim", "true") != "true":
                continue
            kind = mapper["protocolMapper"]
            if kind == "oidc-audience-mapper":
                audience.append(config.get("included.custom.audience") or config["included.client.audience"])
            elif kind == "oidc-group-membership-mapper":
                paths = self.group_paths(uid)
                full = config.get("full.path", "true") == "true"
                claims[config["claim.name"]] = paths if full else [p.rsplit("/", 1)[1] for p in paths]
            elif kind == "oidc-hardcoded-claim-mapper":
                value = config["claim.value"]
                claims[config["claim.name"]] = (
                    json.loads(value) if config.get("jsonType.label") == "JSON" else value
                )
            elif kind not in BUILT_IN_MAPPERS:
                raise ValueError(f"Keycloak has no protocol mapper {kind!r}")
        if audience:
            claims["aud"] = audience[0] if len(audience) == 1 else audience
        return claims

    def jwks(self) -> dict[str, Any]:
        from jwt.algorithms import RSAAlgorithm

        key = json.loads(RSAAlgorithm.to_jwk(self.signing_key.public_key()))
        return {"keys": [key | {"kid": "standin", "alg": "RS256", "use": "sig"}]}

    def sign(self, claims: dict[str, Any]) -> str:
        import jwt

        return jwt.encode(claims, self.signing_key, algorithm="RS256", headers={"kid": "standin"})


def _json_inner(value: str) -> str:
    """A value put inside a JSON string literal (the placeholder sits between quotes)."""
    return json.dumps(value)[1:-1]


def _service_account(realm: Realm, client: dict[str, Any]) -> str:
    """The service-account user of a client the identity adapter created (made on first use)."""
    uid = realm._add_user(
        {"username": f"service-account-{client['clientId']}", "enabled": True}, client["clientId"]
    )
    return uid


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errorMessage": message}, status_code=status)


def _not_found(message: str) -> HTTPException:
    return HTTPException(404, message)


def create_app(realm_name: str = "hdhub", realm: Realm | None = None) -> FastAPI:
    app = FastAPI()
    r = realm or Realm()
    app.state.realm = r
    admin_prefix = f"/admin/realms/{realm_name}"

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    @app.middleware("http")
    async def _record(request: Request, call_next: Any) -> Any:
        r.calls.append(f"{request.method} {request.url.path}")
        return await call_next(request)

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        if not authorization or authorization[7:] not in r.tokens:
            raise HTTPException(401, "HTTP 401 Unauthorized")

    Admin = Depends(admin)

    @app.get(f"/realms/{realm_name}/protocol/openid-connect/certs")
    async def certs() -> dict[str, Any]:
        return r.jwks()

    @app.post(f"/realms/{realm_name}/protocol/openid-connect/token")
    async def token(
        request: Request,
        grant_type: Annotated[str, Form()],
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
        username: Annotated[str | None, Form()] = None,
        password: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        client = r.client(client_id)
        invalid_client = JSONResponse(
            {"error": "invalid_client", "error_description": "Invalid client or Invalid client credentials"},
            401,
        )
        if client is None or (not client.get("publicClient") and client.get("secret") != client_secret):
            return invalid_client
        if grant_type == "client_credentials":
            if client.get("publicClient") or not client.get("serviceAccountsEnabled"):
                return JSONResponse(
                    {
                        "error": "unauthorized_client",
                        "error_description": "Client not enabled to retrieve service account",
                    },
                    401,
                )
            uid = r.service_accounts.get(client["clientId"]) or _service_account(r, client)
        elif grant_type == "password":
            if not client.get("directAccessGrantsEnabled"):
                return JSONResponse(
                    {
                        "error": "unauthorized_client",
                        "error_description": "Client not allowed for direct access grants",
                    },
                    400,
                )
            user = next(
                (
                    u
                    for u in r.users.values()
                    if u["username"] == (username or "").lower() or u.get("email") == (username or "").lower()
                ),
                None,
            )
            if user is None or r.passwords.get(user["id"]) != password:
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "Invalid user credentials"}, 401
                )
            if user.get("requiredActions"):
                return JSONResponse(
                    {"error": "invalid_grant", "error_description": "Account is not fully set up"}, 400
                )
            r.sessions[user["id"]] = r.sessions.get(user["id"], 0) + 1
            uid = user["id"]
        else:
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"}, 400
            )
        claims = r.claims(client, uid, f"{request.base_url}realms/{realm_name}")
        access = r.sign(claims)
        if grant_type == "client_credentials" and client["clientId"] == r.admin_client:
            r.tokens.add(access)
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": 300,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": claims["scope"],
            }
        )

    # --- groups ---------------------------------------------------------------------

    def _group_repr(g: dict[str, Any]) -> dict[str, Any]:
        children = [c for c in r.groups.values() if c.get("parentId") == g["id"]]
        out = dict(g)
        out["subGroupCount"] = len(children)
        out["subGroups"] = []
        return out

    def _path(g: dict[str, Any]) -> str:
        parent = r.groups.get(g.get("parentId") or "")
        return (_path(parent) if parent else "") + "/" + g["name"]

    def _new_group(payload: dict[str, Any], parent: str | None, request: Request) -> Response:
        siblings = [g for g in r.groups.values() if g.get("parentId") == parent]
        if any(g["name"] == payload["name"] for g in siblings):
            kind = "Top level group" if parent is None else "Sibling group"
            return _error(409, f"{kind} named '{payload['name']}' already exists.")
        gid = str(uuid.uuid4())
        g = {
            "id": gid,
            "name": payload["name"],
            "attributes": payload.get("attributes") or {},
            "realmRoles": [],
            "clientRoles": {},
        }
        if parent:
            g["parentId"] = parent
        g["path"] = _path(g)
        r.groups[gid] = g
        r.group_members[gid] = set()
        return Response(
            status_code=201, headers={"Location": f"{request.base_url}{admin_prefix[1:]}/groups/{gid}"}
        )

    @app.post(f"{admin_prefix}/groups", dependencies=[Admin])
    async def create_group(payload: dict[str, Any], request: Request) -> Response:
        return _new_group(payload, None, request)

    @app.get(f"{admin_prefix}/groups", dependencies=[Admin])
    async def top_level_groups(
        q: str | None = None,
        search: str | None = None,
        exact: bool = False,
        first: int = 0,
        max: int = 100,  # noqa: A002
    ) -> list[dict[str, Any]]:
        """Top-level groups; ``q`` is Keycloak's attribute query ``key:value`` (exact match
        with ``exact``), ``search`` a part of the name."""
        found = [g for g in r.groups.values() if not g.get("parentId")]
        if q:
            key, _, value = q.partition(":")
            found = [
                g
                for g in found
                if any(v == value if exact else value in v for v in g["attributes"].get(key, []))
            ]
        if search:
            found = [g for g in found if (g["name"] == search if exact else search in g["name"])]
        return [_group_repr(g) for g in sorted(found, key=lambda g: g["name"])][first : first + max]

    @app.get(f"{admin_prefix}/group-by-path/{{path:path}}", dependencies=[Admin])
    async def group_by_path(path: str) -> dict[str, Any]:
        wanted = "/" + path.strip("/")
        found = next((g for g in r.groups.values() if g["path"] == wanted), None)
        if found is None:
            raise _not_found(f"Group path does not exist: {wanted}")
        return _group_repr(found)

    @app.post(f"{admin_prefix}/groups/{{gid}}/children", dependencies=[Admin])
    async def create_child(gid: str, payload: dict[str, Any], request: Request) -> Response:
        if gid not in r.groups:
            raise _not_found("Could not find group by id")
        return _new_group(payload, gid, request)

    @app.get(f"{admin_prefix}/groups/{{gid}}", dependencies=[Admin])
    async def get_group(gid: str) -> dict[str, Any]:
        if gid not in r.groups:
            raise _not_found("Could not find group by id")
        return _group_repr(r.groups[gid])

    @app.get(f"{admin_prefix}/groups/{{gid}}/children", dependencies=[Admin])
    async def children(gid: str) -> list[dict[str, Any]]:
        if gid not in r.groups:
            raise _not_found("Could not find group by id")
        return [_group_repr(g) for g in r.groups.values() if g.get("parentId") == gid]

    def _user_repr(u: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in u.items() if k != "credentials"}

    @app.get(f"{admin_prefix}/groups/{{gid}}/members", dependencies=[Admin])
    async def members(gid: str) -> list[dict[str, Any]]:
        if gid not in r.groups:
            raise _not_found("Could not find group by id")
        return [_user_repr(r.users[u]) for u in sorted(r.group_members[gid]) if u in r.users]

    # --- users ----------------------------------------------------------------------

    @app.post(f"{admin_prefix}/users", dependencies=[Admin])
    async def create_user(payload: dict[str, Any], request: Request) -> Response:
        username = (payload.get("username") or "").lower()
        email = (payload.get("email") or "").lower() or None
        if any(u["username"] == username for u in r.users.values()):
            return _error(409, "User exists with same username")
        if email and any(u.get("email") == email for u in r.users.values()):
            return _error(409, "User exists with same email")
        uid = str(uuid.uuid4())
        required = list(payload.get("requiredActions") or [])
        for cred in payload.get("credentials") or []:
            if cred.get("type") == "password":
                r.passwords[uid] = cred["value"]
                if cred.get("temporary") and "UPDATE_PASSWORD" not in required:
                    required.append("UPDATE_PASSWORD")
        r.users[uid] = {
            "id": uid,
            "username": username,
            "email": email,
            "firstName": payload.get("firstName", ""),
            "lastName": payload.get("lastName", ""),
            "enabled": payload.get("enabled", False),
            "emailVerified": payload.get("emailVerified", False),
            "requiredActions": required,
            "createdTimestamp": 0,
        }
        return Response(
            status_code=201, headers={"Location": f"{request.base_url}{admin_prefix[1:]}/users/{uid}"}
        )

    @app.get(f"{admin_prefix}/users", dependencies=[Admin])
    async def search_users(
        username: str | None = None, email: str | None = None, exact: bool = False, search: str | None = None
    ) -> list[dict[str, Any]]:
        def match(value: str | None, wanted: str | None) -> bool:
            if wanted is None:
                return True
            value, wanted = (value or "").lower(), wanted.lower()
            return value == wanted if exact else wanted in value

        return [
            _user_repr(u)
            for u in r.users.values()
            if match(u["username"], username) and match(u.get("email"), email)
        ]

    @app.get(f"{admin_prefix}/users/{{uid}}", dependencies=[Admin])
    async def get_user(uid: str) -> dict[str, Any]:
        if uid not in r.users:
            raise _not_found("User not found")
        return _user_repr(r.users[uid])

    @app.delete(f"{admin_prefix}/users/{{uid}}", dependencies=[Admin])
    async def delete_user(uid: str) -> Response:
        if uid not in r.users:
            raise _not_found("User not found")
        del r.users[uid]
        r.passwords.pop(uid, None)
        r.sessions.pop(uid, None)
        for members_ in [*r.group_members.values(), *r.realm_roles.values()]:
            members_.discard(uid)
        return Response(status_code=204)

    @app.put(f"{admin_prefix}/users/{{uid}}/reset-password", dependencies=[Admin])
    async def reset_password(uid: str, payload: dict[str, Any]) -> Response:
        if uid not in r.users:
            raise _not_found("User not found")
        if not payload.get("value"):
            return _error(400, "Missing password value")
        r.passwords[uid] = payload["value"]
        actions = [a for a in r.users[uid]["requiredActions"] if a != "UPDATE_PASSWORD"]
        if payload.get("temporary", True):
            actions.append("UPDATE_PASSWORD")
        r.users[uid]["requiredActions"] = actions
        return Response(status_code=204)

    @app.get(f"{admin_prefix}/users/{{uid}}/groups", dependencies=[Admin])
    async def user_groups(uid: str, briefRepresentation: bool = True) -> list[dict[str, Any]]:  # noqa: N803
        if uid not in r.users:
            raise _not_found("User not found")
        out = []
        for gid, members_ in r.group_members.items():
            if uid in members_:
                g = r.groups[gid]
                rep = {"id": gid, "name": g["name"], "path": g["path"]}
                if g.get("parentId"):
                    rep["parentId"] = g["parentId"]
                if not briefRepresentation:
                    rep["attributes"] = g["attributes"]
                out.append(rep)
        return out

    @app.put(f"{admin_prefix}/users/{{uid}}/groups/{{gid}}", dependencies=[Admin])
    async def join(uid: str, gid: str) -> Response:
        if uid not in r.users:
            raise _not_found("User not found")
        if gid not in r.groups:
            raise _not_found("Group not found")
        r.group_members[gid].add(uid)
        return Response(status_code=204)

    @app.delete(f"{admin_prefix}/users/{{uid}}/groups/{{gid}}", dependencies=[Admin])
    async def leave(uid: str, gid: str) -> Response:
        if uid not in r.users:
            raise _not_found("User not found")
        if gid not in r.groups:
            raise _not_found("Group not found")
        r.group_members[gid].discard(uid)
        return Response(status_code=204)

    @app.post(f"{admin_prefix}/users/{{uid}}/logout", dependencies=[Admin])
    async def logout(uid: str) -> Response:
        # Keycloak removes the user's sessions and sets notBefore, so its refresh tokens die.
        if uid not in r.users:
            raise _not_found("User not found")
        r.sessions.pop(uid, None)
        r.users[uid]["notBefore"] = int(time.time())
        return Response(status_code=204)

    # --- realm roles ----------------------------------------------------------------

    def _role(name: str) -> dict[str, Any]:
        if name not in r.realm_roles:
            raise _not_found("Could not find role")
        return {"id": f"role-{name}", "name": name, "composite": False, "clientRole": False}

    @app.get(f"{admin_prefix}/roles/{{name}}", dependencies=[Admin])
    async def get_role(name: str) -> dict[str, Any]:
        return _role(name)

    @app.get(f"{admin_prefix}/roles/{{name}}/users", dependencies=[Admin])
    async def role_users(name: str, first: int = 0, max: int = 100) -> list[dict[str, Any]]:  # noqa: A002
        _role(name)
        holders = [_user_repr(r.users[u]) for u in sorted(r.realm_roles[name]) if u in r.users]
        return holders[first : first + max]

    @app.post(f"{admin_prefix}/users/{{uid}}/role-mappings/realm", dependencies=[Admin])
    async def add_realm_roles(uid: str, roles: list[dict[str, Any]]) -> Response:
        if uid not in r.users:
            raise _not_found("User not found")
        for role in roles:
            _role(role.get("name", ""))
            r.realm_roles[role["name"]].add(uid)
        return Response(status_code=204)

    # --- clients --------------------------------------------------------------------

    @app.post(f"{admin_prefix}/clients", dependencies=[Admin])
    async def create_client(payload: dict[str, Any], request: Request) -> Response:
        if any(c["clientId"] == payload["clientId"] for c in r.clients.values()):
            return _error(409, f"Client {payload['clientId']} already exists")
        cid = str(uuid.uuid4())
        client = dict(payload) | {"id": cid}
        client.setdefault("secret", secrets.token_urlsafe(24))
        for mapper in client.get("protocolMappers") or []:
            mapper.setdefault("id", str(uuid.uuid4()))
        r.clients[cid] = client
        return Response(
            status_code=201, headers={"Location": f"{request.base_url}{admin_prefix[1:]}/clients/{cid}"}
        )

    @app.get(f"{admin_prefix}/clients", dependencies=[Admin])
    async def list_clients(clientId: str | None = None) -> list[dict[str, Any]]:  # noqa: N803
        return [
            {k: v for k, v in c.items() if k != "secret"}
            for c in r.clients.values()
            if clientId is None or c["clientId"] == clientId
        ]

    @app.get(f"{admin_prefix}/clients/{{cid}}", dependencies=[Admin])
    async def get_client(cid: str) -> dict[str, Any]:
        if cid not in r.clients:
            raise _not_found("Could not find client")
        return {k: v for k, v in r.clients[cid].items() if k != "secret"}

    @app.put(f"{admin_prefix}/clients/{{cid}}", dependencies=[Admin])
    async def update_client(cid: str, payload: dict[str, Any]) -> Response:
        if cid not in r.clients:
            raise _not_found("Could not find client")
        r.clients[cid].update(payload)
        return Response(status_code=204)

    @app.delete(f"{admin_prefix}/clients/{{cid}}", dependencies=[Admin])
    async def delete_client(cid: str) -> Response:
        if cid not in r.clients:
            raise _not_found("Could not find client")
        del r.clients[cid]
        return Response(status_code=204)

    return app


class StandinServer:
    """The stand-in served by uvicorn on a loopback port, in a thread."""

    def __init__(self, realm: Realm | None = None) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.realm = realm or Realm()
        self.app = create_app(realm=self.realm)
        self.url = f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> StandinServer:
        import threading
        import time

        import uvicorn

        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.01)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=5)
