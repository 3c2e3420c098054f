"""The dashboard's lifecycle buttons when the gateway has an admin token (GATEWAY_ADMIN_TOKEN set
for scripts/run.sh): they ask for it, a wrong one shows the gateway's 403 (and is asked again),
the right one works; the token is never shown or stored by the page."""
import secrets

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from conftest import GATEWAY, Cluster, make_browser, wait_until

TOKEN = secrets.token_hex(16)


@pytest.fixture(scope="module")
def cluster():
    c = Cluster("dashboard-admin", {"GATEWAY_ADMIN_TOKEN": TOKEN})
    yield c
    c.stop()


@pytest.fixture(scope="module")
def browser(cluster):
    drv = make_browser()
    yield drv
    drv.quit()


def dialog_open(browser) -> bool:
    return browser.execute_script("return document.getElementById('token-dialog').open")


def answer_dialog(browser, token: str):
    wait_until("the token dialog", lambda: dialog_open(browser))
    field = browser.switch_to.active_element
    assert field.get_attribute("id") == "token-input", "the dialog puts the focus on its field"
    assert field.get_attribute("type") == "password"
    field.send_keys(token, Keys.ENTER)
    wait_until("the dialog to close", lambda: not dialog_open(browser))


def test_lifecycle_buttons_ask_for_the_token_and_show_a_403(browser, api):
    assert api.get(f"{GATEWAY}/api/cluster", timeout=10).json()["admin_token_required"] is True
    browser.get(f"{GATEWAY}/ui")
    wait_until("the note about the token", lambda: browser.find_element(By.ID, "token-note").is_displayed())
    wait_until("a model to launch", lambda: browser.find_element(By.ID, "launch-model").get_attribute("value"))
    nodes_before = browser.find_elements(By.CSS_SELECTOR, "#nodes-table tbody tr")

    # Launch asks for the token; a wrong one is refused with the gateway's 403.
    browser.find_element(By.ID, "launch").click()
    answer_dialog(browser, "wrong-" + TOKEN)
    error = wait_until(
        "the 403 to show",
        lambda: (e := browser.find_element(By.ID, "lifecycle-error")).is_displayed() and e.text,
    )
    assert "403" in error, error
    assert len(browser.find_elements(By.CSS_SELECTOR, "#nodes-table tbody tr")) == len(nodes_before)

    # The wrong token is forgotten: the next button asks again; Cancel is an error shown too.
    browser.find_element(By.ID, "instances-refresh").click()
    wait_until("the token dialog again", lambda: dialog_open(browser))
    browser.find_element(By.ID, "token-cancel").click()
    wait_until("the dialog to close", lambda: not dialog_open(browser))
    wait_until("the cancel to show", lambda: "cancelled" in browser.find_element(By.ID, "lifecycle-error").text)

    # The right token lists the instances (none launched), and is not asked for again.
    browser.find_element(By.ID, "instances-refresh").click()
    answer_dialog(browser, TOKEN)
    status = wait_until(
        "the instances to be listed",
        lambda: browser.find_element(By.ID, "lifecycle-status").text.startswith("Listed") and browser.find_element(By.ID, "lifecycle-status").text,
    )
    assert not browser.find_element(By.ID, "lifecycle-error").is_displayed(), status
    browser.find_element(By.ID, "instances-refresh").click()
    wait_until("a second listing", lambda: browser.find_element(By.ID, "lifecycle-status").text.startswith("Listed"))
    assert not dialog_open(browser)

    # The token is nowhere in the page, its storage or its URL.
    assert TOKEN not in browser.page_source
    assert TOKEN not in browser.current_url
    stored = browser.execute_script("return JSON.stringify(localStorage) + JSON.stringify(sessionStorage) + document.cookie")
    assert TOKEN not in stored
