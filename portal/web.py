"""The portal's pages: an aiohttp app, server-rendered with Jinja2.

Every page but the login ones needs a session; every POST needs the session's CSRF token.
Handlers validate through `model`, act through `store`, and answer bad input with the page
again and a message saying what to change.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import re
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
import orjson
from aiohttp import web

from portal import model, oidc, session
from portal.settings import Settings
from portal.store import NotFound, Store
from tispace import api, kubeconfig, naming
from tispace.kube.client import ApiError, Client

log = logging.getLogger("tispace.portal")

SETTINGS = web.AppKey("settings", Settings)
STORE = web.AppKey("store", Store)
PROVIDER = web.AppKey("provider", oidc.Provider)
SESSIONS = web.AppKey("sessions", session.Sealer)
LOGINS = web.AppKey("logins", session.Sealer)
PAGES = web.AppKey("pages", jinja2.Environment)
SESSION: web.RequestKey[dict[str, Any] | None] = web.RequestKey("session")

PUBLIC = ("/login", "/login/start", "/auth/callback", "/healthz")
LOCAL_PATH = re.compile(r"/[A-Za-z0-9._~/?=&%+-]*")
OAUTH_ERROR = re.compile(r"[a-z_]{1,64}")
REASONS = {
    "expired": "Your session expired. Log in again.",
    "invalid": "Your session was not valid. Log in again.",
    "logout": "You are logged out.",
}
FLASH = "tispace_flash"
STATUS_SECONDS = 600
"""How long one live-status stream lasts; the browser's EventSource reconnects after."""

DELETED = orjson.dumps({"phase": "Deleted"})
CLUSTER_GOES = "Its control plane, every object in it and every dev instance and disk go with it."
INSTANCE_GOES = "Its disk is deleted with it."
routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


# --- rendering ---------------------------------------------------------------------------
def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    sess = request.get(SESSION) or {}
    flash = request.cookies.get(FLASH, "")
    html = (
        request.app[PAGES]
        .get_template(template)
        .render(user=sess, csrf=sess.get("csrf", ""), is_admin=is_admin(request), flash=flash, **context)
    )
    resp = web.Response(text=html, status=status, content_type="text/html")
    if flash:
        resp.del_cookie(FLASH)
    return resp


def redirect(location: str, flash: str = "") -> web.HTTPSeeOther:
    """Post/redirect/get: a reload never submits twice; `flash` is shown once on the next page."""
    resp = web.HTTPSeeOther(location)
    if flash:
        resp.set_cookie(FLASH, flash, httponly=True, samesite="Lax", max_age=60)
    return resp


def problem(request: web.Request, status: int, message: str) -> web.Response:
    return render(request, "error.html", status=status, message=message)


def is_admin(request: web.Request) -> bool:
    return bool((request.get(SESSION) or {}).get("admin"))


def same(sent: str, expected: str) -> bool:
    """Constant-time, and any text (non-ASCII too) is merely unequal."""
    return bool(sent) and hmac.compare_digest(sent.encode(), expected.encode())


def owner(request: web.Request) -> str:
    sess = request[SESSION]
    if sess is None:  # only public pages run without a session (see `guard`)
        raise web.HTTPSeeOther("/login")
    return str(sess["owner"])


# --- middleware: sessions and CSRF ---------------------------------------------------------
@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    s = request.app[SETTINGS]
    request[SESSION] = None
    reason = ""
    if token := request.cookies.get(session.COOKIE):
        try:
            request[SESSION] = request.app[SESSIONS].open(token, s.session_hours * 3600)
        except session.Expired:
            reason = "expired"
        except session.Invalid:
            reason = "invalid"
    if request.path in PUBLIC or request.path.startswith("/static/"):
        return await handler(request)
    sess = request[SESSION]
    if sess is None:
        # Nothing is done for a request without a live session, whatever it asked.
        query = {"next": request.path_qs if request.method == "GET" else "/"}
        if reason:
            query["reason"] = reason
        resp = web.HTTPSeeOther(f"/login?{urlencode(query)}")
        resp.del_cookie(session.COOKIE)
        raise resp
    if request.method == "POST":
        form = await request.post()
        sent = str(form.get("csrf", ""))
        if not same(sent, sess["csrf"]):
            log.warning("CSRF token mismatch on %s", request.path, extra={"owner": owner(request)})
            return problem(
                request,
                403,
                "This form's security token did not match your session (a stale page or a forged "
                "request). Nothing was changed. Reload the page and try again.",
            )
    return await handler(request)


# --- login ----------------------------------------------------------------------------------
def _redirect_uri(s: Settings) -> str:
    return f"{s.public_url.rstrip('/')}/auth/callback"


def _safe_next(value: str) -> str:
    """Only a plain local path: `next` must not send a freshly logged-in user to another site (no
    `//host`, no backslash, no control characters a URL parser would drop)."""
    return value if LOCAL_PATH.fullmatch(value) and not value.startswith("//") else "/"


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    if request[SESSION]:
        raise web.HTTPSeeOther("/")
    reason = REASONS.get(request.query.get("reason", ""), "")
    start = f"/login/start?next={quote(_safe_next(request.query.get('next', '/')))}"
    return render(request, "login.html", reason=reason, start=start, issuer=request.app[SETTINGS].issuer)


@routes.get("/login/start")
async def login_start(request: web.Request) -> web.StreamResponse:
    s = request.app[SETTINGS]
    pending = oidc.new_pending(_safe_next(request.query.get("next", "/")))
    try:
        url = await request.app[PROVIDER].authorize_url(_redirect_uri(s), pending)
    except oidc.LoginError as e:
        return problem(request, 502, str(e))
    resp = web.HTTPSeeOther(url)
    sealed = request.app[LOGINS].seal(pending.__dict__)
    resp.set_cookie(
        session.LOGIN_COOKIE,
        sealed,
        httponly=True,
        samesite="Lax",
        max_age=session.LOGIN_SECONDS,
        secure=s.secure_cookies,
    )
    raise resp


def login_failed(request: web.Request, status: int, reason: str) -> web.Response:
    """The login page again, saying why; nothing of the failed attempt is kept."""
    issuer = request.app[SETTINGS].issuer
    return render(request, "login.html", status=status, reason=reason, start="/login/start", issuer=issuer)


@routes.get("/auth/callback")
async def callback(request: web.Request) -> web.StreamResponse:
    s = request.app[SETTINGS]
    if error := request.query.get("error"):
        # Only the standard code: a description in the URL is anyone's text, not the provider's word.
        code = error if OAUTH_ERROR.fullmatch(error) else "unknown error"
        return login_failed(request, 401, f"The identity provider refused the login ({code}). Log in again.")
    try:
        saved = request.app[LOGINS].open(request.cookies.get(session.LOGIN_COOKIE, ""), session.LOGIN_SECONDS)
    except (session.Expired, session.Invalid):
        return login_failed(request, 400, "This login took too long or was not started here. Log in again.")
    pending = oidc.Pending(**saved)
    if not same(request.query.get("state", ""), pending.state):
        msg = "The provider's answer does not belong to this login (state mismatch). Log in again."
        return login_failed(request, 400, msg)
    try:
        claims = await request.app[PROVIDER].exchange(
            request.query.get("code", ""), _redirect_uri(s), pending
        )
        who = oidc.identity(
            claims, nonce=pending.nonce, owner_claim=s.owner_claim, groups_claim=s.groups_claim
        )
        oidc.check_allowed(who, groups=s.allowed_groups, domains=s.allowed_domains)
    except oidc.LoginError as e:
        return login_failed(request, 401, str(e))
    data = {
        "owner": who.owner,
        "name": who.name,
        # Whether admin, not the groups: a user in hundreds of groups must still fit in a cookie.
        "admin": s.admin_group in who.groups,
        "csrf": secrets.token_urlsafe(32),
    }
    log.info("logged in (groups %s)", ",".join(who.groups), extra={"owner": who.owner})
    resp = web.HTTPSeeOther(pending.next)
    resp.del_cookie(session.LOGIN_COOKIE)
    resp.set_cookie(
        session.COOKIE,
        request.app[SESSIONS].seal(data),
        httponly=True,
        samesite="Lax",
        secure=s.secure_cookies,
    )
    raise resp


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    resp = web.HTTPSeeOther("/login?reason=logout")
    resp.del_cookie(session.COOKIE)
    raise resp


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text="ok")


# --- clusters -------------------------------------------------------------------------------
@routes.get("/")
async def home(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/clusters")


async def _clusters_page(
    request: web.Request, status: int = 200, error: str = "", form: dict[str, str] | None = None
) -> web.Response:
    st = request.app[STORE]
    clusters, versions = await asyncio.gather(st.clusters(owner(request)), st.versions())
    s = request.app[SETTINGS]
    defaults = {
        "name": "",
        "version": versions[0] if versions else "",
        "max_pods": "50",
        "max_storage_gib": "100",
    }
    return render(
        request,
        "clusters.html",
        status=status,
        clusters=clusters,
        versions=versions,
        error=error,
        form={**defaults, **(form or {})},
        quota=s.quota,
        max_name=model.max_cluster_name(s.namespace),
    )


@routes.get("/clusters")
async def clusters(request: web.Request) -> web.StreamResponse:
    return await _clusters_page(request)


@routes.post("/clusters")
async def create_cluster(request: web.Request) -> web.StreamResponse:
    st, s, who = request.app[STORE], request.app[SETTINGS], owner(request)
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf"}
    async with st.locks[who]:
        try:
            req = model.parse_cluster(form, namespace=s.namespace, versions=await st.versions())
            owned = await st.clusters(who)
            if any(vc["metadata"]["name"] == req.name for vc in owned):
                msg = f"You already have a cluster named {req.name!r} (was the form sent twice?)."
                return await _clusters_page(request, 409, msg, form)
            model.check_cluster_quota(s.quota, len(owned))
            await st.create_cluster(model.virtual_cluster(req, owner=who, namespace=s.namespace))
        except model.FormError as e:
            return await _clusters_page(request, 400, str(e), form)
        except ApiError as e:
            if e.status != 409:
                raise
            msg = f"The name {req.name!r} is taken; choose another."
            return await _clusters_page(request, 409, msg, form)
    log.info("cluster created", extra={"owner": who, "tenant": req.name, "kind": "VirtualCluster"})
    raise redirect(f"/clusters/{req.name}", f"Cluster {req.name} is being created.")


async def _cluster_page(
    request: web.Request,
    vc: dict[str, Any],
    status: int = 200,
    error: str = "",
    form: dict[str, str] | None = None,
) -> web.Response:
    st, s = request.app[STORE], request.app[SETTINGS]
    usage: model.Usage | None = None
    try:  # one listing serves this cluster's table and the quota line
        mine = await st.owned_instances(owner(request))
        instances, usage = mine.get(vc["metadata"]["name"], []), model.owner_usage(mine)
    except model.FormError as e:
        instances, error = await st.instances(vc), error or str(e)
    defaults = {
        "name": "",
        "image": s.instance_image,
        "cpu": "2",
        "memory_gib": "4",
        "disk_gib": "20",
        "ssh_key": "",
    }
    return render(
        request,
        "cluster.html",
        status=status,
        vc=vc,
        instances=instances,
        error=error,
        form={**defaults, **(form or {})},
        running=_phase(vc) == api.Phase.RUNNING,
        usage=usage,
        quota=s.quota,
    )


def _phase(vc: dict[str, Any]) -> str:
    return str((vc.get("status") or {}).get("phase") or api.Phase.PENDING)


def _url_name(request: web.Request, key: str) -> str:
    """A name from the URL, only if it is one: aiohttp decodes %2F and friends, and an API path built
    from `..%2Fsecrets` would lead elsewhere."""
    name = request.match_info[key]
    if not naming.is_dns1123_label(name):
        raise web.HTTPNotFound(text=f"{name!r} is not the name of a cluster or instance")
    return name


async def _owned(request: web.Request) -> dict[str, Any]:
    try:
        return await request.app[STORE].cluster(owner(request), _url_name(request, "name"))
    except NotFound as e:
        raise web.HTTPNotFound(text=str(e)) from None


@routes.get("/clusters/{name}")
async def cluster(request: web.Request) -> web.StreamResponse:
    return await _cluster_page(request, await _owned(request))


@routes.get("/clusters/{name}/status")
async def cluster_status(request: web.Request) -> web.StreamResponse:
    """Server-sent events: the cluster's phase and its instances' states whenever they change."""
    vc = await _owned(request)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    last = b""
    deadline = time.monotonic() + STATUS_SECONDS
    try:
        while time.monotonic() < deadline:
            if request.transport is None or request.transport.is_closing():
                break  # the browser left: stop asking the API servers
            try:
                data = await _status_event(request, vc["metadata"]["name"])
            except (TimeoutError, ApiError, OSError) as e:
                # A tenant API server busy or restarting: the page keeps its last state; try again.
                log.debug("status of %s unavailable: %s", vc["metadata"]["name"], e)
                data = last
            if data != last:
                await resp.write(b"data: " + data + b"\n\n")
                last = data
            if data == DELETED:
                break
            await asyncio.sleep(1)
    except ConnectionResetError:
        pass  # the browser left the page
    return resp


async def _status_event(request: web.Request, name: str) -> bytes:
    st = request.app[STORE]
    try:
        vc = await st.cluster(owner(request), name)
    except NotFound:
        return DELETED
    event = {
        "phase": _phase(vc),
        "message": (vc.get("status") or {}).get("message", ""),
        "instances": {i["metadata"]["name"]: instance_state(i) for i in await st.instances(vc)},
    }
    return orjson.dumps(event)


@routes.get("/clusters/{name}/kubeconfig")
async def download_kubeconfig(request: web.Request) -> web.StreamResponse:
    vc = await _owned(request)
    name = vc["metadata"]["name"]
    if _phase(vc) != api.Phase.RUNNING:
        return problem(
            request, 409, f"Cluster {name} is {_phase(vc)}; its kubeconfig exists once it is Running."
        )
    config = await request.app[STORE].user_kubeconfig(vc)
    log.info("kubeconfig issued", extra={"owner": owner(request), "tenant": name})
    return web.Response(
        text=kubeconfig.dump(config),
        content_type="application/yaml",
        # A private key: never kept by a cache on the way.
        headers={
            "Content-Disposition": f'attachment; filename="{name}.kubeconfig"',
            "Cache-Control": "no-store",
        },
    )


def confirm_page(
    request: web.Request, what: str, name: str, base: str, status: int = 200, error: str = ""
) -> web.Response:
    """Deleting asks for the name typed in: a click alone never deletes."""
    detail = CLUSTER_GOES if what == "cluster" else INSTANCE_GOES
    return render(
        request,
        "confirm.html",
        status=status,
        what=what,
        name=name,
        action=f"{base}/delete",
        back=base,
        detail=detail,
        error=error,
    )


async def confirmed(request: web.Request, what: str, name: str, base: str) -> web.Response | None:
    """None when the form names `name`; else the confirmation page again, saying nothing happened."""
    if (await request.post()).get("confirm", "") == name:
        return None
    error = f"Type the {what}'s name ({name}) to confirm. Nothing was deleted."
    return confirm_page(request, what, name, base, 400, error)


@routes.get("/clusters/{name}/delete")
async def confirm_delete_cluster(request: web.Request) -> web.StreamResponse:
    name = (await _owned(request))["metadata"]["name"]
    return confirm_page(request, "cluster", name, f"/clusters/{name}")


@routes.post("/clusters/{name}/delete")
async def delete_cluster(request: web.Request) -> web.StreamResponse:
    vc = await _owned(request)
    name = vc["metadata"]["name"]
    if refused := await confirmed(request, "cluster", name, f"/clusters/{name}"):
        return refused
    await request.app[STORE].delete_cluster(vc)
    log.info("cluster deleted", extra={"owner": owner(request), "tenant": name, "kind": "VirtualCluster"})
    raise redirect("/clusters", f"Cluster {name} is being deleted.")


# --- instances ------------------------------------------------------------------------------
def instance_state(inst: dict[str, Any]) -> str:
    pod = inst.get("pod")
    if not pod:
        return "Creating"
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return str((pod.get("status") or {}).get("phase", "Pending"))


@routes.post("/clusters/{name}/instances")
async def create_instance(request: web.Request) -> web.StreamResponse:
    st, s, who = request.app[STORE], request.app[SETTINGS], owner(request)
    vc = await _owned(request)
    name = vc["metadata"]["name"]
    form = {k: str(v) for k, v in (await request.post()).items() if k != "csrf"}
    if _phase(vc) != api.Phase.RUNNING:
        return await _cluster_page(
            request, vc, 409, f"Cluster {name} is {_phase(vc)}; wait until it is Running.", form
        )
    async with st.locks[who]:
        try:
            req = model.parse_instance(form, default_image=s.instance_image)
            model.check_instance_quota(s.quota, model.owner_usage(await st.owned_instances(who)), req)
            service, statefulset = model.instance_objects(
                req, runtime_class=s.instance_runtime_class, storage_class=s.instance_storage_class
            )
            await st.create_instance(vc, service, statefulset)
        except model.FormError as e:
            return await _cluster_page(request, vc, 400, str(e), form)
        except ApiError as e:
            if e.status != 409:
                raise
            msg = f"Cluster {name} already has an instance named {req.name!r} (was the form sent twice?)."
            return await _cluster_page(request, vc, 409, msg, form)
    log.info(
        "instance created", extra={"owner": who, "tenant": name, "kind": "StatefulSet", "object": req.name}
    )
    raise redirect(f"/clusters/{name}/instances/{req.name}", f"Instance {req.name} is being created.")


async def _owned_instance(request: web.Request) -> tuple[dict[str, Any], dict[str, Any]]:
    name = _url_name(request, "instance")
    vc = await _owned(request)
    try:
        return vc, await request.app[STORE].instance(vc, name)
    except NotFound as e:
        raise web.HTTPNotFound(text=str(e)) from None


@routes.get("/clusters/{name}/instances/{instance}")
async def instance(request: web.Request) -> web.StreamResponse:
    vc, inst = await _owned_instance(request)
    return render(
        request,
        "instance.html",
        vc=vc,
        inst=inst,
        state=instance_state(inst),
        usage=model.instance_usage(inst),
        namespace=model.INSTANCE_NAMESPACE,
    )


@routes.get("/clusters/{name}/instances/{instance}/delete")
async def confirm_delete_instance(request: web.Request) -> web.StreamResponse:
    vc, inst = await _owned_instance(request)
    name = inst["metadata"]["name"]
    return confirm_page(request, "instance", name, f"/clusters/{vc['metadata']['name']}/instances/{name}")


@routes.post("/clusters/{name}/instances/{instance}/delete")
async def delete_instance(request: web.Request) -> web.StreamResponse:
    vc, inst = await _owned_instance(request)
    cluster, name = vc["metadata"]["name"], inst["metadata"]["name"]
    if refused := await confirmed(request, "instance", name, f"/clusters/{cluster}/instances/{name}"):
        return refused
    await request.app[STORE].delete_instance(vc, name)
    log.info(
        "instance deleted",
        extra={"owner": owner(request), "tenant": cluster, "kind": "StatefulSet", "object": name},
    )
    raise redirect(f"/clusters/{cluster}", f"Instance {name} is being deleted.")


# --- admin ----------------------------------------------------------------------------------
@routes.get("/admin")
async def admin(request: web.Request) -> web.StreamResponse:
    if not is_admin(request):
        return problem(
            request, 403, f"The admin view is for members of {request.app[SETTINGS].admin_group!r}."
        )
    return render(request, "admin.html", rows=await request.app[STORE].every_cluster())


# --- errors as pages ------------------------------------------------------------------------
@web.middleware
async def pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """HTTP errors and failures of the clusters behind as pages that say what happened."""
    try:
        return await handler(request)
    except web.HTTPNotFound as e:
        return problem(request, 404, e.text if e.text and not e.text.startswith("404") else "No such page.")
    except web.HTTPException:
        raise
    except ApiError as e:
        log.warning("API call for %s failed: %s", request.path, e)
        return problem(request, 502, f"The cluster API answered {e.status}: {e}. Try again in a moment.")
    except (TimeoutError, OSError) as e:
        log.warning("API server unreachable for %s: %s", request.path, e)
        return problem(
            request, 503, f"A cluster API server could not be reached ({e}). Try again in a moment."
        )


def app(settings: Settings, client: Client) -> web.Application:
    application = web.Application(middlewares=[pages, guard])
    application[SETTINGS] = settings
    application[STORE] = Store(client, settings)
    ca = ssl.create_default_context(cafile=str(settings.ca_file)) if settings.ca_file else None
    application[PROVIDER] = oidc.Provider(settings.issuer, settings.client_id, settings.client_secret, ca)
    application[SESSIONS] = session.Sealer(settings.session_secret, session.COOKIE)
    application[LOGINS] = session.Sealer(settings.session_secret, session.LOGIN_COOKIE)
    application[PAGES] = jinja2.Environment(
        loader=jinja2.PackageLoader("portal", "templates"), autoescape=True, undefined=jinja2.StrictUndefined
    )
    application[PAGES].filters["gib"] = model.gib
    application[PAGES].filters["state"] = instance_state
    application[PAGES].filters["usage"] = model.instance_usage
    application[PAGES].filters["image"] = model.image_of
    application.add_routes(routes)
    application.router.add_static("/static/", Path(__file__).parent / "static")

    async def close(_: web.Application) -> None:
        await application[PROVIDER].close()

    application.on_cleanup.append(close)
    return application
