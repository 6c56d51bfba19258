"""`migrate doctor` for the neptune2 source: the API token and where it came from, the server it names
reachable, the token exchanged (the client's own sign-in), and every selected project readable."""

from __future__ import annotations

from migrate_core.api import Selection
from migrate_core.checks import CheckResult, DoctorContext, env_secret, failed, mask, passed, reachable
from migrate_core.errors import MigrateError

from .config import Neptune2Config

TOKEN_FIX = ("export {env}=<token> (Neptune: user menu > Get your API token), or point "
             "source.neptune2.api_token_env at the variable that holds it")


def checks(config: Neptune2Config, context: DoctorContext) -> list[CheckResult]:
    from neptune.common.exceptions import NeptuneInvalidApiTokenException
    from neptune.internal.backends.utils import ssl_verify
    from neptune.internal.credentials import Credentials

    env = config.api_token_env
    token, missing = env_secret(env, "Neptune API token", TOKEN_FIX.format(env=env))
    if missing is not None:
        return [missing]
    try:
        credentials = Credentials.from_token(token)
    except NeptuneInvalidApiTokenException:
        return [failed("credentials", f"${env} ({mask(token)}) is not a Neptune API token (base64 JSON naming "
                       "its server)", "copy the token again: " + TOKEN_FIX.format(env=env))]
    address = credentials.api_url_opt or credentials.token_origin_address
    results = [passed("credentials", f"API token {mask(token)} from env var ${env}, for {address}")]
    results.append(reachable(address, context.timeout, verify_tls=bool(ssl_verify())))
    if not results[-1].ok:
        return results
    from .client import ClientSettings, Neptune2Client
    from .source import Neptune2Source

    try:
        client = Neptune2Client(token, ClientSettings(
            token_env=env, requests_per_minute=0, timeout=context.timeout, retry_budget=context.timeout,
            backoff=0.1))
    except MigrateError as exc:
        return [*results, failed("auth", str(exc), "use a valid API token of this server: "
                                 + TOKEN_FIX.format(env=env))]
    try:
        results.append(passed("auth", f"token exchanged with {client.api_url} (neptune client sign-in)"))
        results += _projects(Neptune2Source(config, client), context)
    finally:
        client.close()
    return results


def _projects(source, context: DoctorContext) -> list[CheckResult]:
    try:
        names = source._project_ids(Selection(projects=context.projects))  # noqa: SLF001 - the source's own rule
    except MigrateError as exc:
        return [failed("project", str(exc), "pass -p workspace/project, or set source.neptune2.projects")]
    if not names:
        return [failed("project", "the workspaces in source.neptune2.workspaces hold no visible project",
                       "check the workspace names, or name projects with -p / source.neptune2.projects")]
    results = []
    for name in names:
        try:
            source._project(name)  # noqa: SLF001
        except MigrateError as exc:
            results.append(failed("project", str(exc), "correct the project name, or give the token's user "
                                                       "access to it"))
        else:
            results.append(passed("project", f"{name} exists and is readable"))
    return results
