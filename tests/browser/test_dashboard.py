"""The gateway's dashboard (/ui) in headless Chromium, against the real cluster of scripts/run.sh
(no admin token): nodes and models listed, live numbers moving under load, the prediction form
answering as the API does (and a 422 shown at its field), launch and stop through the page,
and the screenshots of the README (docs/dashboard-desktop.png, docs/dashboard-phone.png).

Nothing here knows the models' feature names: they come from GET /api/cluster/models.
"""
import threading
import time

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from conftest import GATEWAY, NODE_PORTS, ROOT, Cluster, make_browser, wait_until

NODES = {f"127.0.0.1:{p}" for p in NODE_PORTS}


@pytest.fixture(scope="module")
def cluster():
    c = Cluster("dashboard", {})
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser(cluster):
    drv = make_browser()
    yield drv
    drv.quit()


@pytest.fixture(scope="module")
def models(cluster, api):
    doc = api.get(f"{GATEWAY}/api/cluster/models", timeout=10).json()
    assert doc["models"], doc
    return doc["models"]


def open_page(browser):
    browser.get(f"{GATEWAY}/ui")
    wait_until("the first summary on the page", lambda: node_rows(browser))
    wait_until("the models on the page", lambda: browser.find_elements(By.CSS_SELECTOR, "details.model form.predict"))


def node_rows(browser) -> dict[str, dict[str, str]]:
    """The nodes table, read at once (it is redrawn every 2 s): addr -> {column class: text}."""
    return browser.execute_script(
        """
        const out = {};
        for (const tr of document.querySelectorAll("#nodes-table tbody tr")) {
          const cells = {};
          for (const c of tr.querySelectorAll("th, td")) cells[c.classList[c.classList.length - 1]] = c.textContent;
          out[tr.dataset.addr] = cells;
        }
        return out;
        """
    )


def model_card(browser, name: str):
    return browser.find_element(By.CSS_SELECTOR, f'details.model[data-model="{name}"]')


def model_form(browser, name: str):
    """The prediction form of model `name`, its card opened first (as a user clicks it)."""
    card = model_card(browser, name)
    if card.get_attribute("open") is None:
        card.find_element(By.TAG_NAME, "summary").click()
    return card.find_element(By.CSS_SELECTOR, "form.predict")


def fill(form, values: dict[str, str]):
    for inp in form.find_elements(By.CSS_SELECTOR, "input[data-feature]"):
        inp.clear()
        value = values.get(inp.get_attribute("data-feature"))
        if value is not None:
            inp.send_keys(value)


def sample_row(model) -> dict[str, float | str]:
    """A row for `model` built from its described features only: a number for a numeric
    feature, a word for a string feature (the shipped string columns take any word)."""
    return {
        f["name"]: f"word{i}" if f["type"] == "string" else round(1.5 * (i + 1) + 0.25, 2)
        for i, f in enumerate(model["features"])
    }


def as_shown(value) -> str:
    """A JSON value as the page writes it (JavaScript's String())."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def predict_api(api, model: str, row) :
    return api.post(f"{GATEWAY}/api/predict/gdp_growth_rate", params={"model": model}, json=row, timeout=10)


def severe_console_entries(browser):
    return [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def run_load(api, seconds: float, model: str, row):
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        predict_api(api, model, row)
        time.sleep(0.02)


def test_the_page_lists_both_nodes_and_their_models(browser, models):
    open_page(browser)
    rows = wait_until("both nodes in the table", lambda: (r := node_rows(browser)) and set(r) == NODES and r)
    for addr, cells in rows.items():
        assert cells["consul"] == "passing", cells
        for m in models:
            if addr in m["nodes"]:
                assert m["name"] in cells["models"], cells
    assert browser.find_element(By.ID, "discovery-state").text == "ok"
    for m in models:
        card = model_card(browser, m["name"])  # (closed cards: their text is read as DOM text)
        listed = card.find_element(By.CSS_SELECTOR, ".model-nodes").get_attribute("textContent")
        assert set(listed.split(", ")) == set(m["nodes"]), listed
        labels = [l.get_attribute("textContent") for l in card.find_elements(By.CSS_SELECTOR, ".field label")]
        assert [l.split(" (")[0] for l in labels] == [f["name"] for f in m["features"]]
    # Served under its Content-Security-Policy without a single violation or script error.
    assert severe_console_entries(browser) == []


def test_the_live_numbers_move_while_a_load_runs(browser, api, models):
    open_page(browser)
    model = models[0]
    before = node_rows(browser)
    load = threading.Thread(target=run_load, args=(api, 12.0, model["name"], sample_row(model)))
    load.start()
    try:
        def moving():
            rows = node_rows(browser)
            busy = [r for a, r in rows.items() if a in NODES and r["rps"] not in ("0.00", "–") and r["p50"] != "–"]
            return len(busy) == len(NODES) and rows
        rows = wait_until("requests/s and p50 of both nodes to move", moving, timeout=20)
    finally:
        load.join()
    assert rows != before
    now = browser.find_element(By.ID, "cluster-now").text
    assert "requests/s" in now and "p50 –" not in now, now
    # The charts drew the load: the requests/s line and both latency lines exist.
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-rate polyline.line-a, #chart-rate circle.line-a")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart-latency .line-b")
    # A node's own series is one choice away.
    Select(browser.find_element(By.ID, "scope")).select_by_value(sorted(NODES)[0])
    label = browser.find_element(By.ID, "chart-rate").get_attribute("aria-label")
    assert sorted(NODES)[0] in label, label


def test_the_form_answers_as_the_api_does(browser, api, models):
    open_page(browser)
    for model in models:
        row = sample_row(model)
        form = model_form(browser, model["name"])
        fill(form, {k: str(v) for k, v in row.items()})
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        card = model_card(browser, model["name"])
        shown = wait_until(
            f"the prediction of {model['name']}",
            lambda: card.find_element(By.CSS_SELECTOR, "output.prediction").text,
        )
        expected = predict_api(api, model["name"], row).json()
        if "classes" in expected:
            # A classifier: its labels as typed (booleans, strings), and its probabilities.
            assert shown == ", ".join(as_shown(v) for v in expected["prediction"]), (shown, expected)
            probabilities = card.find_element(By.CSS_SELECTOR, "output.probabilities").text
            assert probabilities == ", ".join(
                f"{as_shown(c)} {p:.3f}" for c, p in zip(expected["classes"], expected["probabilities"][0])
            ), (probabilities, expected)
        else:
            assert [float(v) for v in shown.split(", ")] == [float(v) for v in expected["prediction"]], (shown, expected)


def test_an_empty_nullable_field_is_sent_as_a_missing_value(browser, api, models):
    open_page(browser)
    model = next(m for m in models if any(f["type"] == "string" for f in m["features"]))
    assert all(f["nullable"] for f in model["features"]), model
    row = sample_row(model)
    names = [f["name"] for f in model["features"]]
    form = model_form(browser, model["name"])
    fill(form, {k: ("" if k in names[:2] else str(v)) for k, v in row.items()})
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    card = model_card(browser, model["name"])
    shown = wait_until(
        f"the prediction of {model['name']}",
        lambda: card.find_element(By.CSS_SELECTOR, "output.prediction").text,
    )
    sent = {k: (None if k in names[:2] else v) for k, v in row.items()}
    expected = predict_api(api, model["name"], sent).json()
    assert shown == ", ".join(as_shown(v) for v in expected["prediction"]), (shown, expected)


def test_a_422_shows_next_to_its_field(browser, api, models):
    open_page(browser)
    model = next(m for m in models if len(m["features"]) >= 2)
    names = [f["name"] for f in model["features"]]
    row = {k: str(v) for k, v in sample_row(model).items()}
    del row[names[0]]  # missing
    row[names[1]] = "not a number"
    form = model_form(browser, model["name"])
    fill(form, row)
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    answer = predict_api(api, model["name"], row)
    assert answer.status_code == 422
    expected = {e["loc"][-1]: e["msg"] for e in answer.json()["detail"]}
    for name in names[:2]:
        err = form.find_element(By.CSS_SELECTOR, f'.field-error[data-error-for="{name}"]')
        wait_until(f"the 422 message next to {name}", lambda: err.text == expected[name])
        field = browser.find_element(By.ID, err.get_attribute("id").removesuffix("-err"))
        assert field.get_attribute("aria-invalid") == "true"
        assert err.get_attribute("id") in field.get_attribute("aria-describedby")
    for name in names[2:]:
        assert form.find_element(By.CSS_SELECTOR, f'.field-error[data-error-for="{name}"]').text == ""
    # The first field in error has the focus, for keyboard and screen-reader users.
    assert browser.switch_to.active_element.get_attribute("data-feature") == names[0]


def test_launch_adds_a_row_and_stop_removes_it(browser, models):
    open_page(browser)
    model = wait_until("a model to launch", lambda: Select(browser.find_element(By.ID, "launch-model")).first_selected_option.text)
    assert model in [m["name"] for m in models]
    browser.find_element(By.ID, "launch").click()
    status = wait_until(
        "the launch to answer",
        lambda: browser.find_element(By.ID, "lifecycle-status").text.startswith("Launched")
        and browser.find_element(By.ID, "lifecycle-status").text,
    )
    assert browser.find_element(By.ID, "lifecycle-error").text == "", status
    # The new node registers, passes its check (every 2 s) and joins the healthy set.
    rows = wait_until("a third row", lambda: (r := node_rows(browser)) and len(r) == len(NODES) + 1 and r)
    (new,) = set(rows) - NODES
    assert rows[new]["instance"] != "–", rows[new]
    assert model in rows[new]["models"]
    # The instances table lists it; its Stop button removes it, and its row goes.
    # (The list is redrawn now and then: a click on a replaced button is tried again.)
    wait_until(
        "a click on the new instance's Stop button",
        lambda: browser.find_element(By.CSS_SELECTOR, f'button.stop[aria-label="Stop {rows[new]["instance"]}"]').click()
        or True,
    )
    wait_until("the stop to answer", lambda: browser.find_element(By.ID, "lifecycle-status").text.startswith("Stopped"))
    wait_until("the row to go", lambda: set(node_rows(browser)) == NODES)
    assert browser.find_element(By.ID, "lifecycle-error").text == ""


def test_screenshots_for_the_readme(browser, api, models):
    """docs/dashboard-desktop.png and docs/dashboard-phone.png, under a light load."""
    model = models[0]
    load = threading.Thread(target=run_load, args=(api, 8.0, model["name"], sample_row(model)))
    load.start()
    try:
        open_page(browser)
        form = model_form(browser, model["name"])
        fill(form, {k: str(v) for k, v in sample_row(model).items()})
        form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_until("a prediction", lambda: browser.find_element(By.CSS_SELECTOR, "output.prediction").text)
        time.sleep(6)  # a few buckets of traffic on the charts
    finally:
        load.join()
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    for name, width, mobile in [("desktop", 1280, False), ("phone", 390, True)]:
        metrics = {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile}
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        browser.execute_script("window.scrollTo(0, 0)")
        time.sleep(2.5)  # one refresh at the new width
        # The page fits the width: nothing but the tables' own scroll areas overflows.
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name}: the page is {overflow}px wider than the window"
        height = browser.execute_script("return document.documentElement.scrollHeight")
        metrics["height"] = min(int(height), 4000)
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        time.sleep(0.5)
        path = docs / f"dashboard-{name}.png"
        assert browser.save_screenshot(str(path)), path
        assert path.stat().st_size > 10_000
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
