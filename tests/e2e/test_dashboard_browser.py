"""The dashboard in a real headless Chromium (Debian's chromium, driven by Playwright's
Python API with executable_path): log in, read the widgets after SIPp's calls, explain a
number, switch the kill switch on through its confirmation and off again, acknowledge an
alert and change alert thresholds through the form. Every page is
saved as a screenshot under the test's directory (SIPGUARD_SCREENSHOTS=DIR keeps them)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from harness import Sipguard, SippResult, SippUas
from playwright.sync_api import sync_playwright
from test_dashboard import CANADA, PASSWORD, UK, _cli, _start, _wait_stored

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

StartUas = Callable[..., SippUas]
StartSipguard = Callable[..., Sipguard]
RunUac = Callable[..., SippResult]


def test_the_dashboard_in_chromium(start_uas: StartUas, start_sipguard: StartSipguard,
                                   run_uac: RunUac, tmp_path: Path) -> None:
    """Login, the traffic widgets, explain, and the kill switch, as ops use them."""
    guard, client = _start(start_uas, start_sipguard)
    assert run_uac("uac_call_bye.xml", guard.target(), service=CANADA, calls=2,
                   rate=20).successful == 2
    assert run_uac("uac_blocked.xml", guard.target(), service=UK).successful == 1
    _wait_stored(guard, 3)
    shots = Path(os.environ.get("SIPGUARD_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            fetched: list[str] = []  # every URL the pages make the browser fetch
            page.on("request", lambda request: fetched.append(request.url))
            page.goto(client.base + "/")
            assert page.url.endswith("/login")
            page.screenshot(path=str(shots / "login.png"), full_page=True)
            page.fill("input[name=user]", "ops")
            page.fill("input[name=password]", PASSWORD)
            page.click("button:has-text('Log in')")
            page.wait_for_url(client.base + "/")
            assert page.inner_text("#live-calls") == "0"
            assert "forward" in page.content() and "reject" in page.content()
            chart = page.locator("svg.chart")
            assert chart.count() == 1 and chart.locator("rect").count() >= 2  # forward, reject
            assert "2 forward" in chart.inner_html() and "1 reject" in chart.inner_html()
            page.screenshot(path=str(shots / "overview.png"), full_page=True)

            page.goto(client.base + "/widgets?since=1h")
            country = page.locator(".card", has_text="Minutes by country")
            rows = {cells[0]: cells[1:] for cells in (
                [cell.strip() for cell in row.split("\t")]
                for row in country.locator("tr").all_inner_texts()[1:])}
            assert rows["CA"][:2] == ["2", "2"] and rows["GB"][0] == "1" and rows["GB"][3] == "1"
            page.screenshot(path=str(shots / "widgets.png"), full_page=True)

            page.goto(client.base + "/explain")
            page.fill("input[name=number]", UK)
            page.click("button:has-text('Explain')")
            assert page.inner_text("#decision") == "Decision: deny"
            assert "default" in page.inner_text("#trace")
            page.screenshot(path=str(shots / "explain.png"), full_page=True)

            page.goto(client.base + "/locks")
            page.click("button:has-text('Switch the kill switch on')")  # no confirmation yet
            assert "LOCKDOWN" in page.inner_text(".error")
            page.fill("input[name=confirm]", "LOCKDOWN")
            page.fill("input[name=reason]", "drill")
            page.click("button:has-text('Switch the kill switch on')")
            assert "Kill switch ON" in page.inner_text(".banner")
            page.screenshot(path=str(shots / "locks.png"), full_page=True)
            assert run_uac("uac_blocked.xml", guard.target(), service=CANADA).successful == 1
            page.click("button:has-text('Release the kill switch')")
            assert page.locator(".banner").count() == 0
            assert run_uac("uac_call_bye.xml", guard.target(), service=CANADA).successful == 1

            assert _cli(guard, "bans", "add", "127.0.0.9").returncode == 0
            page.goto(client.base + "/alerts")
            page.wait_for_selector("#alerts button:has-text('Acknowledge')", timeout=20_000)
            page.screenshot(path=str(shots / "alerts.png"), full_page=True)
            page.click("#alerts button:has-text('Acknowledge')")
            assert "acknowledged by web:ops" in page.inner_text("#alerts")
            assert "(1 open)" in page.content()  # the first call's first_source alert
            page.click("button:has-text('Acknowledge all')")
            assert "(0 open)" in page.content()
            assert page.inner_text("#alerts").count("acknowledged by web:ops") == 2

            page.fill("input[name='thresholds.notify']", "35")
            page.select_option("select[name='types.first_source.enabled']", "false")
            page.click("button:has-text('Save')")
            assert page.input_value("input[name='thresholds.notify']") == "35"
            assert page.input_value("select[name='types.first_source.enabled']") == "false"
            policy_file = guard.config_path.parent / "policy.yaml"
            assert "notify: 35" in policy_file.read_text()
            page.fill("input[name='thresholds.urgent']", "10")
            page.click("button:has-text('Save')")
            assert "must rise" in page.inner_text("#problem")
            assert "urgent: 10" not in policy_file.read_text()
            page.screenshot(path=str(shots / "alert-settings.png"), full_page=True)
            # Works with no internet: nothing is fetched from anywhere but sipguard itself.
            assert fetched and all(url.startswith(client.base + "/") for url in fetched), [
                url for url in fetched if not url.startswith(client.base)]
            assert any(url.endswith("/static/sipguard.css") for url in fetched)
        finally:
            browser.close()
    assert {path.name for path in shots.glob("*.png")} == {
        "login.png", "overview.png", "widgets.png", "explain.png", "locks.png", "alerts.png",
        "alert-settings.png"}
