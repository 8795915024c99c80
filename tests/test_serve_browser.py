"""The pages of ``python -m common serve`` in a real headless Chromium: drawing, uploading, charting.

Skipped where no Chromium is installed (``apt-get install chromium``). ``SCREENSHOTS=folder``
keeps a screenshot of each page there.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from tests.browser import Browser, find_chromium
from tests.test_serve import HOPPER, running

pytest.importorskip("fastapi")
pytestmark = pytest.mark.skipif(find_chromium() is None, reason="no Chromium (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    chromium = Browser(find_chromium())
    yield chromium
    chromium.close()


@pytest.fixture(scope="module")
def shipped_site():
    from common.serving import app

    served, unavailable = app.load_projects(["mnist", "emojify", "stock"])
    with running(app.create_app(served, unavailable)) as address:
        yield address


def keep_screenshot(browser: Browser, name: str) -> None:
    folder = os.environ.get("SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        browser.screenshot(Path(folder) / f"{name}.png")


MODEL_LINE = "document.getElementById('model').textContent"


def test_drawing_a_seven_on_the_mnist_page_reads_seven(browser, shipped_site):
    browser.open(f"{shipped_site}/mnist")
    assert "Answered by models/pretrained/mnist/model.keras (recorded test_accuracy 0.9950" in (
        browser.wait_for(f"{MODEL_LINE}.startsWith('Answered') && {MODEL_LINE}")
    )
    # A "7" drawn with the pointer, as a user's mouse would: down, moves, up.
    browser.evaluate(
        """(() => {
          const pad = document.getElementById('pad');
          const box = pad.getBoundingClientRect();
          const at = (x, y) => ({clientX: box.left + x, clientY: box.top + y, pointerId: 1, bubbles: true});
          const path = [[70, 60], [140, 60], [210, 60], [180, 115], [150, 170], [120, 230]];
          pad.dispatchEvent(new PointerEvent('pointerdown', at(...path[0])));
          for (const [x, y] of path.slice(1)) pad.dispatchEvent(new PointerEvent('pointermove', at(x, y)));
          pad.dispatchEvent(new PointerEvent('pointerup', at(...path[path.length - 1])));
        })()"""
    )
    label = browser.wait_for("(t => t !== '?' && t)(document.getElementById('label').textContent)")
    assert label == "7"
    assert browser.evaluate("document.getElementById('top3').rows.length") == 3
    assert browser.evaluate("document.getElementById('error').textContent") == ""
    keep_screenshot(browser, "mnist")


def test_a_photo_on_the_emojify_page_comes_back_with_its_emoji(browser, shipped_site, tmp_path):
    photo = tmp_path / "hopper-mirrored.jpg"
    ImageOps.mirror(Image.open(HOPPER).convert("RGB")).save(photo)
    browser.open(f"{shipped_site}/emojify")
    browser.wait_for(f"{MODEL_LINE}.startsWith('Answered')")
    browser.set_file("#photo", photo)
    browser.wait_for("document.getElementById('result').src.startsWith('data:image/png;base64,')")
    assert browser.wait_for("document.getElementById('result').naturalWidth") > 0
    assert browser.evaluate("document.getElementById('faces').rows.length") >= 2  # Header + a face.
    keep_screenshot(browser, "emojify")


def test_the_api_page_works_offline(browser, shipped_site):
    browser.open(f"{shipped_site}/docs")
    # Swagger UI, served from the package, has read /openapi.json and listed the routes.
    routes = browser.wait_for(
        "(r => r.length >= 3 && r)([...document.querySelectorAll('.opblock-summary-path')]"
        ".map(e => e.textContent))",
        timeout=60,
    )
    assert {"/api/mnist/predict", "/api/emojify/predict", "/api/health"} <= {r.strip() for r in routes}
    keep_screenshot(browser, "docs")


def test_index_lists_the_pages(browser, shipped_site):
    browser.open(f"{shipped_site}/")
    links = browser.wait_for(
        "(l => l.length && l)([...document.querySelectorAll('#projects a')].map(a => a.pathname))"
    )
    assert set(links) == {"/mnist", "/emojify", "/stock"}
    keep_screenshot(browser, "index")


def test_the_stock_page_charts_the_forecast(browser, shipped_site):
    browser.open(f"{shipped_site}/stock")
    # The page asks for the default series' forecast on its own once it knows the model.
    browser.wait_for("document.querySelectorAll('#chart polyline').length === 2")
    assert "Answered by models/pretrained/stock/model.keras (recorded rmse_ratio" in browser.evaluate(
        MODEL_LINE
    )
    assert browser.evaluate("document.getElementById('table').rows.length") == 11  # Header + 10 days.
    assert browser.evaluate("document.getElementById('error').textContent") == ""
    keep_screenshot(browser, "stock")


def test_a_failed_upload_clears_the_answer_before_it(browser, shipped_site, tmp_path):
    browser.open(f"{shipped_site}/emojify")
    browser.wait_for(f"{MODEL_LINE}.startsWith('Answered')")
    browser.set_file("#photo", HOPPER)
    browser.wait_for("document.getElementById('faces').rows.length >= 2")
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all\n" * 20)
    browser.set_file("#photo", text)
    assert "not an image" in browser.wait_for("document.getElementById('error').textContent")
    assert browser.evaluate("document.getElementById('faces').rows.length") == 0
    assert browser.evaluate("document.getElementById('result').hidden") is True

    browser.open(f"{shipped_site}/stock")
    browser.wait_for("document.querySelectorAll('#chart polyline').length === 2")
    bad = tmp_path / "bad.csv"
    bad.write_text("When,Close\nyesterday,1\n")
    browser.set_file("#csv", bad)
    browser.evaluate("document.getElementById('form').requestSubmit()")
    assert "bad.csv" in browser.wait_for("document.getElementById('error').textContent")
    for part in ("chart", "legend", "table", "summary"):
        assert browser.evaluate(f"document.getElementById('{part}').textContent") == "", part


def test_the_stock_page_offers_the_columns_of_a_csv_without_the_models(browser, shipped_site, tmp_path):
    csv = tmp_path / "adjusted.csv"
    csv.write_text(
        "Date,Open,Adj Close,Volume\n"
        + "".join(
            f"2020-{1 + day // 28:02d}-{1 + day % 28:02d},{100 + day},{101 + day},{1000 + day}\n"
            for day in range(80)
        )
    )
    browser.open(f"{shipped_site}/stock")
    browser.wait_for("document.querySelectorAll('#chart polyline').length === 2")
    assert browser.evaluate("document.getElementById('column-label').hidden") is True
    browser.set_file("#csv", csv)
    browser.evaluate("document.getElementById('form').requestSubmit()")
    browser.wait_for("!document.getElementById('column-label').hidden")
    error = browser.evaluate("document.getElementById('error').textContent")
    assert error.startswith("adjusted.csv: no column 'Close'")
    assert error.endswith("pick the price column to forecast below")
    options = browser.evaluate("[...document.getElementById('column').options].map(o => o.value)")
    assert options == ["Open", "Adj Close"]  # The file's prices; its volume is no price to forecast.
    # Picking one forecasts it at once, the same file with the column as predict's option.
    browser.evaluate(
        "(() => { const select = document.getElementById('column'); select.value = 'Adj Close';"
        " select.dispatchEvent(new Event('change')); })()"
    )
    summary = browser.wait_for(
        "document.getElementById('summary').textContent.startsWith('adjusted.csv') &&"
        " document.getElementById('summary').textContent"
    )
    assert summary.startswith("adjusted.csv: Adj Close was 180.00 on 2020-03-24")
    assert browser.evaluate("document.getElementById('error').textContent") == ""


def test_the_stock_chart_prints_prices_as_the_cli_does_and_fits_a_phone(browser, shipped_site, tmp_path):
    from projects.stock.predict import format_price, price_decimals

    # Penny prices: the CLI prints them to three significant digits, not as 0.00.
    csv = tmp_path / "pennies.csv"
    csv.write_text(
        "Date,Close\n"
        + "".join(
            f"2020-{1 + day // 28:02d}-{1 + day % 28:02d},{0.0001 + day * 1e-6:.7f}\n" for day in range(80)
        )
    )
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        session=True,
        width=400,
        height=800,
        deviceScaleFactor=1,
        mobile=True,
    )
    try:
        browser.open(f"{shipped_site}/stock")
        browser.wait_for("document.querySelectorAll('#chart polyline').length === 2")
        browser.set_file("#csv", csv)
        browser.evaluate("document.getElementById('form').requestSubmit()")
        browser.wait_for("document.getElementById('summary').textContent.startsWith('pennies.csv')")
        keep_screenshot(browser, "stock-narrow")
        answer = browser.evaluate("shown")
        decimals = price_decimals(answer["last_price"])
        assert decimals == 6
        cells = browser.evaluate(
            "[...document.querySelectorAll('#table tr')].slice(1).map(r => r.cells[1].textContent)"
        )
        assert cells == [format_price(price, decimals) for price in answer["forecast"]]
        assert f"was {format_price(answer['last_price'], decimals)} on" in browser.evaluate(
            "document.getElementById('summary').textContent"
        )
        ticks = browser.evaluate("[...document.querySelectorAll('#chart text')].map(t => t.textContent)")
        assert all(tick.startswith("0.000") for tick in ticks[:5]), ticks
        legend = browser.evaluate(
            "[...document.querySelectorAll('#legend span')].map(s => s.textContent.trim())"
        )
        assert legend == [
            "true Close",
            f"forecast, {len(answer['forecast'])} trading days"
            + (", its interval shaded" if "lower" in answer else ""),
            f"last true day, {answer['last_date']}",
        ]
        # Nothing wider than the screen: no sideways scrolling.
        assert browser.evaluate("document.documentElement.scrollWidth") <= 400
        assert browser.evaluate("document.querySelector('#chart svg').getBoundingClientRect().right") <= 400
    finally:
        browser.call("Emulation.clearDeviceMetricsOverride", session=True)
    # The CLI's scientific notation for prices with more than 8 decimals, the same in the page.
    assert browser.evaluate("formatPrice(1.234e-9, priceDecimals(1.234e-9))") == format_price(
        1.234e-9, price_decimals(1.234e-9)
    )
