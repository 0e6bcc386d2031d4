"""A stand-in for the parts of Keycloak's admin REST API and OIDC endpoints that
:mod:`hdhub.identity.keycloak_backend` uses, following Keycloak's documented request and
response shapes and status codes (Admin REST API of Keycloak 24+, OIDC token endpoint):

- ``POST /realms/{realm}/protocol/openid-connect/token``: ``client_credentials`` for the
  admin client, ``password`` for people; ``invalid_grant`` "Invalid user credentials"
  (401) and "Account is not fully set up" (400) while a required action is pending.
- ``/admin/realms/{realm}/groups``, ``/groups/{id}``, ``/groups/{id}/children``,
  ``/groups/{id}/members``; ``/users`` (search with ``exact``), ``/users/{id}``,
  ``/users/{id}/reset-password``, ``/users/{id}/groups[/{groupId}]``,
  ``/users/{id}/logout`` (ends the sessions, sets the user's ``notBefore``),
  ``/users/{id}/role-mappings/realm``; ``/roles/{name}``, ``/roles/{name}/users``
  (paged with ``first`` / ``max``); ``/clients`` (search by ``clientId``), ``/clients/{id}``. Creation answers 201 with ``Location``,
  a duplicate 409 ``{"errorMessage": ...}``, an unknown id 404, changes 204; every admin
  call needs the admin client's bearer token (401 otherwise).

It keeps everything in memory; it is a test double, not a Keycloak.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Form, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response


@dataclass
class Realm:
    admin_client: str = "hdhub-identity"
    admin_secret: str = "standin-secret"
    public_clients: tuple[str, ...] = ("hdhub-portal",)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    passwords: dict[str, str] = field(default_factory=dict)
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)
    group_members: dict[str, set[str]] = field(default_factory=dict)
    clients: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: realm role name -> ids of the users holding it (the realm export's roles)
    realm_roles: dict[str, set[str]] = field(
        default_factory=lambda: {"hdhub-operator": set(), "default-roles-hdhub": set()}
    )
    #: user id -> open sessions (one per password grant), ended by logout
    sessions: dict[str, int] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)


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

    @app.post(f"/realms/{realm_name}/protocol/openid-connect/token")
    async def token(
        grant_type: Annotated[str, Form()],
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form()] = None,
        username: Annotated[str | None, Form()] = None,
        password: Annotated[str | None, Form()] = None,
    ) -> JSONResponse:
        if grant_type == "client_credentials":
            if client_id != r.admin_client or client_secret != r.admin_secret:
                return JSONResponse(
                    {
                        "error": "unauthorized_client",
                        "error_description": "Invalid client or Invalid client credentials",
                    },
                    401,
                )
        elif grant_type == "password":
            if client_id not in r.public_clients:
                return JSONResponse(
                    {
                        "error": "invalid_client",
                        "error_description": "Invalid client or Invalid client credentials",
                    },
                    401,
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
        else:
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Unsupported grant_type"}, 400
            )
        access = secrets.token_urlsafe(16)
        if grant_type == "client_credentials":
            r.tokens.add(access)
        return JSONResponse(
            {
                "access_token": access,
                "expires_in": 300,
                "refresh_expires_in": 0,
                "token_type": "Bearer",
                "not-before-policy": 0,
                "scope": "profile email",
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
