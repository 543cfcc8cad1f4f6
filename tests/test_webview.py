"""The web view at ``/``: its JSON routes, its authentication, and the page in a real Chromium.

The browser test runs a main job in a subprocess and drives the system's Chromium
(Debian's ``chromium`` package) with playwright, which downloads nothing. It saves
screenshots in its temporary folder, or in ``$ACTORS_SCREENSHOTS`` when set
(``ACTORS_SCREENSHOTS=docs/images`` renews the ones ``docs/running.md`` shows).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from actors.api import RemoteBackend
from actors.config import Config
from actors.orm import ModelAccessor
from actors.runtime import ChildStatus, FakeClock, Synchronizer
from actors.runtime._inspect import RATE_WINDOW, Rates, event_partitions, object_page, problems
from actors.store import Caller
from tests import test_events_unit as events
from tests.helpers import wait_for
from tests.main_support import MainProcess
from tests.test_events_unit import fresh_seen, start, store  # noqa: F401 - the event actor's harness
from tests.test_observe import client
from tests.test_observe_why import config_data, project

CHROMIUM = next(
    (
        p
        for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"))
        if p and Path(p).exists()
    ),
    None,
)

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium found (install Debian's chromium package, or set CHROMIUM=path)"
)

ADMIN = ("admin", "admin-pw")
VIEWER = ("viewer", "viewer-pw")
SYNC = ("sync", "sync-pw")


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


def serving(process: MainProcess) -> tuple[str, str]:
    """The HTTP endpoint's URL and the API's address, read from the process's log."""
    text = process.text()
    http = re.search(r"HTTP endpoint serving\s.*url=(http://127\.0\.0\.1:\d+)/metrics", text)
    api = re.search(r"API serving\s.*address=(127\.0\.0\.1:\d+)", text)
    assert http and api, text
    return http.group(1), api.group(1)


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
        yield serving(main)
    finally:
        assert main.stop() == 0, main.text()


@needs_chromium
def test_the_web_view_in_chromium(job: tuple[str, str], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, endpoint = job
    images = Path(os.environ.get("ACTORS_SCREENSHOTS") or tmp_path / "images")
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
            lambda: (
                {(p["model"], p["id"]) for p in json.loads(fetch(url + "/problems", basic(VIEWER))[2])}
                >= {("MyModel", bob.id), ("Beta", beta.id), ("Gamma", 1)}
            ),
            timeout=30,
            description="Bob and the Beta among the problems",
        )

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
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
                images.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(images / "webview-overview.png"))

                # The object's page, reached with the keyboard: why at the top, status, timeline.
                page.focus(f'#problem-table tr[data-object="MyModel/{bob.id}"] a')
                page.keyboard.press("Enter")
                page.wait_for_selector("#why .badge")
                assert "backend refused Bob" in page.inner_text("#why")
                page.wait_for_selector('#timeline li[data-kind="create"]')
                timeline = page.inner_text("#timeline")
                assert "status written by SyncMyModel" in timeline, timeline
                assert "its last sync failed" in page.inner_text("#status-fields")
                page.screenshot(path=str(images / "webview-object.png"))

                # A phone-sized screen: one column, every cell labelled.
                phone = context.new_page()
                phone.set_viewport_size({"width": 390, "height": 800})
                phone.goto(url + "/")
                phone.wait_for_selector('#tree tr[data-child="SyncMyModel"]')
                width = phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 400, width
                phone.screenshot(path=str(images / "webview-phone.png"))
            finally:
                browser.close()
        for name in ("webview-overview.png", "webview-object.png", "webview-phone.png"):
            assert (images / name).read_bytes().startswith(b"\x89PNG"), name
    finally:
        backend.close()


@pytest.fixture
def core(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """``python -m actors.main core`` over the why-test models, users configured: (http url, API)."""
    folder = project(tmp_path / "sync")
    data = {
        "name": "core",
        "models_dir": str(folder / "models"),
        "store": {"url": f"sqlite:///{tmp_path / 'core.db'}"},
        "http": {"address": "127.0.0.1:0"},
        "api": {
            "address": "127.0.0.1:0",
            "anonymous_read": False,
            "users": [
                {"username": ADMIN[0], "password": ADMIN[1], "role": "admin"},
                {"username": VIEWER[0], "password": VIEWER[1], "role": "readonly"},
                {"username": SYNC[0], "password": SYNC[1], "role": "synchronizer"},
            ],
        },
    }
    config = tmp_path / "core.yaml"
    config.write_text(yaml.safe_dump(data))
    process = MainProcess(["core", "--config", str(config)], tmp_path / "core.log")
    try:
        process.wait_for_line("HTTP endpoint serving")
        yield serving(process)
    finally:
        assert process.stop() == 0, process.text()


@needs_chromium
def test_the_web_view_of_core_in_chromium(core: tuple[str, str], tmp_path: Path) -> None:
    """core has no actor tree: the page says so, and lists failing objects from their status fields."""
    from playwright.sync_api import sync_playwright

    url, endpoint = core
    assert fetch(url + "/")[0] == 401 and fetch(url + "/live", basic(VIEWER))[0] == 200
    backend = RemoteBackend(endpoint, username=ADMIN[0], password=ADMIN[1], timeout=10.0)
    try:
        models = ModelAccessor(backend, caller=Caller.CLIENT)
        bob = models.MyModel(first_name="Bob", last_name="bad")
        bob.save()
        models.MyModel(first_name="Ada", last_name="Lovelace").save()
        # A remote synchronizer's step failed on Bob: it writes his status fields through the API.
        remote = RemoteBackend(endpoint, username=SYNC[0], password=SYNC[1], timeout=10.0)
        step = ModelAccessor(remote, caller=Caller.STEP)
        failed = step.MyModel.objects.get(id=bob.id)
        failed.backend_code = 2
        failed.backend_status = "backend refused Bob"
        retry = time.time() + 600
        failed.backend_register = json.dumps({"failures": 3, "exponent": 2, "next_run": retry})
        failed.save(update_fields=["backend_code", "backend_status", "backend_register"])
        remote.close()
    finally:
        backend.close()
    viewer = basic(VIEWER)
    assert [p["id"] for p in json.loads(fetch(url + "/problems/MyModel", viewer)[2])] == [bob.id]
    assert json.loads(fetch(url + "/problems/Alpha", viewer)[2]) == []
    assert fetch(url + "/object/MyModel/999", viewer)[0] == 404
    assert fetch(url + "/object/Nope/1", viewer)[0] == 404
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(
                http_credentials={"username": VIEWER[0], "password": VIEWER[1]},
                viewport={"width": 1200, "height": 900},
            )
            page = context.new_page()
            page.goto(url + "/")
            note = page.wait_for_selector("#tree-note")
            assert note is not None and note.inner_text() == "core: no synchronizer runs in this process"
            row = page.wait_for_selector(f'#problem-table tr[data-object="MyModel/{bob.id}"]')
            assert row is not None
            text = row.inner_text()
            assert "backend refused Bob" in text and "3" in text and "backoff" in text, text
            assert page.locator("#problem-table tbody tr").count() == 1  # Ada is fine
            page.screenshot(path=str(tmp_path / "webview-core.png"))

            page.focus(f'#problem-table tr[data-object="MyModel/{bob.id}"] a')
            page.keyboard.press("Enter")
            page.wait_for_selector('#timeline li[data-kind="update"]')
            assert "no synchronizer runs in this process" in page.inner_text("#why")
            kinds = page.eval_on_selector_all("#timeline li", "items => items.map(i => i.dataset.kind)")
            assert kinds == ["retry", "update", "create"], kinds
            assert "its last sync failed" in page.inner_text('#status-fields tr[data-field="backend_code"]')
            register = page.inner_text('#status-fields tr[data-field="backend_register"]')
            assert "3 failed attempt(s)" in register, register
            assert "Bob" in page.inner_text("#fields")
        finally:
            browser.close()


EVENT_STEP = """
import json
from synchronizers.new_base.eventstep import EventStep

class OrdersStep(EventStep):
    technology = "kafka"
    topics = [{topic!r}]

    def process_event(self, event):
        order = json.loads(event.value)
        if order.get("explode"):
            raise RuntimeError("cannot handle order %d" % order["id"])
"""


@needs_chromium
def test_the_event_steps_in_chromium(kafka_bootstrap: str, tmp_path: Path) -> None:
    """A main job with an event step on a real broker: partitions, lag, progress, the dead letter."""
    from playwright.sync_api import sync_playwright

    from tests.test_events_kafka import create_topic, send_all, unique

    topic = create_topic(kafka_bootstrap, unique("orders"), partitions=2)
    values = [json.dumps({"id": i}).encode() for i in range(12)]
    values[5] = json.dumps({"id": 5, "explode": True}).encode()
    send_all(kafka_bootstrap, topic, values, [str(i % 2).encode() for i in range(12)])
    (tmp_path / "event_steps").mkdir()
    (tmp_path / "event_steps" / "orders.py").write_text(EVENT_STEP.format(topic=topic))
    name = unique("webview")
    data = {
        "name": name,
        "data_dir": str(tmp_path / "data"),
        "event_steps_dir": str(tmp_path / "event_steps"),
        "event_bus": {"kind": "kafka", "endpoint": kafka_bootstrap, "max_retries": 1, "retry_backoff": 0.05},
        "api": {"address": "127.0.0.1:0"},
        "http": {"address": "127.0.0.1:0"},
    }
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(data))
    main = MainProcess(["-C", str(config)], tmp_path / "main.log")
    images = [
        tmp_path / "images",
        *([Path(os.environ["ACTORS_SCREENSHOTS"])] if os.environ.get("ACTORS_SCREENSHOTS") else []),
    ]
    try:
        main.wait_for_line("HTTP endpoint serving")
        found = re.search(r"url=(http://127\.0\.0\.1:\d+)/metrics", main.text())
        assert found, main.text()
        url = found.group(1)

        def settled() -> bool:
            live = json.loads(fetch(url + "/live")[2])
            lags = [p["lag"] for p in live["partitions"]]
            return live["dead_letters"].get("OrdersStep", {}).get("count") == 1 and lags == [0, 0]

        wait_for(settled, timeout=40, description="the poison order dead-lettered, both partitions caught up")
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=["--no-sandbox"]
            )
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(url + "/")
                page.wait_for_selector("#events:not([hidden])")
                assert page.is_visible("#nav-events")
                for partition in (0, 1):
                    row = page.wait_for_selector(f'#partitions tr[data-partition="{topic}[{partition}]"]')
                    assert row is not None
                    cells = row.inner_text().split("\t")
                    assert cells[:4] == ["OrdersStep", topic, str(partition), "0"], cells
                    assert cells[4].endswith("s ago") or "min ago" in cells[4], cells  # its last progress
                dead = page.inner_text('#dead-letters .dead[data-dead="OrdersStep"]')
                assert "1 dead letter(s)" in dead, dead
                assert f"{topic}[" in dead and f"{name}.dead-letters" in dead, dead
                assert "cannot handle order 5" in dead, dead
                for folder in images:
                    folder.mkdir(parents=True, exist_ok=True)
                    page.locator("#events").screenshot(path=str(folder / "webview-events.png"))
            finally:
                browser.close()
        assert (images[0] / "webview-events.png").read_bytes().startswith(b"\x89PNG")
    finally:
        assert main.stop() == 0, main.text()


def _done(page: Any) -> int:
    return int(page.inner_text('#tree tr[data-child="SyncMyModel"] .done'))


# -- the routes, in process -------------------------------------------------------------------------------


@pytest.fixture
def failing(tmp_path: Path) -> Iterator[tuple[Synchronizer, dict[str, int]]]:
    """A synchronizer (fake clock, HTTP on a free port): failing, blocked and policy-failed objects."""
    data = config_data(project(tmp_path / "sync"), http={"address": "127.0.0.1:0"})
    sync = Synchronizer(Config.from_dict(data), clock=FakeClock()).start()
    models = client(sync)
    objects = {}
    for name, obj in (
        ("ada", models.MyModel(first_name="Ada", last_name="Lovelace")),
        ("bob", models.MyModel(first_name="Bob", last_name="bad")),
        ("alpha", models.Alpha(name="bad")),
        ("gamma", models.Gamma(name="g")),
    ):
        obj.save()
        objects[name] = obj.id
    beta = models.Beta(name="b", alpha_id=objects["alpha"])
    beta.save()
    objects["beta"] = beta.id
    assert sync.wait_idle(10)
    yield sync, objects
    sync.stop()


def test_problems_lists_failing_and_blocked_objects_filtered_by_model_and_step(failing: Any) -> None:
    sync, ids = failing
    rows = {(p.model, p.id): p for p in problems(sync)}
    assert set(rows) == {
        ("MyModel", ids["bob"]),
        ("Alpha", ids["alpha"]),
        ("Beta", ids["beta"]),
        ("Gamma", 1),
    }
    bob = rows[("MyModel", ids["bob"])]
    assert (bob.step, bob.reason, bob.last_error) == ("SyncMyModel", "backoff", "backend refused Bob")
    # Tried twice at once (the first failure retries at once), then backed off for 600 s.
    assert bob.attempts == 2 and bob.next_retry == pytest.approx(sync.clock.now() + 600)
    beta = rows[("Beta", ids["beta"])]
    assert (beta.reason, beta.blocked_by) == ("blocked", f"Alpha {ids['alpha']}")
    assert "alpha refused" in (beta.last_error or "")
    gamma = rows[("Gamma", 1)]
    assert gamma.step == "policies" and "no policy for g" in (gamma.last_error or "")
    assert [p.model for p in problems(sync, "MyModel")] == ["MyModel"]
    assert [p.model for p in problems(sync, None, "SyncBeta")] == ["Beta"]
    url = sync.http.url
    over_http = json.loads(fetch(url + "/problems/_/SyncAlpha")[2])
    assert [(p["model"], p["id"]) for p in over_http] == [("Alpha", ids["alpha"])]
    assert fetch(url + "/problems/a/b/c")[0] == 400


def test_an_objects_page_has_why_its_status_in_words_and_its_journal(failing: Any) -> None:
    sync, ids = failing
    page = object_page(sync, "MyModel", ids["bob"])
    assert page.why.reason == "backoff" and page.fields["first_name"] == "Bob"
    meaning = {s["field"]: s["meaning"] for s in page.status}
    assert meaning["backend_code"].startswith("its last sync failed")
    assert meaning["enacted"] == "never synced" and "2 failed attempt(s)" in meaning["backend_register"]
    # The journal's entries (store time), oldest first; the retry comes from the register (the fake clock).
    kinds = [(e.kind, e.origin) for e in reversed(page.timeline) if e.kind != "retry"]
    assert kinds[0] == ("create", None) and ("update", "SyncMyModel") in kinds
    assert [e.text for e in page.timeline if e.kind == "retry"] == ["next try (after 2 failed attempt(s))"]
    assert "does not record which fields changed" in page.timeline_note
    ada = object_page(sync, "MyModel", ids["ada"])
    assert ada.why.reason == "enacted" and "synced" in [e.kind for e in ada.timeline]
    url = sync.http.url
    code, _, text = fetch(f"{url}/object/Beta/{ids['beta']}")
    assert code == 200 and json.loads(text)["why"]["blocked_by"] == ["Alpha", ids["alpha"]]
    assert fetch(f"{url}/object/MyModel/999")[0] == 404
    assert fetch(f"{url}/object/MyModel/x")[0] == 400


def test_live_and_the_page_files_are_served(failing: Any) -> None:
    sync, _ = failing
    url = sync.http.url
    live = json.loads(fetch(url + "/live")[2])
    names = [c["name"] for c in live["tree"]["children"]]
    assert "SyncMyModel" in names and set(live["rates"]) == set(names)
    assert live["partitions"] == [] and live["dead_letters"] == {}
    code, headers, html = fetch(url + "/")
    assert code == 200 and headers["Content-Type"].startswith("text/html") and 'src="web/app.js"' in html
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        code, headers, _ = fetch(f"{url}/web/{name}")
        assert code == 200 and headers["Content-Type"].startswith(kind)
    assert fetch(url + "/web/nope.js")[0] == 404
    assert fetch(url + "/web/../_http.py")[0] == 404


def child(name: str, done: int, kind: str = "sync", **detail: Any) -> ChildStatus:
    return ChildStatus(name, kind, "running", done=done, detail=detail)


def test_rates_are_sampled_only_when_asked_and_cover_the_last_minute() -> None:
    rates = Rates()
    assert rates.sample([child("S", 0)], now=100.0)["S"] == {"per_second": 0.0, "history": [], "window": 0.0}
    assert rates.sample([child("S", 50)], now=110.0)["S"]["per_second"] == 5.0
    # Asked again within a second: no new sample.
    assert rates.sample([child("S", 60)], now=110.5)["S"]["history"] == [5.0]
    late = rates.sample([child("S", 80)], now=100.0 + RATE_WINDOW + 20)["S"]  # the first sample is too old
    assert late["history"] == [0.43] and late["per_second"] == 0.43


def test_event_partitions_come_from_the_event_steps_status() -> None:
    detail = {"lag": {"t[0]": 3, "t[1]": None}, "last_progress": {"t[0]": 5.0}, "stalled": ["t[1]"]}
    rows = event_partitions([child("Events", 0, "event", **detail), child("S", 0)])
    assert [(r.topic, r.partition, r.lag, r.last_progress, r.stalled) for r in rows] == [
        ("t", 0, 3, 5.0, False),
        ("t", 1, None, None, True),
    ]


def test_the_last_dead_letters_are_in_the_event_steps_status(start: Any) -> None:  # noqa: F811
    bus = events.FakeBus()
    for offset in range(7):
        events.SEEN.fail[(1, offset)] = -1
        bus.produce(events.TP1, b"bad")
    h = start(bus=bus, max_retries=0, dead_letter_topic="poison")
    wait_for(lambda: bus.committed_offset(events.TP1) == 7)
    last = h.ctx.state.detail["dead_letters"]
    assert h.ctx.state.detail["dead_lettered"] == 7
    assert [d["offset"] for d in last] == [2, 3, 4, 5, 6] and last[-1]["to"] == "poison"
    assert last[-1]["topic"] == events.TP1.topic and "cannot handle" in last[-1]["error"]


def test_credentials_are_checked_like_the_api(tmp_path: Path) -> None:
    users = [{"username": VIEWER[0], "password": VIEWER[1], "role": "readonly"}]
    data = config_data(
        project(tmp_path / "sync"),
        http={"address": "127.0.0.1:0"},
        api={"address": "127.0.0.1:0", "users": users, "anonymous_read": False},
    )
    with Synchronizer(Config.from_dict(data), serve_api=True) as sync:
        url = sync.http.url
        for path in ("/", "/web/app.js", "/live", "/status", "/problems", "/object/MyModel/1"):
            code, headers, _ = fetch(url + path)
            assert code == 401 and headers["WWW-Authenticate"] == 'Basic realm="actors", charset="UTF-8"', (
                path
            )
        assert "credentials required" in fetch(url + "/live")[2]
        assert fetch(url + "/live", basic(VIEWER))[0] == 200
        assert "wrong password" in fetch(url + "/live", basic((VIEWER[0], "no")))[2]
        token, _, _ = sync.api.auth.login(*VIEWER)
        assert fetch(url + "/live", f"Bearer {token}")[0] == 200
        assert fetch(url + "/live", "Bearer v1.x.y")[0] == 401
        assert fetch(url + "/metrics")[0] == 200 and fetch(url + "/readyz")[0] in (200, 500)
    # The API not served: the same users, checked by the endpoint itself.
    with Synchronizer(Config.from_dict(data)) as sync:
        assert fetch(sync.http.url + "/live")[0] == 401
        assert fetch(sync.http.url + "/live", basic(VIEWER))[0] == 200
