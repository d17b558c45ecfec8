"""The console in a real browser (Debian's Chromium through Playwright) against the real
API app on a real PostgreSQL: sign-in and tenant isolation, filters, a job's events, live
cancel, bulk retry, playing an output, and the operator's fleet page. Screenshots of the
run go to docs/console/."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.console.stack import Stack, make_mp4

pytestmark = [pytest.mark.postgres, pytest.mark.browser]


def until(page: Any, expression: str, above: float = 1.5, timeout: float = 15.0) -> float:
    """Poll a number in the page until it is above `above` (wait_for_function would need
    eval, which the console's Content-Security-Policy forbids)."""
    deadline = time.monotonic() + timeout
    value = float(page.evaluate(expression))
    while value <= above and time.monotonic() < deadline:
        time.sleep(0.1)
        value = float(page.evaluate(expression))
    return value


def signed_in(browser: Any, stack: Stack, token: str, width: int = 1280) -> Any:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{stack.url}/console/login")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/console/jobs")
    return page


def test_a_tenant_sees_its_jobs_and_none_of_another_tenants(browser: Any, stack: Stack, shots: Path) -> None:
    acme, acme_token = stack.tenant("iso-acme")
    globex, _ = stack.tenant("iso-globex")
    mine = [stack.submit(acme, i, labels={"team": "news"}).key for i in range(3)]
    theirs = [stack.submit(globex, i).key for i in range(3)]
    page = signed_in(browser, stack, acme_token)
    text = page.locator("#jobs-table").inner_text()
    for key in mine:
        assert key[:16] in text
    for key in theirs:
        assert key[:16] not in text
    assert "iso-acme" in page.locator("header").inner_text()
    # another tenant's job page, by URL, is the same answer as an unknown job
    other = page.goto(f"{stack.url}/console/jobs/{globex.id}/{theirs[0]}")
    assert other is not None and other.status == 404
    # no fleet page for a tenant
    fleet = page.goto(f"{stack.url}/console/fleet")
    assert fleet is not None and fleet.status == 403
    page.goto(f"{stack.url}/console/jobs")
    page.screenshot(path=str(shots / "jobs.png"), full_page=True)
    page.close()


def test_a_wrong_token_is_refused_and_pages_need_a_session(browser: Any, stack: Stack) -> None:
    page = browser.new_page()
    r = page.goto(f"{stack.url}/console/jobs")
    assert r is not None and page.url.endswith("/console/login")
    page.get_by_label("Token").fill("vjt_not-a-token")
    page.get_by_role("button", name="Sign in").click()
    assert "not a live tenant or operator token" in page.get_by_role("alert").inner_text()
    page.close()


def test_filter_open_a_job_and_see_its_events(browser: Any, stack: Stack, shots: Path) -> None:
    acme, token = stack.tenant("filter-acme")
    news = [stack.submit(acme, i, labels={"team": "news"}).key for i in range(2)]
    sport = stack.submit(acme, 10, labels={"team": "sport"}).key
    failed = stack.fail(acme, news[0], message="ffmpeg exited 1: moov atom not found").key
    page = signed_in(browser, stack, token)
    page.get_by_label("Label (name=value)").fill("team=news")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    table = page.locator("#jobs-table").inner_text()
    assert failed[:16] in table
    assert news[1][:16] not in table and sport[:16] not in table
    # the key-prefix filter alone
    page.goto(f"{stack.url}/console/jobs?key={sport[:20]}")
    table = page.locator("#jobs-table").inner_text()
    assert sport[:16] in table and news[1][:16] not in table
    page.goto(f"{stack.url}/console/jobs?label=team%3Dnews&status=failed")
    page.get_by_role("link", name=failed[:16]).click()
    page.wait_for_url(f"**/{failed}")
    events = page.locator("#events").inner_text()
    assert "job.submitted" in events and "job.claimed" in events and "job.failed" in events
    attempts = page.get_by_role("table").first.inner_text()
    assert "moov atom not found" in attempts
    assert page.locator("#job-status").inner_text() == "failed"
    page.screenshot(path=str(shots / "job.png"), full_page=True)
    page.close()


def test_bad_filter_input_is_named_not_a_server_error(browser: Any, stack: Stack) -> None:
    _, token = stack.tenant("hostile-acme")
    page = signed_in(browser, stack, token)
    r = page.goto(f"{stack.url}/console/jobs?status=nope&label=%00%25&since=yesterday&key=%25_&before=-1")
    assert r is not None and r.status == 200
    problems = page.get_by_role("alert").inner_text()
    for field in ("status", "label", "since", "key", "before"):
        assert field + ":" in problems
    r = page.goto(f"{stack.url}/console/jobs/x/%00")
    assert r is not None and r.status == 404
    page.close()


def test_cancel_a_pending_job_and_watch_it_change_without_a_reload(browser: Any, stack: Stack) -> None:
    acme, token = stack.tenant("cancel-acme")
    key = stack.submit(acme, 1).key
    page = signed_in(browser, stack, token)
    page.goto(f"{stack.url}/console/jobs/{acme.id}/{key}")
    assert page.locator("#job-status").inner_text() == "pending"
    page.evaluate("window.__same_document = true")
    page.get_by_role("button", name="Cancel job").click()
    page.locator("#job-status", has_text="cancelled").wait_for(timeout=10_000)
    assert page.evaluate("window.__same_document") is True  # no reload happened
    assert page.get_by_role("button", name="Retry job").is_enabled()
    page.locator("#events li", has_text="job.cancelled").wait_for(timeout=10_000)
    page.close()


def test_progress_of_a_running_job_is_live_and_the_jobs_page_follows(browser: Any, stack: Stack) -> None:
    acme, token = stack.tenant("live-acme")
    key = stack.submit(acme, 2).key
    page = signed_in(browser, stack, token)
    listing = browser.new_page()
    listing.context.add_cookies(page.context.cookies())
    listing.goto(f"{stack.url}/console/jobs")
    page.goto(f"{stack.url}/console/jobs/{acme.id}/{key}")
    page.evaluate("window.__same_document = true")
    job = stack.claim(acme, key)
    stack.heartbeat(job, 0.4)
    page.locator("#job-progress-text", has_text="40%").wait_for(timeout=10_000)
    assert page.locator("#job-status").inner_text() == "running"
    listing.locator(f"tr[data-id='{job.id}'] [data-field=status]", has_text="running").wait_for(timeout=10_000)
    assert page.evaluate("window.__same_document") is True
    listing.close()
    page.close()


def test_bulk_retry_of_failed_jobs_shows_the_count_first(browser: Any, stack: Stack, shots: Path) -> None:
    acme, token = stack.tenant("bulk-acme")
    keys = [stack.submit(acme, i).key for i in range(5)]
    for key in keys[:3]:
        stack.fail(acme, key)
    page = signed_in(browser, stack, token)
    page.goto(f"{stack.url}/console/jobs?status=failed")
    page.get_by_role("button", name="Retry all matching").click()
    assert "Retry 3 jobs?" in page.get_by_role("heading", level=1).inner_text()
    assert "3" in page.locator("#confirm-count").inner_text()
    page.screenshot(path=str(shots / "bulk-confirm.png"))
    page.get_by_role("button", name="Yes, retry 3 jobs").click()
    assert "3 changed, 0 skipped" in page.locator("#bulk-result").inner_text()
    page.goto(f"{stack.url}/console/jobs?status=failed")
    assert "No job matches" in page.locator("#jobs-table").inner_text()
    page.goto(f"{stack.url}/console/jobs?status=pending")
    assert page.locator("#jobs-table tbody tr[data-id]").count() == 5
    # selected: retrying pending jobs is refused per job and listed, nothing else changes
    page.locator("#jobs-table tbody input[type=checkbox]").first.check()
    page.get_by_role("button", name="Retry selected").click()
    page.get_by_role("button", name="Yes, retry 1 job").click()
    assert "0 changed, 1 skipped" in page.locator("#bulk-result").inner_text()
    page.close()


def test_play_an_output(browser: Any, stack: Stack, tmp_path: Path, shots: Path) -> None:
    acme, token = stack.tenant("play-acme")
    key = stack.submit(acme, 3).key
    stack.succeed_with_file(acme, key, make_mp4(tmp_path / "out.mp4"), "video/mp4")
    page = signed_in(browser, stack, token)
    page.goto(f"{stack.url}/console/jobs/{acme.id}/{key}")
    video = page.locator("video#player")
    video.wait_for()
    assert until(page, "document.getElementById('player').readyState") >= 2  # HAVE_CURRENT_DATA
    page.evaluate("document.getElementById('player').muted = true")
    page.evaluate("document.getElementById('player').play()")
    assert until(page, "document.getElementById('player').currentTime", above=0.3) > 0.3
    assert page.get_by_role("link", name="Download").get_attribute("href", timeout=5000).endswith(f"{key}/output")
    page.screenshot(path=str(shots / "player.png"))
    page.close()


def test_a_thumbnail_output_is_shown_as_an_image(browser: Any, stack: Stack, tmp_path: Path) -> None:
    acme, token = stack.tenant("thumb-acme")
    key = stack.submit(acme, 4).key
    jpg = tmp_path / "thumb.jpg"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x90",
                    "-frames:v", "1", str(jpg)], check=True, timeout=60)
    stack.succeed_with_file(acme, key, jpg, "image/jpeg")
    page = signed_in(browser, stack, token)
    page.goto(f"{stack.url}/console/jobs/{acme.id}/{key}")
    img = page.get_by_role("img", name=f"Output of job {key[:16]}")
    img.wait_for()
    assert until(page, "document.querySelector('img.preview').naturalWidth", above=0) == 160
    page.close()


def test_an_operator_sees_every_tenant_and_the_fleet(browser: Any, stack: Stack, shots: Path) -> None:
    acme, _ = stack.tenant("fleet-acme")
    globex, _ = stack.tenant("fleet-globex")
    a = stack.submit(acme, 20, priority=5).key
    g = stack.submit(globex, 21).key
    running = stack.claim(globex, g, owner="worker-fleet-1")
    stack.heartbeat(running, 0.5)
    failed_key = stack.submit(acme, 22).key
    stack.fail(acme, failed_key)
    token = stack.operator("ops-one")
    page = signed_in(browser, stack, token)
    table = page.locator("#jobs-table").inner_text()
    assert a[:16] in table and g[:16] in table and "fleet-globex" in table
    page.get_by_label("Tenant").select_option(label="fleet-acme")
    page.get_by_role("button", name="Filter").click()
    table = page.locator("#jobs-table").inner_text()
    assert a[:16] in table and g[:16] not in table
    page.get_by_role("link", name="Fleet").click()
    page.wait_for_url("**/console/fleet")
    backlog = page.locator("#backlog").inner_text()
    assert "fleet-acme" in backlog and "fleet-globex" in backlog
    assert "worker-fleet-1" in page.locator("#workers").inner_text()
    assert "failed" in page.locator("#throughput").inner_text()
    page.screenshot(path=str(shots / "fleet.png"), full_page=True)
    page.close()


def test_the_jobs_page_works_at_phone_width(browser: Any, stack: Stack, shots: Path) -> None:
    acme, token = stack.tenant("phone-acme")
    stack.submit(acme, 30)
    page = signed_in(browser, stack, token, width=390)
    page.get_by_label("Status").focus()
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-label"
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.screenshot(path=str(shots / "jobs-phone.png"), full_page=True)
    page.close()


# Every visible text element against its nearest opaque background (WCAG relative
# luminance), and every form control with an accessible name. Run in the page by Playwright's
# evaluate (CDP), which the page's Content-Security-Policy does not govern.
AUDIT = """() => {
  const lum = (c) => { const [r, g, b] = c.map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                       return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const bg = (el) => { for (; el; el = el.parentElement) { const c = rgb(getComputedStyle(el).backgroundColor);
                         if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3); } return [255, 255, 255]; };
  const low = []; let checked = 0;
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    const st = getComputedStyle(el);
    if (!own || st.visibility === "hidden" || st.display === "none" || el.closest("[hidden], svg, .skip")) continue;
    if (el.disabled || el.closest("button:disabled")) continue;  // WCAG exempts disabled controls
    checked += 1;
    const a = lum(rgb(st.color).slice(0, 3)), b = lum(bg(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) low.push(el.tagName + " '" + el.textContent.trim().slice(0, 30) + "' " + ratio.toFixed(2));
  }
  const unnamed = [...document.querySelectorAll("input:not([type=hidden]), select, textarea, button")]
    .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label") && !el.textContent.trim())
    .map((el) => el.outerHTML.slice(0, 80));
  return { low, unnamed, checked };
}"""


def test_pages_have_labelled_controls_and_aa_contrast(browser: Any, stack: Stack) -> None:
    acme, _ = stack.tenant("a11y-acme")
    key = stack.submit(acme, 40, labels={"team": "news"}).key
    stack.fail(acme, key)
    page = signed_in(browser, stack, stack.operator("a11y-ops"))
    for path in ("/console/jobs", f"/console/jobs/{acme.id}/{key}", "/console/fleet"):
        page.goto(stack.url + path)
        found = page.evaluate(AUDIT)
        assert found["checked"] > 20 and found["low"] == [] and found["unnamed"] == [], (path, found)
    page.goto(stack.url + "/console/login")
    found = page.evaluate(AUDIT)
    assert found["checked"] > 5 and found["low"] == [] and found["unnamed"] == [], found
    # the skip link is the first stop of the keyboard and moves focus to the content
    page.goto(stack.url + "/console/jobs")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.close()
