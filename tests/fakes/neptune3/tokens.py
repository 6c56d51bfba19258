"""API tokens and OAuth access tokens as the Neptune 3 clients expect them.

- The API token is standard base64 of JSON ``{"api_address", "api_url", "api_key"}``; both clients take
  their base URL from ``api_url`` (falling back to ``api_address``), so both carry the full ``http://`` URL.
- The access token is a JWT. The clients decode it without verifying the signature but require ``exp``,
  and neptune-query >= 1.10 also ``azp`` and ``iss`` (the refresh endpoint is ``{iss}/protocol/openid-connect/token``).
  The fake signs with HMAC so it can tell its own tokens from garbage, and enforces ``exp`` server-side.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from ..common import decode_api_token, hs256_claims, hs256_jwt, make_api_token

__all__ = ["CLIENT_ID", "REALM_PATH", "TokenIssuer", "decode_api_token", "make_api_token"]

CLIENT_ID = "neptune-cli"
REALM_PATH = "/auth/realms/neptune"


@dataclass
class TokenIssuer:
    """Issues and checks JWT access tokens and opaque refresh tokens."""

    base_url: str
    access_ttl_seconds: float = 3600.0 * 24
    secret: bytes = b""

    def __post_init__(self) -> None:
        if not self.secret:
            self.secret = secrets.token_bytes(16)

    @property
    def issuer(self) -> str:
        return self.base_url + REALM_PATH

    def access_token(self, username: str = "fake-user") -> str:
        now = time.time()
        claims = {
            "exp": int(now + self.access_ttl_seconds),
            "iat": int(now),
            "azp": CLIENT_ID,
            "iss": self.issuer,
            "sub": username,
            "preferred_username": username,
            "jti": secrets.token_hex(8),
        }
        return hs256_jwt(self.secret, claims)

    def refresh_token(self) -> str:
        return "refresh-" + secrets.token_hex(12)

    def check_access_token(self, token: str) -> str | None:
        """None when the token is valid, otherwise a reason for the 401."""
        try:
            payload = hs256_claims(self.secret, token)
        except ValueError as e:
            return str(e)
        if float(payload.get("exp", 0)) < time.time():
            return "token expired"
        return None
