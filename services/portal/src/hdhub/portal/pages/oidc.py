"""The portal as an OpenID Connect client (authorization code + PKCE, a public client),
through Authlib: the authorization URL, the code exchange, silent refresh and end-session
at the issuer. Keycloak in production, the embedded issuer otherwise: same paths."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from authlib.common.security import generate_token

from hdhub.common.config import platform

with warnings.catch_warnings():  # Authlib's notice about its httpx module's future name
    warnings.simplefilter("ignore")
    from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

__all__ = ["IssuerRefused", "Oidc", "generate_token"]

SCOPE = "openid profile email"


class IssuerRefused(Exception):
    """The issuer refused a code or a refresh token: the session is over."""


@dataclass(frozen=True)
class SignedIn:
    access_token: str
    refresh_token: str
    id_token: str
    expires_at: float
    claims: dict[str, Any]


class Oidc:
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        self._jwks: jwt.PyJWKSet | None = None

    @property
    def redirect_uri(self) -> str:
        return f"{platform().public_url}/portal/callback"

    def _endpoint(self, name: str) -> str:
        # Server-side calls go to the token URL's host (in-cluster), the browser to the issuer.
        return platform().token_url.rsplit("/", 1)[0] + f"/{name}"

    def _client(self) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            self.client_id,
            redirect_uri=self.redirect_uri,
            scope=SCOPE,
            code_challenge_method="S256",
            token_endpoint_auth_method="none",
            timeout=10,
        )

    def authorization_url(self, *, state: str, code_verifier: str, nonce: str, lang: str) -> str:
        client = self._client()
        url, _ = client.create_authorization_url(
            f"{platform().oidc_issuer}/protocol/openid-connect/auth",
            state=state,
            code_verifier=code_verifier,
            nonce=nonce,
            ui_locales=lang,
        )
        return str(url)

    async def exchange(self, *, code: str, code_verifier: str, nonce: str) -> SignedIn:
        async with self._client() as client:
            try:
                token = await client.fetch_token(
                    platform().token_url,
                    grant_type="authorization_code",
                    code=code,
                    code_verifier=code_verifier,
                )
            except (OAuthError, httpx.HTTPError) as exc:
                raise IssuerRefused(str(exc)) from exc
        claims = await self._id_claims(str(token["id_token"]), nonce)
        return self._signed_in(token, claims)

    async def refresh(self, refresh_token: str) -> SignedIn:
        async with self._client() as client:
            try:
                token = await client.refresh_token(platform().token_url, refresh_token=refresh_token)
            except (OAuthError, httpx.HTTPError) as exc:
                raise IssuerRefused(str(exc)) from exc
        claims = await self._id_claims(str(token["id_token"]), None) if token.get("id_token") else {}
        return self._signed_in(token, claims)

    async def end_session(self, refresh_token: str) -> None:
        """End the session at the issuer (Keycloak's back-channel logout); a failure is no
        reason to keep the person signed in here."""
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                await client.post(
                    self._endpoint("logout"),
                    data={"client_id": self.client_id, "refresh_token": refresh_token},
                )
        except httpx.HTTPError:
            pass

    @staticmethod
    def _signed_in(token: dict[str, Any], claims: dict[str, Any]) -> SignedIn:
        return SignedIn(
            access_token=str(token["access_token"]),
            refresh_token=str(token.get("refresh_token", "")),
            id_token=str(token.get("id_token", "")),
            expires_at=time.time() + float(token.get("expires_in", 60)),
            claims=claims,
        )

    async def _keys(self, *, force: bool = False) -> jwt.PyJWKSet:
        if self._jwks is None or force:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(platform().jwks_url)
                response.raise_for_status()
            self._jwks = jwt.PyJWKSet.from_dict(response.json())
        return self._jwks

    async def _id_claims(self, id_token: str, nonce: str | None) -> dict[str, Any]:
        """The ID token's claims once its signature, issuer, audience and nonce hold."""
        kid = jwt.get_unverified_header(id_token).get("kid")
        keys = await self._keys()
        if kid not in {k.key_id for k in keys.keys}:
            keys = await self._keys(force=True)
        key = next((k.key for k in keys.keys if k.key_id == kid), None)
        if key is None:
            raise IssuerRefused("ID token signed with an unknown key")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=["RS256"],
                audience=self.client_id,
                issuer=platform().oidc_issuer,
                leeway=30,
            )
        except jwt.PyJWTError as exc:
            raise IssuerRefused(f"ID token refused: {exc}") from exc
        if nonce is not None and claims.get("nonce") != nonce:
            raise IssuerRefused("ID token refused: nonce mismatch")
        return claims
