"""The operator console in a real headless Chromium (Debian's package, driven by
Playwright): sign-in, the approve flow, the reject flow, review-queue labelling by
keyboard and by click. Screenshots land in test-artifacts/console/."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import httpx
import pytest

from inspector import promotion, registry
from inspector.gating import Floors, Policy
from tests.factories import metadata, part_image, upload_files
from tests.processes import ServiceProcess
from tests.servers import free_port
from tests.training_support import clone_version, copy_store

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    if os.environ.get("INSPECTOR_REQUIRE_BROWSER"):
        raise RuntimeError("Chromium is required (Debian: apt-get install chromium)")
    pytest.skip(
        "no Chromium on this machine (Debian: apt-get install chromium)", allow_module_level=True
    )

from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def service(trained_template, tmp_path_factory, redis_server):
    """Version 1 in production; versions 2 and 3 assessed and awaiting approval; an
    inference worker; uploads whose verdicts wait in the review queue."""
    root, _ = trained_template
    tmp = tmp_path_factory.mktemp("console")
    store = copy_store(root, tmp)
    policy = Policy(floors=Floors(accuracy=0.3))
    promotion.assess(store, 1, policy=policy, cache_dir=tmp / "cache")
    promotion.approve(store, 1, actor="setup", role="operator", reason="first model")
    candidates = [clone_version(store, 1) for _ in range(2)]
    for number in candidates:
        promotion.assess(store, number, policy=policy, cache_dir=tmp / "cache")
    port = free_port()
    env = {
        "INSPECTOR_DATA_DIR": str(tmp / "data"),
        "INSPECTOR_STORE_URL": store.url,
        "INSPECTOR_REDIS_URL": redis_server.url.rsplit("/", 1)[0] + "/12",
        "INSPECTOR_VERDICT_DEADLINE_MS": "10000",
        # Every verdict within 50 log-odds of its threshold is unsure: all go to review.
        "INSPECTOR_REVIEW_MARGIN": "50",
    }
    api = ServiceProcess("api", ["api", "--port", str(port)], env, tmp).start()
    worker = ServiceProcess("inference", ["worker", "inference"], env, tmp).start()
    base_url = f"http://127.0.0.1:{port}"
    api.wait_http(f"{base_url}/healthz")
    worker.wait_for_output("ready (serving version 1)")
    for n in range(4):  # stains: never learned, so the model is unsure
        answer = httpx.post(
            f"{base_url}/v1/images",
            headers={"Authorization": "Bearer dev-camera"},
            files=upload_files(part_image("stain", seed=900 + n, size=48)),
            data=metadata(line="line-7", part_id=f"c{n}"),
            timeout=30,
        )
        assert answer.status_code == 201 and answer.json()["verdict"] is not None, answer.text
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield base_url, store, candidates
    worker.stop()
    api.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


def sign_in(browser, base_url: str, token: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{base_url}/")
    expect(page).to_have_url(f"{base_url}/login?next=/")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    return page


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_camera_tokens_cannot_open_the_console(service, browser):
    base_url, *_ = service
    page = sign_in(browser, base_url, "dev-camera")
    expect(page.locator(".flash.error")).to_contain_text("Camera tokens cannot open the console")
    shot(page, "01-camera-refused")
    page.close()


def test_overview_shows_lines_and_the_production_model(service, browser):
    base_url, *_ = service
    page = sign_in(browser, base_url, "dev-operator")
    expect(page.locator("main > h1")).to_have_text("Overview")
    expect(page.locator(".card").first).to_contain_text("version 1")
    expect(page.locator("section.line[data-line=line-7]")).to_contain_text("4 parts inspected")
    shot(page, "02-overview")
    page.close()


def test_approve_flow(service, browser):
    base_url, store, candidates = service
    page = sign_in(browser, base_url, "dev-operator")
    page.click("text=Models")
    page.click(f"text=version {candidates[0]}")
    expect(page.locator("main > h1")).to_contain_text("awaiting_approval")
    expect(page.locator(".report")).to_contain_text("Gate")
    shot(page, "03-candidate-report")
    page.click("#approve-form button")  # no reason: the browser refuses to submit
    expect(page.locator("main > h1")).to_contain_text("awaiting_approval")
    expect(page.locator(".report")).to_contain_text("Operating point")
    expect(page.locator(".report svg[aria-label^='ROC']")).to_have_count(1)
    page.fill("#approve-form textarea", "fewer escapes on line 7")
    page.fill("#approve-form input[name=threshold]", "0.35")
    page.click("#approve-form button")
    expect(page.locator(".flash.ok")).to_have_text("Done.")
    expect(page.locator("main > h1")).to_contain_text("production")
    shot(page, "04-approved")
    assert registry.alias(store, "production") == candidates[0]
    page.click("text=Audit")
    first_row = page.locator("table tr").nth(1)
    expect(first_row).to_contain_text("dev-operator")
    expect(first_row).to_contain_text("approve")
    expect(first_row).to_contain_text("fewer escapes on line 7")
    expect(first_row).to_contain_text("→ 0.35")
    shot(page, "05-audit")
    assert registry.effective_threshold(store, candidates[0]) == 0.35
    page.close()


def test_reject_flow(service, browser):
    base_url, store, candidates = service
    page = sign_in(browser, base_url, "dev-operator")
    page.goto(f"{base_url}/models/{candidates[1]}")
    page.fill("#reject-form textarea", "trained on the week the lamp failed")
    page.click("#reject-form button")
    expect(page.locator("main > h1")).to_contain_text("rejected")
    expect(page.locator("#approve-form")).to_have_count(0)
    shot(page, "06-rejected")
    event = registry.audit_log(store)[-1]
    assert (event["action"], event["actor"], event["reason"]) == (
        "reject",
        "dev-operator",
        "trained on the week the lamp failed",
    )
    page.close()


def test_review_queue_labelling_by_key_and_by_click(service, browser):
    base_url, *_ = service
    page = sign_in(browser, base_url, "dev-operator")
    page.click("text=Review")
    items = page.locator(".review-item")
    expect(items).to_have_count(4)
    # Each unsure verdict carries its defect map, drawn over the part.
    expect(items.first.locator("img")).to_have_attribute("src", re.compile(r"defect-map\.png"))
    overlay = httpx.get(
        f"{base_url}{items.first.locator('img').get_attribute('src')}",
        headers={"Authorization": "Bearer dev-operator"},
    )
    assert overlay.status_code == 200 and overlay.content.startswith(b"\x89PNG")
    shot(page, "07-review-queue")
    first = items.first.get_attribute("data-image")
    page.keyboard.press("3")  # the third class (pit), for the selected (first) image
    expect(items).to_have_count(3)
    second = items.first.get_attribute("data-image")
    items.first.locator("button[data-label=stain]").click()
    expect(items).to_have_count(2)
    shot(page, "08-review-after")
    operator = {"Authorization": "Bearer dev-operator"}
    assert (
        httpx.get(f"{base_url}/v1/images/{first}/label", headers=operator).json()["label"] == "pit"
    )
    second_label = httpx.get(f"{base_url}/v1/images/{second}/label", headers=operator).json()
    assert second_label["label"] == "stain" and second_label["history"][-1]["by"] == "dev-operator"
    page.close()


def test_a_part_page_shows_its_defect_map_verdicts_and_labels(service, browser):
    base_url, store, _ = service
    image_id = next(info.key for info in store.list("verdicts/")).split("/")[2]
    page = sign_in(browser, base_url, "dev-operator")
    page.goto(f"{base_url}/images/{image_id}")
    expect(page.locator("main > h1")).to_contain_text("Part c")
    expect(page.locator("figure.part img")).to_have_attribute("src", re.compile(r"defect-map\.png"))
    expect(page.locator("table")).to_contain_text("P(defect)")
    shot(page, "09-part")
    page.close()
