"""The web pages in a real browser: headless Debian Chromium driven by Playwright, against the app
served by uvicorn. Never ``playwright install``: the system Chromium is used as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/sanctum-browser-project.png")




def test_owner_logs_in_with_2fa_creates_a_project_and_adds_a_member(chromium, live_server, people) -> None:
    from playwright.sync_api import expect

    owner = people.create("owner@example.org", totp=True)
    colleague = people.create("colleague@example.org")
    context = chromium.new_context(viewport={"width": 1100, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    console: list[str] = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    base = live_server.url

    # Any page sends us to the login form first.
    page.goto(base + "/")
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    page.get_by_label("E-mail address").fill(owner.email)
    page.get_by_label("Password").fill(owner.password)
    page.get_by_role("button", name="Continue").click()

    # Second factor.
    expect(page).to_have_url(re.compile(r"/login/totp$"))
    page.get_by_label("Code", exact=True).fill(owner.code())
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(base + "/")
    expect(page.get_by_role("heading", name="My projects")).to_be_visible()
    cookies = {c["name"]: c for c in context.cookies()}
    session = cookies["sanctum_session"]
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    assert "sanctum_pending" not in cookies

    # Create a project through the form.
    page.get_by_label("Name", exact=True).fill("cardio")
    page.get_by_label("Title").fill("Cardiology cohort")
    page.get_by_role("button", name="Create project").click()
    expect(page).to_have_url(re.compile(r"/projects/cardio\?done=project_created$"))
    expect(page.get_by_role("heading", name="Cardiology cohort")).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text("Project created")

    # Add an existing user as data scientist.
    page.get_by_label("E-mail address").fill(colleague.email)
    page.get_by_label("Role", exact=True).select_option("data_scientist")
    page.get_by_role("button", name="Add member").click()
    expect(page).to_have_url(re.compile(r"/projects/cardio\?done=member_added$"))
    row = page.get_by_role("row").filter(has_text=colleague.email)
    expect(row).to_have_count(1)
    expect(row.get_by_label(f"Role of {colleague.email}")).to_have_value("data_scientist")
    expect(
        page.get_by_role("row").filter(has_text=owner.email).get_by_label(f"Role of {owner.email}")
    ).to_have_value("data_owner")
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # The audit trail shows what was done.
    page.get_by_role("link", name="Audit trail").click()
    expect(page.get_by_role("row").filter(has_text="member.add")).to_contain_text(colleague.email)

    csp = [m for m in console if "Content Security Policy" in m or "Content-Security-Policy" in m]
    assert csp == [], csp
    assert [m for m in console if m.startswith(("error", "pageerror"))] == [], console

    # The check above can see a violation: an inline style is refused and reported.
    page.evaluate("document.head.insertAdjacentHTML('beforeend', '<style>body{color:red}</style>')")
    page.wait_for_timeout(200)
    assert any("Content Security Policy" in m for m in console), console
    context.close()
