"""`migrate doctor` for the neptune3 source: the API token and where it came from, the server it names
reachable, the sign-in accepted (neptune-query's own), and every selected project readable."""

from __future__ import annotations

import base64
import json

from migrate_core.api import Selection
from migrate_core.checks import CheckResult, DoctorContext, env_secret, failed, mask, passed, reachable
from migrate_core.errors import MigrateError

from .config import Neptune3Config
from .errors import AuthError

TOKEN_FIX = ("export {env}=<token> (Neptune 3.x: user menu > API token), or point source.neptune3.api_token_env "
             "at the variable that holds it")


def checks(config: Neptune3Config, context: DoctorContext) -> list[CheckResult]:
    from .client import Neptune3Client, check_token

    env = config.api_token_env
    token, missing = env_secret(env, "Neptune API token", TOKEN_FIX.format(env=env))
    if missing is not None:
        return [missing]
    try:
        check_token(token, env)
    except MigrateError as exc:
        return [failed("credentials", f"{exc} ({mask(token)})", "copy the token again: " + TOKEN_FIX.format(env=env))]
    payload = json.loads(base64.b64decode(token.encode("ascii")).decode("utf-8"))  # check_token parsed it
    address = payload.get("api_url") or payload.get("api_address")
    results = [passed("credentials", f"API token {mask(token)} from env var ${env}, for {address}")]
    results.append(reachable(address, context.timeout))
    if not results[-1].ok:
        return results
    from .source import Neptune3Source

    # a short retry budget: a preflight that retries for 5 minutes looks like a hang
    source = Neptune3Source(config.model_copy(update={"retry_budget": max(5.0, 2 * context.timeout)}))
    client = Neptune3Client(token, env)
    source._client = client  # noqa: SLF001 - the token checked above, the source's own project rules below
    try:
        return results + _signed_in(source, client, context, env)
    finally:
        source.close()


def _signed_in(source, client, context: DoctorContext, env: str) -> list[CheckResult]:
    results: list[CheckResult] = []
    # neptune-query exchanges the token on the first request: the project reads below prove the auth
    try:
        names = source._project_ids(Selection(projects=context.projects))  # noqa: SLF001 - the source's own rule
    except AuthError as exc:
        return [*results, _auth_failed(exc, env)]
    except MigrateError as exc:
        return [*results, failed("project", str(exc), "pass -p workspace/project, or set source.neptune3.projects")]
    if not names:
        return [*results, failed("project", "the workspaces in source.neptune3.workspaces hold no visible project",
                                 "check the workspace names, or name projects with -p / source.neptune3.projects")]
    projects = []
    for name in names:
        try:
            first = next(iter(client.search_runs(name, None, [], 1)), None)
        except AuthError as exc:
            return [*results, _auth_failed(exc, env)]
        except MigrateError as exc:
            projects.append(failed("project", str(exc), "correct the project name, or give the token's user "
                                                        "access to it"))
        else:
            projects.append(passed("project", f"{name} exists and is readable"
                                   + ("" if first is not None else " (it holds no runs)")))
    return [*results, passed("auth", "token accepted (neptune-query sign-in and a runs search)"), *projects]


def _auth_failed(exc: Exception, env: str) -> CheckResult:
    return failed("auth", str(exc), "use a valid Neptune 3.x API token: " + TOKEN_FIX.format(env=env))
