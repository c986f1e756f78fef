"""The portal in headless Chromium: a real OIDC provider (zitadel/oidc's, built from its Go module)
with static users, the portal process as its own service account, tenants that really come up.

Screenshots of every page land in artifacts/portal/ (kept by CI as test artifacts).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from portal import session
from tispace import naming, private, procs, rbac, tenants
from tispace.kube import resources as r
from tispace.kube.client import Client
from tispacectl import localcluster, localidp, stack

from .conftest import ManagerProc, SyncerProc, credentials

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = Path(os.environ.get("TISPACE_ARTIFACTS", ROOT / "artifacts")) / "portal"
NS = rbac.PORTAL_NAMESPACE
DEV = localidp.User("dev", "dev-password-1", "dev@example.com", "Dev Eloper")
ALICE = localidp.User("alice", "alice-password-1", "alice@example.com", "Alice Other")
ADMIN = localidp.User("root", "root-password-1", "root@example.com", "Ad Min", [localidp.ADMIN_GROUP])


@dataclass(frozen=True)
class Portal:
    url: str
    key_file: Path
    comp: procs.Component


@pytest.fixture(scope="module")
def portal(
    installed: localcluster.SuperCluster, manager: ManagerProc, syncer: SyncerProc
) -> Iterator[Portal]:
    """Provider and portal on free loopback ports; tight quotas so the tests reach them."""
    work = installed.dir / "portal-test"
    port = procs.free_port()
    secret = private.write(work / "client-secret", "portal-test-secret")
    client = localidp.Client(
        "tispace-portal", "portal-test-secret", [f"http://127.0.0.1:{port}/auth/callback"]
    )
    idp = localidp.start(work, [DEV, ALICE, ADMIN], [client])
    key_file = work / "session.key"
    comp = stack.start_program(
        installed.dir / "logs",
        "portal",
        lambda p: [
            "portal",
            f"--super-kubeconfig={credentials(installed, 'portal')}",
            f"--issuer={localidp.issuer(idp)}",
            "--client-id=tispace-portal",
            f"--client-secret-file={secret}",
            f"--session-key-file={key_file}",
            f"--port={p}",
            "--max-clusters=1",
            "--max-instance-cpu=2",
            "--max-instance-memory-gib=4",
            "--max-instance-disk-gib=20",
        ],
        port=port,
    )
    yield Portal(f"http://127.0.0.1:{port}", key_file, comp)
    procs.stop(comp.proc)
    procs.stop(idp.proc)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    exe = subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-browser.sh")], capture_output=True, text=True, check=True
    ).stdout.strip()
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=exe)
        yield b
        await b.close()


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


async def login(browser: Browser, portal: Portal, user: localidp.User, screenshot: str = "") -> Page:
    """Through the provider's own login form, as a person would."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    page = await context.new_page()
    await page.goto(f"{portal.url}/clusters")
    assert "/login" in page.url
    if screenshot:
        await shot(page, screenshot)
    await page.click("#login")
    await page.fill("input[name=username]", user.username)
    await page.fill("input[name=password]", user.password)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"{portal.url}/clusters")
    assert user.email in await page.inner_text("#who")
    return page


async def csrf(page: Page) -> str:
    return await page.get_attribute("input[name=csrf]", "value") or ""


async def post(page: Page, path: str, form: dict[str, str]) -> tuple[int, str]:
    """A form POST with the page's cookies, as a double click, a script or a forger would send it."""
    resp = await page.request.post(f"{page.url.split('/clusters')[0]}{path}", form=form, max_redirects=0)
    return resp.status, await resp.text()


async def portal_clusters(super_client: Client) -> list[str]:
    return sorted(vc["metadata"]["name"] for vc in (await super_client.list(r.VIRTUALCLUSTERS, NS))["items"])


async def wait_for(check: object, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not await check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


async def test_a_developer_gets_a_cluster_and_an_instance_in_the_browser(
    portal: Portal, browser: Browser, super_client: Client, tmp_path: Path
) -> None:
    page = await login(browser, portal, DEV, screenshot="01-login")
    assert await page.is_visible("#empty")

    # Create a cluster through the form; the page follows its phase live until it is Running.
    await page.fill("#create-cluster input[name=name]", "web")
    await page.fill("#create-cluster input[name=max_pods]", "20")
    await page.click("#create-cluster button")
    await page.wait_for_url(f"{portal.url}/clusters/web")
    assert "Cluster web is being created." in await page.inner_text("#flash")
    vc = await super_client.get(r.VIRTUALCLUSTERS, "web", NS)
    assert vc["spec"]["owner"] == DEV.email
    assert vc["spec"]["resourceQuota"]["hard"] == {"pods": "20", "requests.storage": "100Gi"}
    await page.wait_for_selector("#kubeconfig", timeout=120_000)  # shown once the live status says Running
    assert await page.inner_text("#phase") == "Running"
    await shot(page, "03-cluster-detail")

    # The kubeconfig is the developer's own identity, cluster-admin inside the tenant.
    async with page.expect_download() as download:
        await page.click("#kubeconfig")
    kc = tmp_path / "web.kubeconfig"
    await (await download.value).save_as(kc)
    assert (
        localcluster.kubectl(kc, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}") == DEV.email
    )
    assert localcluster.kubectl(kc, "auth", "can-i", "*", "*").strip() == "yes"
    assert "default" in localcluster.kubectl(kc, "get", "namespaces", "-o", "name")

    # A double-submitted cluster form creates nothing more; over quota is said, not done.
    token = await csrf(page)
    form = {"csrf": token, "name": "web", "version": "v1.36", "max_pods": "20", "max_storage_gib": "100"}
    status, text = await post(page, "/clusters", form)
    assert (
        status == 409 and "You already have a cluster named &#39;web&#39; (was the form sent twice?)" in text
    )
    status, text = await post(page, "/clusters", {**form, "name": "web2"})
    assert status == 400 and "quota: you have 1 of at most 1 clusters" in text
    for bad, message in [("Web_1", "is invalid"), ("", "is empty"), ("a" * 60, "at most 41")]:
        status, text = await post(page, "/clusters", {**form, "name": bad})
        assert status == 400 and message in text, bad
    status, text = await post(page, "/clusters", {**form, "name": "ok", "max_pods": "-3"})
    assert status == 400 and "Max pods must be between 1 and 1000" in text
    assert await portal_clusters(super_client) == ["web"]

    # A dev instance: StatefulSet of one with a Ceph claim, kata, privileged, SSH Service.
    await page.goto(f"{portal.url}/clusters/web")
    await page.fill("#create-instance input[name=name]", "box")
    await page.fill("#create-instance input[name=cpu]", "1")
    await page.fill("#create-instance input[name=memory_gib]", "2")
    await page.fill("#create-instance input[name=disk_gib]", "10")
    await page.click("#create-instance button")
    await page.wait_for_url(f"{portal.url}/clusters/web/instances/box")
    await page.wait_for_selector("#state:text-is('Running')", timeout=180_000)
    assert "port-forward svc/box 2222:22" in await page.inner_text("#connect")
    await shot(page, "04-instance")
    sts = json.loads(localcluster.kubectl(kc, "get", "statefulset", "box", "-o", "json"))
    pod_spec = sts["spec"]["template"]["spec"]
    assert pod_spec["runtimeClassName"] == "kata"
    assert pod_spec["containers"][0]["securityContext"]["privileged"] is True
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "rook-ceph-block"
    assert localcluster.kubectl(kc, "get", "service", "box", "-o", "jsonpath={.spec.ports[0].port}") == "22"
    assert localcluster.kubectl(kc, "get", "pod", "box-0", "-o", "jsonpath={.status.phase}") == "Running"
    root = await tenants.root_of(super_client, "web", NS)
    down = await super_client.get(r.PODS, "box-0", f"{root}-default")
    assert down["spec"]["runtimeClassName"] == "kata"
    quota = await super_client.get(r.RESOURCEQUOTAS, "tenant-quota", f"{root}-default")
    assert quota["spec"]["hard"] == {"pods": "20", "requests.storage": "100Gi"}  # the size limits, enforced

    # Instance quota covers what the owner already has; a double submit makes no second one.
    await page.goto(f"{portal.url}/clusters/web")
    inst = {"csrf": token, "name": "box2", "image": "", "cpu": "1.5", "memory_gib": "1", "disk_gib": "1"}
    status, text = await post(page, "/clusters/web/instances", inst)
    assert status == 400 and "CPU 2.5 of 2 cores" in text
    status, text = await post(page, "/clusters/web/instances", {**inst, "name": "box", "cpu": "0.5"})
    assert status == 409 and "already has an instance named &#39;box&#39;" in text
    status, text = await post(page, "/clusters/web/instances", {**inst, "name": "Box!", "cpu": "0.5"})
    assert status == 400 and "instance name &#39;Box!&#39; is invalid" in text
    assert localcluster.kubectl(kc, "get", "statefulsets", "-o", "name").split() == ["statefulset.apps/box"]

    # The list shows the cluster with its phase.
    await page.goto(f"{portal.url}/clusters")
    assert "Running" in await page.inner_text("#clusters")
    await shot(page, "02-cluster-list")

    # Delete the instance (after confirming by name): its StatefulSet, Service and disk go.
    await page.goto(f"{portal.url}/clusters/web/instances/box")
    await page.click("#delete")
    await shot(page, "05-confirm-delete")
    await page.fill("#confirm input[name=confirm]", "box")
    await page.click("#confirm button")
    await page.wait_for_url(f"{portal.url}/clusters/web")

    async def instance_gone() -> bool:
        left = localcluster.kubectl(kc, "get", "statefulsets,services,pvc,pods", "-o", "name").split()
        return left == ["service/kubernetes"]

    await wait_for(instance_gone, "the instance's StatefulSet, Service, claim and pod to go")

    # Delete the cluster: a wrong confirmation deletes nothing; the right one deletes it all.
    await page.click("#delete")
    await page.fill("#confirm input[name=confirm]", "wbe")
    await page.click("#confirm button")
    assert (
        "Type the cluster&#39;s name" in await page.content()
        or "Type the cluster's name" in await page.inner_text("#error")
    )
    assert await portal_clusters(super_client) == ["web"]
    await page.fill("#confirm input[name=confirm]", "web")
    await page.click("#confirm button")
    await page.wait_for_url(f"{portal.url}/clusters")
    assert "Cluster web is being deleted." in await page.inner_text("#flash")
    await tenants.wait_gone(super_client, "web", NS)
    await page.context.close()


async def test_others_see_nothing_of_a_developers_cluster_and_admins_see_everything(
    portal: Portal, browser: Browser, super_client: Client
) -> None:
    dev = await login(browser, portal, DEV)
    await dev.fill("#create-cluster input[name=name]", "mine")
    await dev.click("#create-cluster button")
    await dev.wait_for_selector("#kubeconfig", timeout=120_000)

    alice = await login(browser, portal, ALICE)
    assert await alice.is_visible("#empty")
    assert "mine" not in await alice.inner_text("main")
    await shot(alice, "06-second-user")
    for path in (
        "/clusters/mine",
        "/clusters/mine/kubeconfig",
        "/clusters/mine/delete",
        "/clusters/mine/status",
    ):
        resp = await alice.request.get(f"{portal.url}{path}")
        assert resp.status == 404, path
        assert "you have no cluster named &#39;mine&#39;" in await resp.text()
    status, _ = await post(alice, "/clusters/mine/delete", {"csrf": await csrf(alice), "confirm": "mine"})
    assert status == 404
    status, _ = await post(
        alice,
        "/clusters/mine/instances",
        {"csrf": await csrf(alice), "name": "x", "cpu": "1", "memory_gib": "1", "disk_gib": "1"},
    )
    assert status == 404
    assert await portal_clusters(super_client) == ["mine"]
    assert (await alice.request.get(f"{portal.url}/admin")).status == 403

    # A form sent twice at once (a double click) makes one instance; the other answer says why.
    form = {
        "csrf": await csrf(dev),
        "name": "one",
        "image": "",
        "cpu": "1",
        "memory_gib": "2",
        "disk_gib": "5",
    }
    answers = await asyncio.gather(*(post(dev, "/clusters/mine/instances", form) for _ in range(2)))
    assert sorted(status for status, _ in answers) == [303, 409]
    assert any("already has an instance named &#39;one&#39;" in text for _, text in answers)
    root = await tenants.root_of(super_client, "mine", NS)

    async def synced() -> bool:
        pods = await super_client.list(r.PODS, label_selector=f"{naming.LABEL_TENANT}={root}")
        return [p["metadata"]["name"] for p in pods["items"]] == ["one-0"]

    await wait_for(synced, "exactly one instance pod in the super cluster")

    admin = await login(browser, portal, ADMIN)
    await admin.click("a[href='/admin']")
    table = await admin.inner_text("#tenants")
    assert "mine" in table and DEV.email in table and "Running" in table
    row = await admin.inner_text("#tenants tr:has(td:text-is('mine'))")
    assert row.split("\t")[-3:] == ["1", "1", "2 GiB"]  # pods, CPU and memory requested
    await shot(admin, "07-admin")

    # A forged CSRF token and an expired session change nothing.
    status, text = await post(dev, "/clusters/mine/delete", {"csrf": "forged", "confirm": "mine"})
    assert status == 403 and "Nothing was changed" in text
    sealer = session.Sealer(session.key_file(portal.key_file), session.COOKIE)
    stale = {"owner": DEV.email, "name": DEV.name, "admin": False, "csrf": "c"}
    old: BrowserContext = await browser.new_context()
    await old.add_cookies(
        [
            {
                "name": session.COOKIE,
                "value": sealer.seal(stale, now=time.time() - 13 * 3600),
                "url": portal.url,
            }
        ]
    )
    expired = await old.new_page()
    await expired.goto(f"{portal.url}/clusters/mine")
    assert "/login" in expired.url and "Your session expired" in await expired.inner_text("#error")
    await shot(expired, "08-session-expired")
    resp = await old.request.post(
        f"{portal.url}/clusters/mine/delete", form={"csrf": "c", "confirm": "mine"}, max_redirects=0
    )
    assert resp.status == 303 and "/login" in resp.headers["location"]
    assert await portal_clusters(super_client) == ["mine"]

    # Logging out ends the session.
    await dev.click("header form button")
    await dev.wait_for_url(f"{portal.url}/login?reason=logout")
    await dev.goto(f"{portal.url}/clusters")
    assert "/login" in dev.url

    await super_client.delete(r.VIRTUALCLUSTERS, "mine", NS)
    await tenants.wait_gone(super_client, "mine", NS)
    for p in (alice, admin, expired):
        await p.context.close()
