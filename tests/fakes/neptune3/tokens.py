"""API tokens and OAuth access tokens as the Neptune 3 clients expect them.

- The API token is standard base64 of JSON ``{"api_address", "api_url", "api_key"}``; both clients take
  their base URL from ``api_url`` (falling back to ``api_address``), so both carry the full ``http://`` URL.
- The access token is a JWT. The clients decode it without verifying the signature but require ``exp``,
  and neptune-query >= 1.10 also ``azp`` and ``iss`` (the refresh endpoint is ``{iss}/protocol/openid-connect/token``).
  The fake signs with HMAC so it can tell its own tokens from garbage, and enforces ``exp`` server-side.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

CLIENT_ID = "neptune-cli"
REALM_PATH = "/auth/realms/neptune"


def make_api_token(base_url: str, api_key: str) -> str:
    """A Neptune API token pointing at ``base_url``."""
    payload = {"api_address": base_url, "api_url": base_url, "api_key": api_key}
    return base64.b64encode(json.dumps(payload).encode("utf-8")).decode("ascii")


def decode_api_token(token: str) -> dict[str, Any] | None:
    try:
        data = json.loads(base64.b64decode(token.strip().encode("ascii")).decode("utf-8"))
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


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
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {
            "exp": int(now + self.access_ttl_seconds),
            "iat": int(now),
            "azp": CLIENT_ID,
            "iss": self.issuer,
            "sub": username,
            "preferred_username": username,
            "jti": secrets.token_hex(8),
        }
        signing_input = _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(payload).encode())
        sig = hmac.new(self.secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return signing_input + "." + _b64url(sig)

    def refresh_token(self) -> str:
        return "refresh-" + secrets.token_hex(12)

    def check_access_token(self, token: str) -> str | None:
        """None when the token is valid, otherwise a reason for the 401."""
        parts = token.split(".")
        if len(parts) != 3:
            return "malformed token"
        signing_input = parts[0] + "." + parts[1]
        expected = hmac.new(self.secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        try:
            if not hmac.compare_digest(expected, _b64url_decode(parts[2])):
                return "bad signature"
            payload = json.loads(_b64url_decode(parts[1]))
        except Exception:
            return "malformed token"
        if float(payload.get("exp", 0)) < time.time():
            return "token expired"
        return None
