"""Who is calling: OIDC bearer tokens verified against the issuer's cached JWKS, and the
one authorisation policy (role x action x organisation) every service uses.

Tokens are shaped as Keycloak's for realm ``hdhub``; the organisations a caller belongs
to and its roles in each come in the ``organisations`` claim, in one of two shapes that
:func:`memberships_of` reads alike: Keycloak's built-in Group Membership mapper lists the
caller's group paths (an organisation is a top-level group named by its id, a role a child
group, a registry grant a child group ``registry:<project code>``:
``["/<org>", "/<org>/manager", "/<org>/registry:HDBP0012"]``); the embedded issuer names
each organisation with its roles and registries (``{"<org>": {"name", "nihdi", "roles",
"registries"}}``). Registry grants bound the data roles' actions (:data:`REGISTRY_ACTIONS`)
to the registries granted (:meth:`Principal.can_registry`, :class:`Scope`).
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import httpx
import jwt

from hdhub.common.errors import Problem, forbidden, unauthorized
from hdhub.common.revocation import Revocations, revocations

ORGANISATIONS_CLAIM = "organisations"
VERIFIED_CACHE = 10_000


class Role(StrEnum):
    """Roles are per organisation and add up (DOMAIN.md, Self-Service Portal)."""

    MANAGER = "manager"  # User Manager
    DP_MANAGER = "dp_manager"
    CERTIFICATE_EDITOR = "certificate_editor"
    CSV_UPLOAD_MANAGER = "csv_upload_manager"
    NIPPIN_MANAGER = "nippin_manager"
    REGISTRANT = "registrant"  # data role: registers for the organisation's registries
    READER = "reader"  # data role: reads registrations, changes nothing


class Action(StrEnum):
    CATALOGUE_READ = "catalogue:read"
    CATALOGUE_WRITE = "catalogue:write"  # import DCD workbooks (operator)
    REGISTRATION_READ = "registration:read"
    REGISTRATION_WRITE = "registration:write"
    REGISTRATION_REVIEW = "registration:review"  # corrections needed / approved / follow-up (central side)
    ORGANISATION_READ = "organisation:read"
    ORGANISATION_CREATE = "organisation:create"  # a User Manager creates organisations
    MEMBER_MANAGE = "member:manage"  # add and remove members, give them data roles
    ROLE_MANAGE = "role:manage"  # give and take the administrative roles (User Manager only)
    CLIENT_MANAGE = "client:manage"  # hospital-system clients: create, rotate, delete
    ACCOUNT_REQUEST_REVIEW = "account-request:review"  # approve or reject v1 account requests
    AUDIT_READ = "audit:read"  # the organisation's audit log of admin actions
    CERTIFICATE_MANAGE = "certificate:manage"
    #: Create an installation's organisation with its first User Manager (the central
    #: operator: SSP seed, "the initial User Manager is appointed internally").
    USER_MANAGER_APPOINT = "user-manager:appoint"
    EXPORT = "export"
    NIPPIN = "nippin"


_ADMIN = frozenset(
    {
        Action.ORGANISATION_READ,
        Action.MEMBER_MANAGE,
        Action.CLIENT_MANAGE,
        Action.ACCOUNT_REQUEST_REVIEW,
        Action.AUDIT_READ,
        Action.CATALOGUE_READ,
    }
)
# Neither manager role includes CERTIFICATE_MANAGE: only a Certificate Editor handles
# certificates (DOMAIN.md). A DP Manager adds members to the organisations it manages but
# neither creates organisations nor hands out administrative roles.
POLICY: Mapping[Role, frozenset[Action]] = {
    Role.MANAGER: _ADMIN | {Action.ORGANISATION_CREATE, Action.ROLE_MANAGE},
    Role.DP_MANAGER: _ADMIN,
    Role.CERTIFICATE_EDITOR: frozenset({Action.ORGANISATION_READ, Action.CERTIFICATE_MANAGE}),
    Role.CSV_UPLOAD_MANAGER: frozenset({Action.ORGANISATION_READ, Action.EXPORT, Action.CATALOGUE_READ}),
    Role.NIPPIN_MANAGER: frozenset({Action.ORGANISATION_READ, Action.NIPPIN}),
    Role.REGISTRANT: frozenset(
        {Action.ORGANISATION_READ, Action.CATALOGUE_READ, Action.REGISTRATION_READ, Action.REGISTRATION_WRITE}
    ),
    Role.READER: frozenset({Action.ORGANISATION_READ, Action.CATALOGUE_READ, Action.REGISTRATION_READ}),
}
# Operator-wide roles (realm roles in Keycloak), not tied to one organisation.
OPERATOR_ROLE = "hdhub-operator"
OPERATOR_ACTIONS = frozenset(
    {Action.CATALOGUE_READ, Action.CATALOGUE_WRITE, Action.REGISTRATION_REVIEW, Action.USER_MANAGER_APPOINT}
)
# Platform services acting as themselves (workers, the drop folder, SFTP intake): realm role
# ``hdhub-service:<service>`` on the service's own confidential client. A service token
# alone is trusted with no organisation: a service acts for one only while doing work a
# member of it started (an upload, an SFTP login, a submission), and says so with every
# call (:class:`ActingFor`, sent as gRPC metadata); the callee then lets it touch that
# organisation only. SERVICE_POLICY bounds what it may do there, SERVICE_CALLS which gRPC
# methods it may call at all (the call graph). REST routes refuse service tokens.
SERVICE_ROLE_PREFIX = "hdhub-service:"
SERVICE_POLICY: Mapping[str, frozenset[Action]] = {
    "uploads": frozenset({Action.CATALOGUE_READ, Action.REGISTRATION_READ, Action.REGISTRATION_WRITE}),
    "intake": frozenset({Action.CATALOGUE_READ, Action.REGISTRATION_READ, Action.ORGANISATION_READ}),
    "registrations": frozenset({Action.CATALOGUE_READ, Action.ORGANISATION_READ}),
    "nippin": frozenset({Action.CATALOGUE_READ, Action.REGISTRATION_READ, Action.ORGANISATION_READ}),
    "pseudonymisation": frozenset(),
    "portal": frozenset({Action.ORGANISATION_READ}),
    "sim": frozenset(),
}
#: Actions whose data belongs to no organisation: a service may do them acting for none.
UNSCOPED_ACTIONS = frozenset({Action.CATALOGUE_READ})

_REGISTRATIONS = "/hdhub.registrations.v1.RegistrationsService/"
_CENTRAL = "/hdhub.sim.v1.CentralReceiverService/"
_INTAKE_FILES = "/hdhub.intake.v1.IntakeService/ListFiles"  # IntakeSettings.file_reader_services
#: The call graph: the gRPC methods (full names) each service identity may call. Anything
#: else is PERMISSION_DENIED before the handler runs.
SERVICE_CALLS: Mapping[str, frozenset[str]] = {
    "uploads": frozenset(
        {*(_REGISTRATIONS + m for m in ("ValidateBatch", "UpsertBatch", "GetDcdVersion")), _INTAKE_FILES}
    ),
    "intake": frozenset(
        {
            _REGISTRATIONS + "FindRegistrationsByField",
            "/hdhub.identity.v1.IdentityService/VerifySftpPassword",
            # Files go to the central platform with their registrations (hdhub.intake.central).
            _REGISTRATIONS + "GetRegistration",
            "/hdhub.portal.v1.CertificatesService/GetActiveCertificate",
            _CENTRAL + "GetPublicKey",
            _CENTRAL + "GetFileOffset",
            _CENTRAL + "ReceiveFile",
        }
    ),
    "registrations": frozenset(
        {
            "/hdhub.portal.v1.CertificatesService/GetActiveCertificate",
            "/hdhub.pseudonymisation.v1.PseudonymisationService/PseudonymiseAndForward",
            _INTAKE_FILES,
            _CENTRAL + "GetPublicKey",
            _CENTRAL + "ReceiveRecords",
            _CENTRAL + "GetConfirmations",
            _CENTRAL + "GetDecisions",
            _CENTRAL + "AcknowledgeDecisions",
            "/hdhub.nippin.v1.NippinService/SubmitRegistration",
        }
    ),
    # Reconciliation (the nightly report): which organisations and stored registrations
    # should have made a message.
    "nippin": frozenset(
        {
            "/hdhub.portal.v1.CertificatesService/GetActiveCertificate",
            _REGISTRATIONS + "ListReimbursedDcds",
            _REGISTRATIONS + "StreamReimbursedRegistrations",
            _REGISTRATIONS + "ListReimbursedOrganisations",
        }
    ),
    "pseudonymisation": frozenset({_CENTRAL + "ReceivePseudonyms"}),
    "portal": frozenset(),
    "sim": frozenset(),
}


@dataclass(frozen=True, slots=True)
class ActingFor:
    """Whose work a service is doing: the organisation, and the person or hospital system
    (its username or client id) whose request started it."""

    organisation_id: str
    actor: str


#: A member's grant of every registry of the organisation (what members held before grants
#: per registry existed, and what a User Manager may still give).
ALL_REGISTRIES = "*"
#: Keycloak's group-path shape names a grant as a child group of the organisation, beside
#: the roles: ``/<org>/registry:HDBP0012``.
REGISTRY_GROUP_PREFIX = "registry:"
#: The actions a registry grant bounds: the data roles' work on registrations, uploads and
#: files. Administrative actions are per organisation.
REGISTRY_ACTIONS = frozenset({Action.REGISTRATION_READ, Action.REGISTRATION_WRITE})


@dataclass(frozen=True, slots=True)
class Membership:
    organisation_id: str
    name: str
    nihdi: str | None
    roles: frozenset[Role]
    #: The registries (project codes, ``HDBP0012``) the member works on here, or ``*``.
    registries: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a person or a hospital system (client credentials)."""

    subject: str
    username: str
    client_id: str | None
    is_system: bool
    memberships: Mapping[str, Membership]
    realm_roles: frozenset[str] = frozenset()
    token: str = field(default="", repr=False, compare=False)
    #: A service's current work (from the caller's metadata, or set by the service itself
    #: with :func:`hdhub.common.service_auth.acting_as_service`); None for people.
    acting_for: ActingFor | None = None

    @property
    def is_operator(self) -> bool:
        return OPERATOR_ROLE in self.realm_roles

    @property
    def services(self) -> frozenset[str]:
        """The platform services this caller is (``hdhub-service:<name>`` realm roles)."""
        return frozenset(
            r[len(SERVICE_ROLE_PREFIX) :] for r in self.realm_roles if r.startswith(SERVICE_ROLE_PREFIX)
        )

    def is_service(self, *names: str) -> bool:
        """Whether the caller is one of the named platform services (any, without names)."""
        mine = self.services
        return bool(mine & set(names)) if names else bool(mine)

    @property
    def author(self) -> str:
        """Who a change is recorded under: the person (or hospital system) a service acts
        for, the caller's own username otherwise."""
        return self.acting_for.actor if self.acting_for is not None and self.is_service() else self.username

    def roles_in(self, organisation_id: str) -> frozenset[Role]:
        """The caller's roles in an organisation (none when it is no member, services included)."""
        membership = self.memberships.get(organisation_id)
        return membership.roles if membership is not None else frozenset()

    def can(self, action: Action, organisation_id: str | None = None) -> bool:
        if self.is_service():
            return self._service_can(action, organisation_id)
        if organisation_id is None:
            return (
                self.is_operator
                and action in OPERATOR_ACTIONS
                or any(action in POLICY[r] for m in self.memberships.values() for r in m.roles)
            )
        if self.is_operator and action in OPERATOR_ACTIONS:
            return True
        membership = self.memberships.get(organisation_id)
        return membership is not None and any(action in POLICY[r] for r in membership.roles)

    def _service_can(self, action: Action, organisation_id: str | None) -> bool:
        if not any(action in SERVICE_POLICY.get(s, ()) for s in self.services):
            return False
        if action in UNSCOPED_ACTIONS:
            return True
        acting = self.acting_for
        return acting is not None and organisation_id in (None, acting.organisation_id)

    def registries_in(self, organisation_id: str) -> frozenset[str] | None:
        """The registries the caller works on in an organisation: None for every one (a
        service acting for it, a grant of ``*``), else the granted project codes."""
        if self.is_service():
            return None  # bounded by what it acts for and SERVICE_POLICY, not by grants
        membership = self.memberships.get(organisation_id)
        if membership is None:
            return frozenset()
        return None if ALL_REGISTRIES in membership.registries else membership.registries

    def can_registry(self, action: Action, organisation_id: str, registry: str) -> bool:
        """Whether the caller may do ``action`` on this registry's data in the organisation:
        the role's action, and, for registrations, uploads and files, a grant of the registry.
        The operator's central-side actions are not bounded by grants."""
        if not self.can(action, organisation_id):
            return False
        if action not in REGISTRY_ACTIONS:
            return True
        granted = self.registries_in(organisation_id)
        return granted is None or registry in granted

    def scope_for(self, action: Action) -> Scope:
        """The organisations the caller may do ``action`` in (as :meth:`organisations_for`),
        carrying the registries it may do it on in each when grants bound the action."""
        organisations = self.organisations_for(action)
        if action not in REGISTRY_ACTIONS:
            return Scope(organisations, {})
        return Scope(organisations, {o: self.registries_in(o) for o in organisations})

    def require_registry(self, action: Action, organisation_id: str, registry: str) -> None:
        """Raise a 403 problem naming the registry unless :meth:`can_registry`."""
        if not self.can(action, organisation_id):
            raise forbidden()
        if not self.can_registry(action, organisation_id, registry):
            raise registry_not_granted(registry)

    def require(self, action: Action, organisation_id: str | None = None) -> None:
        """Raise a 403 problem unless this caller may do ``action`` for the organisation.

        A caller who is no member of the organisation gets 404-equivalent silence about
        it elsewhere; here it gets 403 without learning whether the organisation exists.
        """
        if not self.can(action, organisation_id):
            raise forbidden()

    def organisations_for(self, action: Action) -> list[str]:
        if self.is_service():
            acting = self.acting_for
            return (
                [acting.organisation_id]
                if acting is not None and self.can(action, acting.organisation_id)
                else []
            )
        return [
            m.organisation_id for m in self.memberships.values() if any(action in POLICY[r] for r in m.roles)
        ]

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], token: str = "") -> Principal:
        memberships = memberships_of(claims.get(ORGANISATIONS_CLAIM))
        username = claims.get("preferred_username") or claims.get("sub", "")
        return cls(
            subject=claims["sub"],
            username=username,
            client_id=claims.get("azp"),
            is_system=username.startswith("service-account-"),
            memberships=memberships,
            realm_roles=frozenset((claims.get("realm_access") or {}).get("roles", [])),
            token=token,
        )


class Scope(list[str]):
    """Organisations a caller may act on (a plain list of ids, so every tenancy helper
    takes it) and the registries (project codes) it may act on in each: an organisation
    missing from ``registries`` or mapped to None is open on every registry."""

    def __init__(self, organisations: list[str], registries: Mapping[str, frozenset[str] | None]) -> None:
        super().__init__(organisations)
        self.registries = dict(registries)

    def allows(self, organisation_id: str, registry: str) -> bool:
        if organisation_id not in self:
            return False
        granted = self.registries.get(organisation_id)
        return granted is None or registry in granted

    def narrowed(self, organisation_id: str) -> Scope:
        """The same grants on one of its organisations (none when it is not one)."""
        return Scope([organisation_id] if organisation_id in self else [], self.registries)

    def limits(self) -> dict[str, frozenset[str]]:
        """The organisations of the scope that grants limit to some registries."""
        return {o: g for o, g in self.registries.items() if g is not None and o in self}


def scope_allows(organisations: Any, organisation_id: str, registry: str) -> bool:
    """Whether a scope (or a plain list of organisations, open on every registry) lets one
    registry of one organisation through."""
    if isinstance(organisations, Scope):
        return organisations.allows(organisation_id, registry)
    return organisation_id in organisations


def memberships_of(claim: Any) -> dict[str, Membership]:
    """The organisations and roles of an ``organisations`` claim, either shape: group paths
    (Keycloak's Group Membership mapper, full paths; names and NIHDI numbers are not in
    them) or the embedded issuer's map. Roles this code does not know are left out."""
    if isinstance(claim, list):
        roles: dict[str, set[str]] = {}
        registries: dict[str, set[str]] = {}
        for path in claim:
            parts = str(path).strip("/").split("/")
            if len(parts) > 2 or not parts[0]:
                continue  # deeper groups are no organisation or role of hdhub's
            roles.setdefault(parts[0], set())
            registries.setdefault(parts[0], set())
            for child in parts[1:]:
                if child.startswith(REGISTRY_GROUP_PREFIX):
                    registries[parts[0]].add(child[len(REGISTRY_GROUP_PREFIX) :])
                else:
                    roles[parts[0]].add(child)
        claim = {org: {"roles": sorted(r), "registries": sorted(registries[org])} for org, r in roles.items()}
    memberships: dict[str, Membership] = {}
    for org_id, info in (claim or {}).items():
        known = frozenset(Role(r) for r in info.get("roles", []) if r in Role._value2member_map_)
        granted = frozenset(str(r) for r in info.get("registries", []))
        memberships[org_id] = Membership(org_id, info.get("name", ""), info.get("nihdi"), known, granted)
    return memberships


def registry_not_granted(registry: str) -> Problem:
    """403: the caller holds the role but not this registry (a User Manager grants it)."""
    return Problem(
        403,
        "registry-not-granted",
        "You have no access to this registry",
        f"Registry {registry} is not granted to you in this organisation; a User Manager or "
        "DP Manager grants registries to members.",
    )


def revocation_subject(principal: Principal) -> str:
    """Whose access a token carries, as identity revokes it: a person's subject, or
    ``client:<client id>`` for a hospital system or service (Keycloak gives a client's
    service account a subject of its own, so the client id is the name both issuers share)."""
    return f"client:{principal.client_id}" if principal.is_system else principal.subject


# The caller of the current request or RPC; gRPC clients forward its token downstream.
current_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "current_principal", default=None
)


class TokenVerifier:
    """Verifies RS256 bearer tokens locally against the issuer's JWKS.

    Keys are cached for ``cache_seconds``; a token signed with an unknown ``kid`` triggers
    one refresh (at most every 10 s) so key rotation at the issuer needs no restart.
    """

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str,
        audience: str,
        cache_seconds: int = 300,
        transport: httpx.AsyncBaseTransport | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        self.issuer = issuer
        self.revocations = revocations  # None: the process-wide list
        self.transport = transport
        self.jwks_url = jwks_url
        self.audience = audience
        self.cache_seconds = cache_seconds
        self._keys: dict[str, Any] = {}
        self._verified: OrderedDict[str, tuple[float, Principal, float]] = OrderedDict()
        self._fetched_at = 0.0
        self._lock = asyncio.Lock()

    async def _refresh(self, *, force: bool = False) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if self._keys and (age < 10 or (not force and age < self.cache_seconds)):
                return
            async with httpx.AsyncClient(timeout=5.0, transport=self.transport) as client:
                response = await client.get(self.jwks_url)
                response.raise_for_status()
            jwks = jwt.PyJWKSet.from_dict(response.json())
            self._keys = {k.key_id: k.key for k in jwks.keys if k.key_id}
            self._fetched_at = time.monotonic()

    async def _key_for(self, kid: str) -> Any:
        if time.monotonic() - self._fetched_at > self.cache_seconds or kid not in self._keys:
            try:
                await self._refresh(force=kid not in self._keys)
            except httpx.HTTPError as exc:
                if kid not in self._keys:
                    raise Problem(
                        503, "issuer-unavailable", "The identity provider cannot be reached"
                    ) from exc
        if kid not in self._keys:
            raise unauthorized("The token is signed with an unknown key.")
        return self._keys[kid]

    async def verify(self, token: str) -> Principal:
        """The principal of a valid token; a 401 problem otherwise.

        A token verified once is remembered until it expires (at most ``VERIFIED_CACHE``
        tokens): hospital systems send the same token with every request, and each hop of
        a request (REST edge, then each gRPC server) verifies it. Whether its subject's
        access was revoked since it was issued is checked every time.
        """
        now = time.time()
        cached = self._verified.get(token)
        if cached is not None and cached[0] > now:
            self._verified.move_to_end(token)
        else:
            cached = await self._verify(token)
            self._verified[token] = cached
            if len(self._verified) > VERIFIED_CACHE:
                self._verified.popitem(last=False)
        _, principal, issued_at = cached
        if issued_at < await (self.revocations or revocations()).not_before(revocation_subject(principal)):
            raise unauthorized("The bearer token was revoked; log in again.")
        return principal

    async def _verify(self, token: str) -> tuple[float, Principal, float]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthorized("The bearer token is malformed.") from exc
        if header.get("alg") != "RS256" or not header.get("kid"):
            raise unauthorized("The bearer token must be RS256 with a key id.")
        key = await self._key_for(header["kid"])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "iss"]},
                leeway=30,
            )
        except jwt.ExpiredSignatureError as exc:
            raise unauthorized("The bearer token has expired.") from exc
        except jwt.PyJWTError as exc:
            raise unauthorized("The bearer token is not valid here.") from exc
        return float(claims["exp"]), Principal.from_claims(claims, token), float(claims["iat"])


_verifier: TokenVerifier | None = None


def verifier() -> TokenVerifier:
    """The process-wide verifier, configured from :func:`hdhub.common.config.platform`."""
    global _verifier
    if _verifier is None:
        from hdhub.common.config import platform

        s = platform()
        _verifier = TokenVerifier(
            issuer=s.oidc_issuer,
            jwks_url=s.jwks_url,
            audience=s.oidc_audience,
            cache_seconds=s.jwks_cache_seconds,
        )
    return _verifier


def set_verifier(v: TokenVerifier | None) -> None:
    global _verifier
    _verifier = v
