"""A small OpenID Connect provider that runs inside the test process.

It serves discovery, an authorization endpoint that approves at once, a token
endpoint issuing RS256-signed ID tokens, the public keys and userinfo, on
127.0.0.1 and an ephemeral port in a thread (Werkzeug). Nothing reaches the
network. The test says who the next person to sign in is with
:meth:`FakeOidcProvider.next_login`, and can make the provider misbehave (send
back a forged ``state``, or refuse with an ``error``).

The ID token is signed with joserfc, the JOSE library Authlib itself verifies
with (``authlib.jose`` is deprecated in favour of it).
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus, urlencode

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

CLIENT_ID = "credits-test-client"
CLIENT_SECRET = "credits-test-secret"
TOKEN_LIFETIME_S = 300
DISPLAY_NAME = "Test University"  # what the app calls this provider on its sign-in page


@dataclass(frozen=True)
class Login:
    """Who the provider says signed in, and whether it vouches for the email
    (None: the ``email_verified`` claim is left out)."""

    email: str
    email_verified: bool | None = True
    subject: str = field(default_factory=lambda: secrets.token_hex(8))


@dataclass(frozen=True)
class _Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    login: Login


@dataclass
class FakeOidcProvider:
    """The provider's state; :func:`running_provider` serves it over HTTP."""

    issuer: str = ""
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, parameters={"kid": secrets.token_hex(4)})
    )
    # The next authorization request: who signs in, and how the answer goes wrong.
    login: Login | None = None
    forged_state: str | None = None
    error: str | None = None
    # Signs ID tokens with this key instead (one the JWKS does not publish).
    impostor_key: RSAKey | None = None
    # What the provider saw, for tests to assert on.
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: int = 0
    _grants: dict[str, _Grant] = field(default_factory=dict)
    _access_tokens: dict[str, Login] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def next_login(
        self, email: str, *, email_verified: bool | None = True, subject: str | None = None
    ) -> Login:
        """The next authorization request signs in ``email`` (as ``subject``, else a new one)."""
        if subject is None:
            self.login = Login(email=email, email_verified=email_verified)
        else:
            self.login = Login(email=email, email_verified=email_verified, subject=subject)
        return self.login

    # -- the WSGI application -------------------------------------------------

    _routes = Map(
        [
            Rule("/.well-known/openid-configuration", endpoint="discovery", methods=["GET"]),
            Rule("/authorize", endpoint="authorize", methods=["GET"]),
            Rule("/token", endpoint="token", methods=["POST"]),
            Rule("/jwks", endpoint="jwks", methods=["GET"]),
            Rule("/userinfo", endpoint="userinfo", methods=["GET", "POST"]),
        ]
    )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        adapter = self._routes.bind_to_environ(environ)
        try:
            endpoint, _ = adapter.match()
        except HTTPException as error:  # 404, 405: themselves responses
            return error(environ, start_response)
        response: Response = getattr(self, f"_{endpoint}")(request)
        return response(environ, start_response)

    def _discovery(self, _request: Request) -> Response:
        return _json(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "email", "profile"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "grant_types_supported": ["authorization_code"],
                "claims_supported": ["sub", "iss", "aud", "email", "email_verified", "nonce"],
            }
        )

    def _authorize(self, request: Request) -> Response:
        query = request.args.to_dict()
        self.authorize_requests.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or not redirect_uri:
            return Response("unknown client or no redirect_uri", status=400)
        if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
            return _back(redirect_uri, error="invalid_request", state=query.get("state"))
        state = self.forged_state or query.get("state")
        if self.error is not None:
            return _back(redirect_uri, error=self.error, state=state)
        if self.login is None:
            return _back(redirect_uri, error="access_denied", state=state)
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._grants[code] = _Grant(
                client_id=self.client_id,
                redirect_uri=redirect_uri,
                nonce=query.get("nonce"),
                login=self.login,
            )
        return _back(redirect_uri, code=code, state=state)

    def _token(self, request: Request) -> Response:
        self.token_requests += 1
        client_id, client_secret = _client_credentials(request)
        if client_id != self.client_id or not secrets.compare_digest(
            client_secret or "", self.client_secret
        ):
            return _json({"error": "invalid_client"}, status=401)
        if request.form.get("grant_type") != "authorization_code":
            return _json({"error": "unsupported_grant_type"}, status=400)
        with self._lock:
            grant = self._grants.pop(request.form.get("code", ""), None)  # codes are single-use
        if grant is None or grant.redirect_uri != request.form.get("redirect_uri"):
            return _json({"error": "invalid_grant"}, status=400)
        access_token = secrets.token_urlsafe(24)
        with self._lock:
            self._access_tokens[access_token] = grant.login
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "sub": grant.login.subject,
            "email": grant.login.email,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
        }
        if grant.login.email_verified is not None:
            claims["email_verified"] = grant.login.email_verified
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        key = self.impostor_key or self.key
        header = {"alg": "RS256", "kid": self.key.kid}
        return _json(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_S,
                "scope": "openid email profile",
                "id_token": jwt.encode(header, claims, key, algorithms=["RS256"]),
            }
        )

    def _jwks(self, _request: Request) -> Response:
        return _json(KeySet([self.key]).as_dict(private=False))

    def _userinfo(self, request: Request) -> Response:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        login = self._access_tokens.get(token) if scheme.lower() == "bearer" else None
        if login is None:
            return _json({"error": "invalid_token"}, status=401)
        body: dict[str, Any] = {"sub": login.subject, "email": login.email}
        if login.email_verified is not None:
            body["email_verified"] = login.email_verified
        return _json(body)


def _json(body: Mapping[str, object], status: int = 200) -> Response:
    return Response(
        json.dumps(body),
        status=status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )


def _back(redirect_uri: str, **params: str | None) -> Response:
    query = urlencode({name: value for name, value in params.items() if value is not None})
    separator = "&" if "?" in redirect_uri else "?"
    return Response(status=302, headers={"Location": f"{redirect_uri}{separator}{query}"})


def _client_credentials(request: Request) -> tuple[str | None, str | None]:
    """client_secret_basic, else client_secret_post."""
    scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None, None
        client_id, _, client_secret = decoded.partition(":")
        return unquote_plus(client_id), unquote_plus(client_secret)
    return request.form.get("client_id"), request.form.get("client_secret")


@contextmanager
def running_provider() -> Iterator[FakeOidcProvider]:
    """A provider serving on 127.0.0.1 and a free port until the block ends."""
    provider = FakeOidcProvider()
    server: BaseWSGIServer = make_server("127.0.0.1", 0, provider, threaded=True)
    provider.issuer = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        thread.join(timeout=5)
