"""Mount the clinician pages, the FHIR export and the Nightscout API on the cloud service's app.

    from cloud_sync.service.app import create_app
    from cloud_sync.reports.routes import register_routes
    app = register_routes(create_app(config))

or in one call: ``create_app_with_reports(config)``. ``register_routes`` creates this package's own tables
(``page_tickets``, ``nightscout_tokens``; idempotent), registers the erasure hook that deletes a patient's
Nightscout secrets, includes the routers and adds one exception handler that sends browsers without a
session to the login page (API clients keep the JSON 401). Nothing else is stored: pages, SVGs and FHIR
bundles are computed per request from the encrypted records, so erasure leaves no derived copy behind.
"""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from cloud_sync import nightscout_api
from cloud_sync.reports import pages
from cloud_sync.service.app import Service, ServiceConfig, create_app

__all__ = ["register_routes", "create_app_with_reports", "ROUTERS"]

ROUTERS = (pages.router, nightscout_api.router)


def register_routes(app: FastAPI) -> FastAPI:
    service: Service = app.state.service
    pages.ensure_schema(service.db)
    nightscout_api.ensure_schema(service.db)
    hooks = getattr(service, "erasure_hooks", None)
    if hooks is not None and nightscout_api.erase_patient_tokens not in hooks:
        hooks.append(nightscout_api.erase_patient_tokens)
    for router in ROUTERS:
        app.include_router(router)

    @app.exception_handler(pages.LoginRequired)
    async def _login_required(request: Request, error: pages.LoginRequired) -> Response:
        if "text/html" in request.headers.get("accept", "") and request.method == "GET":
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            if request.url.path == "/clinic/session":  # a spent link: after logging in, go where it pointed
                target = pages.safe_next(request.query_params.get("next"))
            return RedirectResponse(f"/clinic/login?next={quote(target, safe='/')}", status_code=303)
        return JSONResponse(error.to_json(), status_code=error.http_status)

    return app


def create_app_with_reports(config: ServiceConfig, service: Service | None = None) -> FastAPI:
    return register_routes(create_app(config, service=service))
