"""The console in a real browser (Debian's chromium, headless, driven by Playwright) against a
real ``sandbox serve`` on a fresh home with synthetic data.

The reviewer, auditor and subject act in the browser; the operator's verifications are API calls
with its bearer token, as an operator's systems make them. Screenshots of every page go to
``tests/output/console/`` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from audit import Actor, ActorKind
from authz import consent as consent_service
from authz.accounts import create_account
from authz.permissions import Role
from core.config import load_settings
from core.db import transaction
from operators import services as operator_services
from sandbox.data.stores import dataset_table
from sandbox.runtime import open_runtime

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[1] / "output" / "console"
PASSWORD = "correct horse battery staple"
SETUP = Actor(ActorKind.SYSTEM, "browser-test")
CONTRACT = {
    "purpose": "小微企业信用贷款贷前核验",
    "datasets": {"enterprise_tax": ["credit_code", "year", "annual_tax"]},
    "operations": ["verify:tax_paid_at_least"],
    "limits": {"valid_days": 90, "daily_quota": 1000, "epsilon_total": 1.0, "epsilon_per_query": 0.5},
}

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="Debian's chromium is not installed at /usr/bin/chromium"
    ),
]
playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")


@dataclass
class World:
    """The live server and the parties of the story."""

    base: str
    home: Path
    firm: str
    operator_id: str = ""
    operator_token: str = ""
    client_id: str = ""
    client_secret: str = ""
    other_client_id: str = ""
    other_client_secret: str = ""
    reviewer_token: str = ""
    contracts: dict[str, str] = field(default_factory=dict)
    consent_id: str = ""
    shots: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api(world: World, method: str, path: str, body: Any = None, token: str = "") -> tuple[int, Any]:
    """One JSON request to the live server."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        world.base + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers=headers,
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def _cli(env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox.cli", *args], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"sandbox {' '.join(args)} failed:\n{done.stdout}{done.stderr}"


def _setup_home(home: Path, env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Init, synthesize, and make the accounts and two operators; the firm's credit code."""
    _cli(env, "init")
    _cli(env, "data", "synth", "--enterprises", "300", "--persons", "200", "--seed", "7")
    runtime = open_runtime(load_settings(env))
    try:
        table = dataset_table(runtime.catalog.dataset("enterprises"))
        with runtime.stores.lookup.connect() as conn:
            firm = str(conn.execute(select(table.c.credit_code).limit(1)).scalar_one())
        made: dict[str, str] = {}
        with transaction(runtime.sessions) as session:
            for username, role in (
                ("reviewer", Role.REVIEWER),
                ("auditor", Role.AUDITOR),
                ("admin", Role.ADMIN),
            ):
                create_account(
                    session, username=username, role=role, password=PASSWORD, subject_id=None, actor=SETUP
                )
            create_account(
                session, username="firm", role=Role.SUBJECT, password=PASSWORD, subject_id=firm, actor=SETUP
            )
            for key, name, code in (
                ("a", "齐鲁普惠金融科技有限公司", "913701023C8K2Q1X7A"),
                ("b", "泉城数据服务有限公司", "913701023C8K2Q2X3K"),
            ):
                operator = operator_services.register_operator(
                    session,
                    name=name,
                    credit_code=code,
                    license_no="鲁金监许〔2024〕17号",
                    qualifications=[],
                    actor=SETUP,
                    request_id=None,
                )
                credential, secret = operator_services.issue_credentials(
                    session, operator.id, actor=SETUP, request_id=None
                )
                made[f"{key}_id"], made[f"{key}_client"], made[f"{key}_secret"] = (
                    operator.id,
                    credential.client_id,
                    secret,
                )
        return firm, made
    finally:
        runtime.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """A fresh home, a live server, and the contracts the scenarios need."""
    home = tmp_path_factory.mktemp("console") / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env.update(SANDBOX_HOME=str(home), SANDBOX_CONSOLE_SECURE_COOKIE="0")  # plain http on loopback
    firm, made = _setup_home(home, env)
    port = _free_port()
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "sandbox.cli", "serve", "--port", str(port), "--workers", "2"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    world = World(base=f"http://127.0.0.1:{port}", home=home, firm=firm)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, (home / "server.log").read_text(errors="replace")
            try:
                if api(world, "GET", "/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        _story_setup(world, made)
        yield world
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _token(world: World, client_id: str, secret: str) -> str:
    status, body = api(
        world,
        "POST",
        "/v1/oauth/token",
        {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert status == 200, body
    return str(body["access_token"])


def _story_setup(world: World, made: dict[str, str]) -> None:
    """Operator A requests three contracts; the firm consents to A's tax checks."""
    world.operator_id = made["a_id"]
    world.client_id, world.client_secret = made["a_client"], made["a_secret"]
    world.other_client_id, world.other_client_secret = made["b_client"], made["b_secret"]
    world.operator_token = _token(world, world.client_id, world.client_secret)
    for name in ("reviewed", "consented", "spare"):
        status, body = api(world, "POST", "/v1/authorizations", CONTRACT, world.operator_token)
        assert status == 201, body
        world.contracts[name] = body["id"]
    status, body = api(world, "POST", "/v1/auth/login", {"username": "reviewer", "password": PASSWORD})
    world.reviewer_token = body["access_token"]
    status, body = api(
        world, "POST", f"/v1/authorizations/{world.contracts['consented']}/approve", {}, world.reviewer_token
    )
    assert status == 200, body
    runtime = open_runtime(load_settings({"SANDBOX_HOME": str(world.home)}))
    try:
        with transaction(runtime.sessions) as session:
            world.consent_id = consent_service.grant_consent(
                session,
                runtime.catalog,
                subject_id=world.firm,
                operator_id=world.operator_id,
                purpose="申请经营贷款",
                templates=["tax_paid_at_least"],
                valid_days=30,
                actor=SETUP,
                request_id=None,
            ).id
    finally:
        runtime.close()


def verify(world: World, contract: str) -> tuple[int, Any]:
    """The operator's next verification about the firm under ``contract``."""
    return api(
        world,
        "POST",
        "/v1/verify",
        {
            "authorization_id": world.contracts[contract],
            "template": "tax_paid_at_least",
            "subject": world.firm,
            "params": {"threshold": 100000, "year": 2024},
        },
        world.operator_token,
    )


@pytest.fixture(scope="module")
def browser(world: World) -> Iterator[Any]:
    """Headless chromium (Debian's; Playwright never downloads a browser here)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        try:
            yield launched
        finally:
            launched.close()


def new_page(browser: Any, world: World, *, locale: str = "zh-CN") -> Any:
    """A fresh browser context (its own cookies) and page."""
    context = browser.new_context(base_url=world.base, locale=locale, viewport={"width": 1280, "height": 900})
    return context.new_page()


def shot(page: Any, name: str) -> None:
    """A full-page screenshot for a person to look at."""
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, username: str) -> None:
    """Sign in through the staff form, with the keyboard."""
    page.goto("/console/login")
    page.get_by_label(re.compile("用户名|Username")).fill(username)
    page.locator("#password").fill(PASSWORD)
    page.locator("#password").press("Enter")
    page.wait_for_load_state()


def test_reviewer_approves_a_pending_contract_and_the_next_verification_succeeds(
    world: World, browser: Any
) -> None:
    assert verify(world, "reviewed")[0] == 403  # pending: not yet
    page = new_page(browser, world)
    page.goto("/console/login")
    shot(page, "01-login-zh")
    sign_in(page, "reviewer")
    shot(page, "02-reviewer-queue")
    page.locator(f"a[href='/console/review/contracts/{world.contracts['reviewed']}']").first.click()
    page.wait_for_load_state()
    shot(page, "03-reviewer-contract-pending")
    page.locator("#limit_daily_quota").fill("500")
    page.locator("#comment").fill("用途明确, 范围最小")
    page.locator("#approve").click()
    page.wait_for_load_state()
    assert page.locator(".flash.success").count() == 1
    assert page.locator(".badge.s-approved").count() == 1
    shot(page, "04-reviewer-contract-approved")
    status, body = verify(world, "reviewed")
    assert status == 200, body
    assert isinstance(body["result"], bool) and body["seal"]
    page.context.close()


def test_reviewer_revokes_it_and_the_next_verification_is_refused(world: World, browser: Any) -> None:
    page = new_page(browser, world)
    sign_in(page, "reviewer")
    page.goto(f"/console/review/contracts/{world.contracts['reviewed']}")
    page.locator("#reason-revoke").fill("发现超范围使用")
    page.locator("#reason-revoke").press("Enter")
    page.wait_for_load_state()
    assert page.locator(".badge.s-revoked").count() == 1
    shot(page, "05-reviewer-contract-revoked")
    status, body = verify(world, "reviewed")
    assert status == 403 and body["error"]["code"] == "authorization_inactive", body
    page.context.close()


def test_auditor_finds_the_denial_by_searching_and_sees_the_log_verified(world: World, browser: Any) -> None:
    page = new_page(browser, world, locale="en-US")
    sign_in(page, "auditor")
    page.locator("#actor").fill(f"operator:{world.operator_id}")
    page.locator("#outcome").select_option("denied")
    page.locator("#search").click()
    page.wait_for_load_state()
    rows = page.locator("table.events tbody tr.o-denied")
    assert rows.count() >= 2  # refused while pending, and after the revocation
    assert rows.filter(has_text="authorization_inactive").count() >= 1
    panel = page.locator("#integrity")
    assert "integrity ok" in (panel.get_attribute("class") or "")
    assert "Verified" in panel.inner_text()
    shot(page, "06-auditor-search-denied-en")
    page.locator("form[action='/console/audit/checkpoint'] button").click()
    page.wait_for_load_state()
    assert "ok" in (page.locator("#integrity").get_attribute("class") or "")
    rows.filter(has_text="authorization_inactive").last.locator("a").click()
    page.wait_for_load_state()
    assert page.locator(".integrity.ok").count() == 1
    shot(page, "07-auditor-inclusion-proof")
    page.goto("/console/audit/usage")
    assert page.locator("svg.chart").count() == 3
    shot(page, "08-auditor-usage-charts")
    page.context.close()


def test_subject_revokes_consent_and_the_operators_next_check_is_refused(world: World, browser: Any) -> None:
    status, body = verify(world, "consented")
    assert status == 200, body
    page = new_page(browser, world)
    sign_in(page, "firm")
    assert page.get_by_text("tax_paid_at_least").count() >= 1
    shot(page, "09-subject-consents")
    page.once("dialog", lambda dialog: dialog.accept())  # the revoke button asks for confirmation
    page.locator(f"form[action='/console/me/consents/{world.consent_id}/revoke'] button").click()
    page.wait_for_load_state()
    assert page.locator(".flash.success").count() == 1
    shot(page, "10-subject-consent-revoked")
    status, body = verify(world, "consented")
    assert status == 403 and body["error"]["code"] == "consent_required", body
    page.reload()
    assert page.locator("td", has_text="tax_paid_at_least").count() >= 2  # the checks, success and denied
    page.context.close()


def test_a_form_without_its_csrf_token_is_refused(world: World, browser: Any) -> None:
    page = new_page(browser, world)
    sign_in(page, "firm")
    page.locator("#purpose").fill("伪造的同意")
    page.locator("input[name=templates][value=tax_paid_at_least]").check()
    page.evaluate(
        "document.querySelector(\"form[action='/console/me/consents'] input[name=csrf_token]\").remove()"
    )
    with page.expect_response(lambda r: r.url.endswith("/console/me/consents")) as caught:
        page.locator("form[action='/console/me/consents'] button[type=submit]").click()
    assert caught.value.status == 400
    assert "csrf_invalid" in page.content()
    shot(page, "11-csrf-refused")
    page.goto("/console/me")
    assert page.get_by_text("伪造的同意").count() == 0
    page.context.close()


def test_an_operator_cannot_open_another_operators_contract_page(world: World, browser: Any) -> None:
    page = new_page(browser, world)
    page.goto("/console/login")
    page.locator("#client_id").fill(world.other_client_id)
    page.locator("#client_secret").fill(world.other_client_secret)
    page.locator("#client_secret").press("Enter")
    page.wait_for_load_state()
    assert page.url.endswith("/console/operator")
    response = page.goto(f"/console/operator/contracts/{world.contracts['consented']}")
    assert response is not None and response.status == 404
    shot(page, "12-operator-other-contract-404")
    page.context.close()
    mine = new_page(browser, world)
    mine.goto("/console/login")
    mine.locator("#client_id").fill(world.client_id)
    mine.locator("#client_secret").fill(world.client_secret)
    mine.locator("#client_secret").press("Enter")
    mine.wait_for_load_state()
    assert mine.locator("button.copy").count() >= 2  # the sealed results of the verifications
    shot(mine, "13-operator-home")
    response = mine.goto(f"/console/operator/contracts/{world.contracts['consented']}")
    assert response is not None and response.status == 200
    shot(mine, "14-operator-contract")
    mine.context.close()


def test_admin_pages_render_in_both_languages(world: World, browser: Any) -> None:
    page = new_page(browser, world, locale="en-US")
    sign_in(page, "admin")
    assert page.locator("h1").inner_text() == "Administration"
    shot(page, "15-admin-en")
    page.get_by_role("link", name="中文").click()
    page.wait_for_load_state()
    assert page.locator("h1").inner_text() == "系统管理"
    shot(page, "16-admin-zh")
    page.context.close()


def test_a_console_page_asks_for_nothing_it_does_not_get(world: World, browser: Any) -> None:
    """A walkthrough saw the browser's own request for /favicon.ico fail on every page: the
    console names its icon, and no request of a page's load is refused or missing."""
    page = new_page(browser, world, locale="en-US")
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("requestfailed", lambda r: failed.append(f"failed {r.url}"))
    sign_in(page, "admin")
    page.wait_for_load_state("networkidle")
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert icon is not None and icon.endswith("/favicon.svg")
    assert page.request.get(icon).status == 200
    assert failed == []
    page.context.close()
