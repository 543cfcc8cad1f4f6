"""The web view at ``/`` of a running main job, driven by a real headless Chromium (playwright).

The browser is the system's Chromium (Debian's ``chromium`` package): playwright only
drives it, nothing is downloaded. Screenshots go to ``docs/images/`` (shown by
``docs/running.md``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.api import RemoteBackend
from actors.orm import ModelAccessor
from actors.store import Caller
from tests.helpers import wait_for
from tests.main_support import ROOT, MainProcess
from tests.test_observe_why import config_data, project

CHROMIUM = next(
    (p for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")) if p and Path(p).exists()),
    None,
)
IMAGES = ROOT / "docs" / "images"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found (install Debian's chromium package, or set CHROMIUM=path)"
)

ADMIN = ("admin", "admin-pw")
VIEWER = ("viewer", "viewer-pw")


def fetch(url: str, authorization: str | None = None) -> tuple[int, dict[str, str], str]:
    """``(status, headers, body)`` of a GET."""
    request = urllib.request.Request(url, headers={"Authorization": authorization} if authorization else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read().decode()


def basic(user: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(f"{user[0]}:{user[1]}".encode()).decode()


@pytest.fixture
def job(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A main job over the why-test project, users configured, anonymous reads refused: (http url, API)."""
    data = config_data(project(tmp_path / "sync"))
    data["api"] = {
        "address": "127.0.0.1:0",
        "anonymous_read": False,
        "users": [
            {"username": ADMIN[0], "password": ADMIN[1], "role": "admin"},
            {"username": VIEWER[0], "password": VIEWER[1], "role": "readonly"},
        ],
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    main = MainProcess(["-C", str(config)], tmp_path / "main.log")
    try:
        main.wait_for_line("API serving")
        main.wait_for_line("HTTP endpoint serving")
        text = main.text()
        http = re.search(r"url=(http://127\.0\.0\.1:\d+)/metrics", text)
        api = re.search(r"API serving\s.*address=(127\.0\.0\.1:\d+)", text)
        assert http and api, text
        yield http.group(1), api.group(1)
    finally:
        assert main.stop() == 0, main.text()


def test_the_web_view_in_chromium(job: tuple[str, str]) -> None:
    from playwright.sync_api import sync_playwright

    url, endpoint = job
    backend = RemoteBackend(endpoint, username=ADMIN[0], password=ADMIN[1], timeout=10.0)
    models = ModelAccessor(backend, caller=Caller.CLIENT)
    try:
        # Authenticated like the API: no credentials, no page (a Basic challenge for the browser).
        code, headers, _ = fetch(url + "/")
        assert code == 401 and headers["WWW-Authenticate"].startswith("Basic")
        assert fetch(url + "/live", basic(("viewer", "wrong")))[0] == 401
        token = backend.login(*VIEWER)
        assert fetch(url + "/live", f"Bearer {token}")[0] == 200
        assert fetch(url + "/metrics")[0] == 200  # scrapers and probes stay open

        ada = models.MyModel(first_name="Ada", last_name="Lovelace")
        ada.save()
        bob = models.MyModel(first_name="Bob", last_name="bad")
        bob.save()
        alpha = models.Alpha(name="bad")
        alpha.save()
        beta = models.Beta(name="b", alpha=alpha)
        beta.save()
        models.Gamma(name="g").save()  # its model policy raises
        wait_for(
            lambda: {(p["model"], p["id"]) for p in json.loads(fetch(url + "/problems", basic(VIEWER))[2])}
            >= {("MyModel", bob.id), ("Beta", beta.id), ("Gamma", 1)},
            timeout=30,
            description="Bob and the Beta among the problems",
        )

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                context = browser.new_context(
                    http_credentials={"username": VIEWER[0], "password": VIEWER[1]},
                    viewport={"width": 1200, "height": 900},
                )
                page = context.new_page()
                page.goto(url + "/")
                # A running step, and a failing object with its error.
                page.wait_for_selector('#tree tr[data-child="SyncMyModel"][data-state="running"]')
                row = page.wait_for_selector(f'#problem-table tr[data-object="MyModel/{bob.id}"]')
                assert row is not None and "backend refused Bob" in row.inner_text()
                blocked = page.locator(f'#problem-table tr[data-object="Beta/{beta.id}"]')
                assert f"Alpha {alpha.id}" in blocked.inner_text()
                assert "no policy for g" in page.inner_text('#problem-table tr[data-object="Gamma/1"]')

                # New objects synced show without a reload.
                page.evaluate("window.notReloaded = true")
                for name in ("Cy", "Di", "Ed"):
                    done = _done(page)
                    models.MyModel(first_name=name, last_name="Young").save()
                    page.wait_for_function(
                        "n => Number(document.querySelector("
                        "'#tree tr[data-child=\"SyncMyModel\"] .done').textContent) > n",
                        arg=done,
                        timeout=20_000,
                    )
                assert page.evaluate("window.notReloaded") is True
                page.wait_for_selector('#tree tr[data-child="SyncMyModel"] svg.spark')  # the rate's history
                IMAGES.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(IMAGES / "webview-overview.png"))

                # The object's page, reached with the keyboard: why at the top, status, timeline.
                page.focus(f'#problem-table tr[data-object="MyModel/{bob.id}"] a')
                page.keyboard.press("Enter")
                page.wait_for_selector("#why .badge")
                assert "backend refused Bob" in page.inner_text("#why")
                page.wait_for_selector('#timeline li[data-kind="create"]')
                timeline = page.inner_text("#timeline")
                assert "status written by SyncMyModel" in timeline, timeline
                assert "its last sync failed" in page.inner_text("#status-fields")
                page.screenshot(path=str(IMAGES / "webview-object.png"))

                # A phone-sized screen: one column, every cell labelled.
                phone = context.new_page()
                phone.set_viewport_size({"width": 390, "height": 800})
                phone.goto(url + "/")
                phone.wait_for_selector('#tree tr[data-child="SyncMyModel"]')
                width = phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 400, width
                phone.screenshot(path=str(IMAGES / "webview-phone.png"))
            finally:
                browser.close()
    finally:
        backend.close()


def _done(page: Any) -> int:
    return int(page.inner_text('#tree tr[data-child="SyncMyModel"] .done'))
