"""Where Pluto is and who we are: URLs from config or pluto-ml's env vars, the key from an env var or
the key `pluto login` stored in pluto-ml's keyring entry. The key is never logged or written by us."""

from __future__ import annotations

import os
import sys

from migrate_core.errors import PluginError

from .settings import PlutoConfig
from .transport import Endpoints

CLOUD = {"api": "https://pluto-api.trainy.ai", "ingest": "https://pluto-ingest.trainy.ai",
         "py": "https://pluto-py.trainy.ai"}
_ENV = {"api": ("PLUTO_URL_API", "MLOP_URL_API"), "ingest": ("PLUTO_URL_INGEST", "MLOP_URL_INGEST"),
        "py": ("PLUTO_URL_PY", "MLOP_URL_PY")}
KEYRING_SERVICE = "pluto"  # pluto-ml's Settings.tag: service and user name of its keyring entry


def endpoints(config: PlutoConfig) -> Endpoints:
    def pick(kind: str) -> str:
        configured = getattr(config, f"url_{kind}")
        if configured:
            return configured.rstrip("/")
        for name in _ENV[kind]:
            if os.environ.get(name):
                return os.environ[name].rstrip("/")
        return CLOUD[kind]

    return Endpoints(api=pick("api"), ingest=pick("ingest"), py=pick("py"))


def api_key(config: PlutoConfig) -> str:
    found = find_api_key(config)
    if found is None:
        raise PluginError(
            f"no Pluto API key: set {config.api_key_env} or run `pluto login` (keys start with mlps_ or mlpi_)"
        )
    return found[0]


def find_api_key(config: PlutoConfig) -> tuple[str, str] | None:
    """(key, where it came from) in pluto-ml's order, or None: the env var, its legacy name, `pluto login`."""
    key = os.environ.get(config.api_key_env, "").strip()
    if key:
        return key, f"env var {config.api_key_env}"
    if config.api_key_env == "PLUTO_API_KEY":
        key = os.environ.get("MLOP_API_TOKEN", "").strip()
        if key:
            return key, "env var MLOP_API_TOKEN (legacy name)"
    key = _login_key()
    return (key, "the key `pluto login` stored (keyring)") if key else None


def _login_key() -> str:
    """The key `pluto login` saved, read where pluto-ml's `pluto.auth.login` keeps it: on macOS the system
    keyring (falling back, as it does, to keyrings.alt's plaintext file when there is none); elsewhere always
    the plaintext file (`~/.local/share/python_keyring/keyring_pass.cfg`), whatever system keyring exists.

    We read it with `keyring` and `keyrings.alt` themselves (pluto-ml's own dependencies for this) instead
    of depending on pluto-ml, whose `.pth` hook would cost every Python start a third of a second."""
    try:
        import keyring
        import keyring.errors
        from keyrings.alt.file import PlaintextKeyring
    except ImportError:
        return ""
    if sys.platform == "darwin":
        try:
            return keyring.get_password(KEYRING_SERVICE, KEYRING_SERVICE) or ""
        except keyring.errors.NoKeyringError:
            pass
        except Exception:
            return ""
    try:
        return PlaintextKeyring().get_password(KEYRING_SERVICE, KEYRING_SERVICE) or ""
    except Exception:
        return ""
