"""The relying party's side of OpenID Connect, through Authlib: discovery, the authorization
URL (PKCE S256, state, nonce), the code exchange, and the checks of what comes back.

Every check of a token is Authlib's (``joserfc`` for the signature against the provider's
JWKS and the algorithms it advertises, ``authlib.oidc.core.CodeIDToken`` for iss, aud, exp,
iat, nonce, azp and at_hash): nothing here decodes or compares a token by hand. The userinfo
answer may be a signed JWT (ProConnect's is): it is checked the same way, and its ``sub`` must
be the ID token's.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.oauth2.claims import JWTClaims
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from veille.web.oidc.config import OidcSettings

METADATA_TTL = 3600.0  # the provider's keys rotate: read its discovery document again hourly
HTTP_TIMEOUT = 10.0
ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                        "ES512", "EdDSA"})


class OidcError(RuntimeError):
    """The provider did not answer as OpenID Connect says, or a token failed a check."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason  # a short label for the log and the metric


@dataclass(frozen=True)
class Pending:
    """What the login keeps in the session until the callback (never sent to the provider
    except as the state, the nonce and the verifier's S256 hash)."""

    state: str
    nonce: str
    code_verifier: str
    next: str

    def dump(self) -> dict[str, str]:
        return {"state": self.state, "nonce": self.nonce, "code_verifier": self.code_verifier,
                "next": self.next}


@dataclass(frozen=True)
class SignedIn:
    claims: dict[str, Any]  # the ID token's, completed by the userinfo's
    id_token: str  # kept for the provider's logout (id_token_hint)
    issuer: str
    subject: str
    expires_at: int


@dataclass
class Provider:
    settings: OidcSettings
    _metadata: dict[str, Any] | None = None
    _metadata_at: float = 0.0
    _jwks: KeySet | None = field(default=None, repr=False)

    @property
    def issuer(self) -> str:
        return self.settings.issuer.rstrip("/")

    def _client(self, redirect_uri: str | None = None) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(
            client_id=self.settings.client_id,
            client_secret=self.settings.client_secret.get_secret_value() or None,
            scope=self.settings.scopes, redirect_uri=redirect_uri, code_challenge_method="S256",
            timeout=HTTP_TIMEOUT)

    async def metadata(self, refresh: bool = False) -> dict[str, Any]:
        if self._metadata is None or refresh or time.monotonic() - self._metadata_at > METADATA_TTL:
            _require_https(self.issuer)
            url = f"{self.issuer}/.well-known/openid-configuration"
            meta = await _get_json(url, "discovery")
            # OpenID Connect Discovery 1.0 §4.3: the document's issuer is the one configured.
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise OidcError(f"{url} names issuer {meta.get('issuer')!r}, not {self.issuer!r}",
                                "discovery_issuer")
            for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                if not isinstance(meta.get(key), str):
                    raise OidcError(f"{url}: no {key}", "discovery_incomplete")
            self._metadata, self._metadata_at, self._jwks = meta, time.monotonic(), None
        return self._metadata

    async def keys(self, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            meta = await self.metadata()
            self._jwks = KeySet.import_key_set(await _get_json(meta["jwks_uri"], "jwks"))  # type: ignore[arg-type]
        return self._jwks

    async def authorization_url(self, redirect_uri: str, next_path: str) -> tuple[str, Pending]:
        meta = await self.metadata()
        pending = Pending(state=generate_token(43), nonce=generate_token(43),
                          code_verifier=generate_token(64), next=next_path)
        async with self._client(redirect_uri) as client:
            url, _state = client.create_authorization_url(
                meta["authorization_endpoint"], state=pending.state, nonce=pending.nonce,
                code_verifier=pending.code_verifier)
        return str(url), pending

    async def sign_in(self, code: str, redirect_uri: str, pending: Pending) -> SignedIn:
        """Exchange ``code`` (with the PKCE verifier), check the ID token, read the userinfo."""
        meta = await self.metadata()
        async with self._client(redirect_uri) as client:
            try:
                token = await client.fetch_token(meta["token_endpoint"], code=code,
                                                 code_verifier=pending.code_verifier,
                                                 grant_type="authorization_code")
            except Exception as exc:  # Authlib raises OAuthError, httpx its own: same answer
                raise OidcError(f"the token endpoint refused the code: {exc}", "token_exchange") from exc
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcError("the token response has no id_token (is the openid scope granted?)",
                            "no_id_token")
        claims = await self.check_id_token(id_token, pending.nonce, token.get("access_token"))
        if meta.get("userinfo_endpoint") and token.get("access_token"):
            extra = await self.userinfo(str(token["access_token"]))
            if extra.get("sub") != claims["sub"]:
                raise OidcError("the userinfo's sub is not the ID token's", "userinfo_sub")
            claims = {**extra, **claims}
        return SignedIn(claims, id_token, str(claims["iss"]), str(claims["sub"]), int(claims["exp"]))

    async def _decode(self, token: str) -> jwt.Token:
        meta = await self.metadata()
        advertised = meta.get("id_token_signing_alg_values_supported") or ["RS256"]
        # Signatures by the provider's published keys only: never "none", and never an HMAC
        # (HS*), which the JWKS cannot verify and which would let a key's public half be
        # taken as a shared secret. Register the client with RS256 or ES256 (ProConnect too).
        registry = JWSRegistry(algorithms=[a for a in advertised if a in ASYMMETRIC])
        try:
            try:
                return jwt.decode(token, await self.keys(), registry=registry)
            except InvalidKeyIdError:  # the provider rotated its keys since we read them
                return jwt.decode(token, await self.keys(refresh=True), registry=registry)
        except (JoseError, ValueError) as exc:
            raise OidcError(f"token signature or format refused: {exc}", "signature") from exc

    async def check_id_token(self, id_token: str, nonce: str, access_token: str | None = None,
                             now: int | None = None) -> dict[str, Any]:
        """The ID token's claims once Authlib accepted its signature, issuer, audience, times,
        nonce (and at_hash with the access token); OidcError otherwise."""
        decoded = await self._decode(id_token)
        params = {"nonce": nonce, "client_id": self.settings.client_id}
        if access_token:
            params["access_token"] = access_token
        options = {"iss": {"essential": True, "values": [self.issuer]},
                   "aud": {"essential": True, "values": [self.settings.client_id]}}
        claims = CodeIDToken(decoded.claims, decoded.header, options, params)
        _validate(claims, now, self.settings.leeway_seconds)
        return dict(claims)

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        meta = await self.metadata()
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            try:
                resp = await http.get(meta["userinfo_endpoint"],
                                      headers={"Authorization": f"Bearer {access_token}"})
            except httpx.HTTPError as exc:
                raise OidcError(f"userinfo unreachable: {exc}", "userinfo") from exc
        if resp.status_code != 200:
            raise OidcError(f"userinfo answered {resp.status_code}", "userinfo")
        if resp.headers.get("content-type", "").split(";")[0].strip() == "application/jwt":
            decoded = await self._decode(resp.text.strip())
            # OpenID Connect Core §5.3.2: a signed userinfo carries iss and aud.
            claims = JWTClaims(decoded.claims, decoded.header,
                               {"iss": {"essential": True, "values": [self.issuer]},
                                "aud": {"essential": True, "values": [self.settings.client_id]}})
            _validate(claims, None, self.settings.leeway_seconds)
            return dict(claims)
        try:
            data = resp.json()
        except ValueError as exc:
            raise OidcError("userinfo is neither JSON nor a JWT", "userinfo") from exc
        if not isinstance(data, dict):
            raise OidcError("userinfo is not a JSON object", "userinfo")
        return data

    async def logout_url(self, id_token: str | None, after: str) -> str | None:
        """The provider's RP-initiated logout URL, when it advertises ``end_session_endpoint``."""
        try:
            meta = await self.metadata()
        except OidcError:
            return None
        endpoint = meta.get("end_session_endpoint")
        if not isinstance(endpoint, str):
            return None
        params = {"client_id": self.settings.client_id, "post_logout_redirect_uri": after,
                  "state": generate_token(43)}
        if id_token:
            params["id_token_hint"] = id_token
        return str(httpx.URL(endpoint, params=params))


def _validate(claims: JWTClaims, now: int | None, leeway: int) -> None:
    try:
        claims.validate(now=now, leeway=leeway)
    except ExpiredTokenError as exc:
        raise OidcError(f"token refused: {exc}", "expired") from exc
    except ClaimError as exc:  # the claim's name is the reason: iss, aud, nonce, at_hash...
        raise OidcError(f"token refused: {exc}", exc.claim) from exc
    except JoseError as exc:
        raise OidcError(f"token refused: {exc}", "claims") from exc


def _require_https(url: str) -> None:
    """Tokens and codes travel in clear over http: only a provider on this machine may use it."""
    parsed = httpx.URL(url)
    try:
        loopback = parsed.host == "localhost" or ipaddress.ip_address(parsed.host).is_loopback
    except ValueError:
        loopback = False
    if parsed.scheme != "https" and not loopback:
        raise OidcError(f"the issuer {url} is not https (only a provider on loopback may be http)",
                        "insecure_issuer")


async def _get_json(url: str, what: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        try:
            resp = await http.get(url)
            resp.raise_for_status()
            data = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcError(f"{what}: {url}: {exc}", what) from exc
    if not isinstance(data, dict):
        raise OidcError(f"{what}: {url}: not a JSON object", what)
    return data
