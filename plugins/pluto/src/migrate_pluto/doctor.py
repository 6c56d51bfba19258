"""`migrate doctor` for the Pluto sink: the API key and where it came from, each server reachable, the key
accepted (one project listing, the cheapest authenticated read), and the target projects."""

from __future__ import annotations

from urllib.parse import urlsplit

from migrate_core.checks import CheckResult, DoctorContext, failed, mask, passed, reachable, warned

from . import credentials
from .errors import PlutoError
from .names import project_name
from .settings import PlutoConfig

KEY_PREFIXES = ("mlps_", "mlpi_")
NO_KEY_FIX = "export PLUTO_API_KEY=<your key> (Pluto: settings > API keys), or run `pluto login`"


def checks(config: PlutoConfig, context: DoctorContext) -> list[CheckResult]:
    found = credentials.find_api_key(config)
    if found is None:
        other = f" (sink.pluto.api_key_env names {config.api_key_env})" if config.api_key_env != "PLUTO_API_KEY" else ""
        return [failed("credentials", f"no Pluto API key: ${config.api_key_env} is not set{other} and `pluto "
                       "login` stored none", NO_KEY_FIX.replace("PLUTO_API_KEY", config.api_key_env))]
    key, where = found
    results = [passed("credentials", f"API key {mask(key)} from {where}") if key.startswith(KEY_PREFIXES) else
               warned("credentials", f"API key {mask(key)} from {where} does not start with mlps_ or mlpi_",
                      "Pluto's API only accepts keys that start with mlps_ or mlpi_: copy the key again")]
    endpoints = credentials.endpoints(config)
    by_server: dict[str, list[str]] = {}
    for role in ("api", "ingest", "py"):
        url = getattr(endpoints, role)
        parts = urlsplit(url)
        by_server.setdefault(f"{parts.scheme}://{parts.netloc}", []).append(role)
    for server, roles in by_server.items():
        probe = reachable(server, context.timeout, config.verify_tls)
        results.append(CheckResult(probe.check, probe.status, f"{'/'.join(roles)} {server}: {probe.detail}",
                                   probe.fix))
    if not all(r.ok for r in results):
        return results
    listing = _projects(config, endpoints, key, context.timeout)
    if isinstance(listing, PlutoError):
        if listing.status in (401, 403):
            results.append(failed("auth", f"Pluto at {endpoints.api} rejected the API key from {where}: {listing}",
                                  "use a valid key of this Pluto deployment: "
                                  + NO_KEY_FIX.replace("PLUTO_API_KEY", config.api_key_env)))
        else:
            results.append(failed("auth", f"the authenticated test request failed: {listing}",
                                  "check url_api points at Pluto's API server (sink.pluto.url_api / PLUTO_URL_API)"))
        return results
    results.append(passed("auth", f"key accepted by {endpoints.api} ({len(listing)} projects visible)"))
    results.append(_project_check(config, context, listing))
    return results


def _projects(config: PlutoConfig, endpoints, key: str, timeout: float) -> dict[str, int] | PlutoError:
    from .transport import Transport, retry_policy

    http = Transport(endpoints, key, retry_policy(0), timeout, config.verify_tls)
    try:
        answer = http.api_get("/api/runs/projects", {}, "project listing")
    except PlutoError as exc:
        return exc
    finally:
        http.close()
    return {str(p.get("name")): int(p.get("runCount") or 0) for p in answer.get("projects") or []
            if isinstance(p, dict)}


def _project_check(config: PlutoConfig, context: DoctorContext, listing: dict[str, int]) -> CheckResult:
    names = [config.project] if config.project else list(dict.fromkeys(project_name(p, None)
                                                                       for p in context.projects))
    if not names:
        return passed("project", "one Pluto project per source project ('/' becomes '-'); a missing one is "
                                 "created by the first load")
    parts = []
    for name in names:
        if name in listing:
            parts.append(f"{name} exists ({listing[name]:,} runs)")
        else:
            parts.append(f"{name} is new: the first load creates it (Pluto makes a project with its first run)")
    return passed("project", "; ".join(parts))
