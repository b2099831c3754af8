"""infer report: the batch's HTML page, opened in a real headless browser (Chromium from the OS
packages, driven by Selenium), on files only (no server, 127.0.0.1 is not even needed)."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from conftest import SAMPLE

from schemas import LEADS, ExitCode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def report(trained, tmp_path_factory):
    """A scored folder (12 shipped records and a flat CSV the gate rejects), its ECG pages and
    its report."""
    from infer.cli import cli

    root = tmp_path_factory.mktemp("report")
    folder = root / "in"
    folder.mkdir()
    for hea in sorted(SAMPLE.glob("records100/*/*.hea"))[:12]:
        for ext in (".hea", ".dat"):
            shutil.copy(hea.with_suffix(ext), folder)
    pd.DataFrame(np.zeros((1000, 12)), columns=list(LEADS)).to_csv(folder / "flat.csv",
                                                                   index=False)
    results = root / "night" / "results.parquet"
    r = CliRunner().invoke(cli, ["score", "--model", str(trained[2]), "--input", str(folder),
                                 "--out", str(results), "--plots", str(root / "night" / "pages"),
                                 "-q"])
    assert r.exit_code == ExitCode.PARTIAL, r.output
    out = root / "night" / "report.html"
    r = CliRunner().invoke(cli, ["report", str(results), "--out", str(out)])
    assert r.exit_code == 0, r.output
    again = CliRunner().invoke(cli, ["report", str(results), "--out", str(out)])
    assert again.exit_code == ExitCode.OUTPUT_EXISTS
    return out, pd.read_parquet(results)


@pytest.fixture(scope="module")
def browser():
    shutil.which("chromium") or pytest.fail(
        "Chromium is needed for the browser tests: apt-get install chromium chromium-driver "
        "(.ci/run and make test install it)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1300,900",
                "--allow-file-access-from-files"):
        opts.add_argument(arg)
    opts.binary_location = shutil.which("chromium")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    yield driver
    driver.quit()


def test_report_loads_without_errors_and_lists_every_row(report, browser):
    from selenium.webdriver.common.by import By

    out, df = report
    browser.get(out.as_uri())
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(rows) == len(df) == 13
    ids = {r.find_elements(By.TAG_NAME, "td")[0].text for r in rows}
    assert ids == set(df["record_id"])
    # the counts the page shows are the table's
    text = browser.find_element(By.TAG_NAME, "body").text
    assert f"{len(df)} rows" in text and "unusable" in text
    # every ECG link points at a page that exists, relative to the report
    links = browser.find_elements(By.CSS_SELECTOR, "#results a")
    assert len(links) == df["page"].notna().sum() >= 2
    for a in links:
        target = (out.parent / a.get_attribute("href").split(out.parent.as_uri() + "/")[1])
        assert target.is_file()


def test_report_filters_and_sorts(report, browser):
    from selenium.webdriver.common.by import By

    out, df = report
    browser.get(out.as_uri())
    box = browser.find_element(By.ID, "filter")
    box.send_keys("unusable")
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
               if r.is_displayed()]
    assert len(visible) == 1 and browser.find_element(By.ID, "shown").text == "1"
    box.clear()
    box.send_keys(" ")  # an input event with a blank query shows rows with a space again
    headers = browser.find_elements(By.CSS_SELECTOR, "#results th[data-col]")
    col = [h.text for h in headers].index("mi_probability")
    headers[col].click()
    cells = [r.find_elements(By.TAG_NAME, "td")[col].get_attribute("data-key")
             for r in browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")]
    numbers = [float(c) for c in cells if c]
    assert numbers == sorted(numbers) and len(numbers) == df["mi_probability"].notna().sum()


def test_report_screenshot_is_not_blank(report, browser):
    import matplotlib.image as mpimg

    out, _ = report
    browser.get(out.as_uri())
    png = browser.get_screenshot_as_png()
    img = mpimg.imread(io.BytesIO(png), format="png")
    assert img.shape[0] > 500 and img.shape[1] > 1000 and img[..., :3].std() > 0.05
