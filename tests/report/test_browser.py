"""The report page in headless Chromium: the rollout filters work and the page is drawn.

Needs the Debian packages chromium and chromium-driver (``make test`` installs them where
apt-get exists) and selenium (the dev extra). Skipped only outside CI when chromium is absent.
"""

import io
import os
import shutil

import pytest

from rlvr.report import build_report
from tests.report.conftest import sample_rows, write_jsonl


def find(*names: str) -> str | None:
    """/usr/bin/<name> (the Debian packages) first, then anything on PATH."""
    for name in names:
        if os.access(f"/usr/bin/{name}", os.X_OK):
            return f"/usr/bin/{name}"
    return next((found for found in map(shutil.which, names) if found), None)


CHROMIUM = find("chromium", "chromium-browser", "google-chrome")
CHROMEDRIVER = find("chromedriver")

if not (CHROMIUM and CHROMEDRIVER) and os.environ.get("CI") != "true":
    pytest.skip(
        "headless Chromium is not installed (apt-get install chromium chromium-driver)", allow_module_level=True
    )
pytest.importorskip("matplotlib", reason="rlvr report needs matplotlib: pip install 'rlvr[report]'")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM and CHROMEDRIVER, "CI=true: chromium and chromedriver must be installed (make setup does it)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--no-first-run",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def test_rollout_filters_and_screenshot(make_run, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    run = make_run("run", steps=6)  # rollouts at steps 1, 3, 5: four each, two correct
    rows = sample_rows([1, 3, 5])
    rows[0]["completion"] = "<script>document.title = 'pwned'</script>"
    rows[4]["completion"] = "<img src=x onerror=\"document.title = 'pwned'\">"
    write_jsonl(run / "samples.jsonl", rows)
    browser.get(build_report([run]).resolve().as_uri())

    def visible() -> int:
        return sum(tr.is_displayed() for tr in browser.find_elements(By.CSS_SELECTOR, "#rollouts tbody tr"))

    def count_text() -> str:
        return browser.find_element(By.ID, "f-count").text

    assert browser.title.startswith("rlvr report")  # neither completion ran
    assert "<script>document.title" in browser.find_element(By.ID, "rollouts").text
    assert (visible(), count_text()) == (12, "12 of 12 rollouts shown")
    step, outcome = Select(browser.find_element(By.ID, "f-step")), Select(browser.find_element(By.ID, "f-outcome"))
    search = browser.find_element(By.ID, "f-search")
    step.select_by_value("3")
    assert visible() == 4
    outcome.select_by_visible_text("correct")
    assert (visible(), count_text()) == (2, "2 of 12 rollouts shown")
    search.send_keys("token3x1")
    assert visible() == 1
    search.clear()
    search.send_keys("TOKEN3X3")  # case-insensitive, but that rollout is incorrect
    assert visible() == 0
    step.select_by_value("")
    outcome.select_by_visible_text("incorrect")
    search.clear()
    search.send_keys(" ")  # clear() fires no input event; a blank query matches all
    assert visible() == 6

    from PIL import Image

    image = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
    assert image.size[0] >= 1000
    assert len(image.getcolors(maxcolors=1 << 20)) > 50  # text, tables and plots, not a blank page
