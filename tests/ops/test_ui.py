"""The web UI: pages over HTTP (in process), then clicked through in headless Chromium."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright, expect
from starlette.applications import Starlette
from starlette.routing import Mount

from actors.inspect import Inspection
from actors.ui import app
from persistence.inspect import DatabaseNotFound
from tests.ops.conftest import ROOT
from tests.ops.model import DEAD, LONG, Fuse, Ledger, running, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def client(application: Starlette) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url="http://ui.test")


# ---------------------------------------------------------------- HTTP


@pytest.mark.anyio
async def test_pages_render_from_a_live_store(held_db: Path) -> None:
    async with client(app(held_db, entities=[Ledger])) as c:
        for path in (
            "/",
            "/entities?type=Ledger",
            "/timers",
            "/invocations",
            "/inbox",
            "/outbox",
            "/members",
        ):
            r = await c.get(path)
            assert r.status_code == 200, (path, r.text[:500])
        assert "owned-1" in (await c.get("/entities?type=Ledger")).text
        page = (await c.get("/entity", params={"type": "Ledger", "id": "long", "at": "3"})).text
        assert 'id="state-seq">3<' in page
        assert "entry-3" in page.split('id="state"')[1]
        assert "entry-4" not in page.split('id="state"')[1]
        assert "Not clustered" in (await c.get("/members")).text
        assert "stamped job-7" in (await c.get("/invocations")).text
        r = await c.get("/entity", params={"type": "Ledger", "id": "nobody"})
        assert r.status_code == 404
        assert "no entity Ledger/nobody" in r.text
        r = await c.get("/entity", params={"type": "Ledger", "id": "long", "at": "x"})
        assert r.status_code == 400


@pytest.mark.anyio
async def test_retry_without_a_system_is_refused_and_explained(held_db: Path) -> None:
    async with client(app(held_db)) as c:
        page = (await c.get("/dead-letters")).text
        assert 'id="retry-disabled"' in page
        assert "disabled" in page.split('class="retry"')[1].split(">")[0]
        r = await c.post("/dead-letters/1/retry", headers={"origin": "http://ui.test"})
        assert r.status_code == 409
        assert "running system" in r.text


@pytest.mark.anyio
async def test_mounted_under_a_prefix_and_escaped(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    async with running(db) as system:
        await system.ref(Ledger, "<script>x</script>").ask(Ledger.note, "<b>bold</b>")
        outer = Starlette(routes=[Mount("/ops", app(db, entities=[Ledger], system=system))])
        async with client(outer) as c:
            home = (await c.get("/ops/")).text
            assert 'href="/ops/entities?type=Ledger"' in home
            listing = (await c.get("/ops/entities?type=Ledger")).text
            assert "<script>x</script>" not in listing
            assert "&lt;script&gt;x&lt;/script&gt;" in listing
            r = await c.post("/ops/dead-letters/1/retry", headers={"origin": "http://evil.test"})
            assert r.status_code == 403
            r = await c.post("/ops/dead-letters/1/retry", headers={"sec-fetch-site": "cross-site"})
            assert r.status_code == 403
            assert len(await system.dead_letters()) == 1  # nothing was retried


def test_a_missing_database_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(DatabaseNotFound):
        app(tmp_path / "typo.db")
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------- browser


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed through dev.py when missing (never skipped)."""
    if not os.path.exists(CHROMIUM):
        subprocess.run([sys.executable, str(ROOT / "dev.py"), "chromium"], check=False, timeout=900)
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"{CHROMIUM} is missing: run `python3 dev.py chromium` as root (apt-get install chromium)"
        )
    return CHROMIUM


@asynccontextmanager
async def serve(application: Starlette) -> AsyncIterator[str]:
    """Serve ``application`` with uvicorn on this event loop; yields its base URL."""
    config = uvicorn.Config(
        application, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none"
    )
    server = uvicorn.Server(config)
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)

        async def started() -> bool:
            return server.started

        await wait_for(started, "uvicorn to start")
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True


@asynccontextmanager
async def browser(path: str) -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.mark.anyio
async def test_browser_entity_history_and_state_at_seq(held_db: Path, chromium: str) -> None:
    async with serve(app(held_db, entities=[Ledger])) as url, browser(chromium) as b:
        page = await b.new_page()
        await page.goto(url + "/")
        await page.click("#types a:text-is('Ledger')")
        await expect(page.locator("h1")).to_have_text("Ledger")
        await page.click("a.entity:text-is('long')")
        timeline = page.locator("#timeline li")
        await expect(timeline).to_have_count(len(LONG) + 1)  # the initial state, then each event
        await expect(page.locator("#state-seq")).to_have_text(str(len(LONG)))
        await expect(page.locator("#timeline li.selected")).to_have_attribute("data-seq", str(len(LONG)))
        for at in (4, 0, 7):
            await page.click(f"#timeline li[data-seq='{at}'] a.seq")
            await expect(page.locator("#state-seq")).to_have_text(str(at))
            await expect(page.locator("#timeline li.selected")).to_have_attribute("data-seq", str(at))
            entries = page.locator("#state tr[data-field='entries'] td.json")
            shown = await entries.inner_text()
            assert shown.replace(" ", "") == "[" + ",".join(f'"{e}"' for e in LONG[:at]) + "]"
            await expect(page.locator("#state tr[data-field='count'] td.json")).to_have_text(str(at))
        await page.click("header a:text-is('dead letters')")
        button = page.locator("tr[data-id] button.retry")
        await expect(button).to_be_disabled()
        await expect(page.locator("#retry-disabled")).to_contain_text("running system")


@pytest.mark.anyio
async def test_browser_retries_a_dead_letter_through_the_system(tmp_path: Path, chromium: str) -> None:
    db = tmp_path / "retry.db"
    async with running(db) as system:
        [dead] = await system.dead_letters()
        system.resource(Fuse).armed = False  # the cause is fixed: the retry will succeed
        async with serve(app(db, entities=[Ledger], system=system)) as url, browser(chromium) as b:
            page = await b.new_page()
            await page.goto(url + "/dead-letters")
            row = page.locator(f"tr[data-id='{dead.id}']")
            await expect(row).to_contain_text(DEAD[2])
            await row.locator("button.retry").click()
            await expect(page.locator("#retried")).to_contain_text(f"Dead letter {dead.id} is back")
            await expect(page.locator("#empty")).to_have_text("No dead letters.")

            async def applied() -> bool:
                async with Inspection(db, entities=[Ledger]) as ins:
                    st = await ins.state("Ledger", DEAD[0])
                return st.state is not None and DEAD[2] in st.state["entries"]  # type: ignore[operator]

            await wait_for(applied, "the retried signal to be applied by the system")
            await page.goto(url + f"/entity?type=Ledger&id={DEAD[0]}")
            await expect(page.locator("#state tr[data-field='entries']")).to_contain_text(DEAD[2])
        assert await system.dead_letters() == []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_actors_ui_command_serves_the_store(held_db: Path, tmp_path: Path) -> None:
    port = free_port()
    cmd = [sys.executable, "-m", "actors.cli", "ui", str(held_db), "--port", str(port)]
    child = subprocess.Popen(
        [*cmd, "--entities", "tests.ops.model:Ledger"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert f"http://127.0.0.1:{port}/" in child.stdout.readline()  # printed before serving
        deadline = time.monotonic() + 30
        while True:  # the socket opens after the banner: poll until it answers
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/entity?type=Ledger&id=long&at=2", timeout=5)
                break
            except httpx.ConnectError:
                if time.monotonic() > deadline or child.poll() is not None:
                    raise
                time.sleep(0.05)
        assert page.status_code == 200
        assert "entry-2" in page.text.split('id="state"')[1]
        assert "entry-3" not in page.text.split('id="state"')[1]
    finally:
        child.terminate()
        child.wait(timeout=20)
        if child.stdout is not None:
            child.stdout.close()
    missing = subprocess.run(
        [sys.executable, "-m", "actors.cli", "ui", str(tmp_path / "typo.db")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1
    assert missing.stderr.startswith("actors: DatabaseNotFound: no database at")
    assert os.listdir(tmp_path) == []


@pytest.mark.anyio
async def test_pages_render_from_postgresql_with_its_member(pg_dsn: str) -> None:
    from tests.ops.model import running

    async with running(pg_dsn), client(app(pg_dsn, entities=[Ledger])) as c:
        page = (await c.get("/entity", params={"type": "Ledger", "id": "long", "at": "3"})).text
        assert 'id="state-seq">3<' in page
        assert "entry-3" in page.split('id="state"')[1]
        members = await c.get("/members")
        assert members.status_code == 200
        assert "0-255" in members.text
        assert "alive" in members.text
