"""Signing in to Holdfast through a real SAML identity provider (pysaml2 with Debian's xmlsec1,
compat/py/saml_idp.py): in headless Chromium driven over WebDriver, login with just-in-time
provisioning and group mapping at every login; then, over plain HTTP with the provider's real
signatures, every refusal the service provider owes (unsigned, tampered, wrapped signature,
expired, wrong audience, wrong recipient, unknown key, replayed, posted from another browser).

Environment: HOLDFAST (base URL), IDP (the provider's base URL), CONNECTION (the SAML
connection's id), OWNER_KEY (an Owner's API key), SHOTS (a folder for screenshots). Prints one
line per check; exits non-zero on the first failure.
"""

import os
import re

import requests
from selenium.webdriver.common.by import By

from chromium import browser, check, wait

HF = os.environ["HOLDFAST"].rstrip("/")
IDP = os.environ["IDP"].rstrip("/")
CONN = os.environ["CONNECTION"]
SHOTS = os.environ["SHOTS"]
API = {"Authorization": f"Bearer {os.environ['OWNER_KEY']}"}
DRIVER = None


def user(email, name, groups):
    requests.post(f"{IDP}/__user", json={"email": email, "name": name, "groups": groups},
                  timeout=10).raise_for_status()


def groups_of(email):
    """The names of the Holdfast groups `email` is in, through the API."""
    users = requests.get(f"{HF}/v1/user", headers=API, timeout=10).json()["objects"]
    ids = [u["id"] for u in users if u["email"] == email]
    if not ids:
        return None
    groups = requests.get(f"{HF}/v1/group", headers=API, timeout=10).json()["objects"]
    return sorted(g["name"] for g in groups if ids[0] in (g.get("member_users") or []))


def browser_login(shot):
    """Signs in from the sign-in page's SAML button; answers the account page's text."""
    DRIVER.delete_all_cookies()
    DRIVER.get(f"{HF}/login")
    button = DRIVER.find_element(By.LINK_TEXT, "Sign in with Acme SAML")
    button.click()
    check(wait(lambda: DRIVER.find_element(By.ID, "idp-login")), "the IdP's login page opens")
    DRIVER.find_element(By.ID, "idp-login").click()
    check(wait(lambda: DRIVER.current_url.endswith("/account")),
          "the IdP's response signs in and lands on /account")
    DRIVER.save_screenshot(os.path.join(SHOTS, shot))
    return DRIVER.find_element(By.ID, "who").text


def start(session):
    """Starts a sign-in as a browser would: answers the IdP redirect URL (its cookie is kept
    in `session`)."""
    r = session.get(f"{HF}/auth/saml/{CONN}/start", allow_redirects=False, timeout=10)
    check(r.status_code == 303 and "SAMLRequest=" in r.headers["location"],
          "the start redirects to the IdP with an AuthnRequest")
    return r.headers["location"]


def respond(url, mode):
    r = requests.post(f"{IDP}/__respond", json={"url": url, "mode": mode}, timeout=30)
    form = r.json()
    assert "error" not in form, form
    return form


# What a browser sends when a real IdP, on another site, posts its form to the ACS.
CROSS_SITE = {"Origin": "https://idp.example.test", "Sec-Fetch-Site": "cross-site"}


def post_acs(session, form):
    return session.post(form["acs"], data={"SAMLResponse": form["SAMLResponse"],
                                           "RelayState": form["RelayState"]},
                        headers=CROSS_SITE, allow_redirects=False, timeout=30)


def signed_in(session, acs_answer):
    """Follows the ACS's redirect to /auth/saml/finish with `session`: whether it signs in."""
    if acs_answer.status_code != 303:
        return False
    r = session.get(HF + acs_answer.headers["location"], allow_redirects=False, timeout=10)
    return r.status_code == 303 and r.headers.get("location") == "/account"


def main():
    global DRIVER
    os.makedirs(SHOTS, exist_ok=True)
    DRIVER = browser()
    try:
        # Just-in-time provisioning, and the mapped group, at the first login.
        user("sam@acme.test", "Sam Saml", ["hf-eng", "unmapped"])
        text = browser_login("01-saml-account.png")
        check(text == "sam@acme.test", f"the account page shows the person the IdP asserted ({text})")
        check(groups_of("sam@acme.test") == ["Engineers"],
              f"provisioned into the mapped group only: {groups_of('sam@acme.test')}")
        # The mapping again at the next login: out of Engineers, into Viewers.
        user("sam@acme.test", "Sam Saml", ["hf-view"])
        browser_login("02-saml-account-again.png")
        check(groups_of("sam@acme.test") == ["Viewers"],
              f"the mapping is applied at every login: {groups_of('sam@acme.test')}")
        # Signing out ends the session.
        DRIVER.find_element(By.ID, "sign-out").click()
        check(wait(lambda: "/login" in DRIVER.current_url), "signing out returns to /login")
        DRIVER.get(f"{HF}/account")
        check(wait(lambda: "/login" in DRIVER.current_url), "after signing out /account asks to sign in")
        # Someone of another domain who is not a member is refused.
        user("mallory@other.test", "Mallory", [])
        DRIVER.delete_all_cookies()
        DRIVER.get(f"{HF}/auth/saml/{CONN}/start")
        check(wait(lambda: DRIVER.find_element(By.ID, "idp-login")), "the IdP's login page opens")
        DRIVER.find_element(By.ID, "idp-login").click()
        check(wait(lambda: DRIVER.find_element(By.ID, "refused")),
              "a person of a domain not allowed is refused")
        DRIVER.save_screenshot(os.path.join(SHOTS, "03-saml-refused.png"))
    finally:
        DRIVER.quit()
        DRIVER = None

    user("sam@acme.test", "Sam Saml", ["hf-view"])
    # Signed response, signed assertion, or both: each is accepted.
    for mode in ["normal", "assertion_only", "response_only"]:
        s = requests.Session()
        check(signed_in(s, post_acs(s, respond(start(s), mode))), f"a {mode} response signs in")

    # Every forged, altered or misdirected response is refused at the ACS, and signs no one in.
    for mode in ["unsigned", "tampered", "wrapped", "wrapped_nested", "expired",
                 "wrong_audience", "wrong_recipient", "other_key"]:
        s = requests.Session()
        r = post_acs(s, respond(start(s), mode))
        check(r.status_code == 401 and 'id="refused"' in r.text and not signed_in(s, r),
              f"a {mode} response is refused ({r.status_code})")

    # Replayed: the same response again, for its own sign-in (used) or for a new one (its
    # InResponseTo is not that request's).
    s = requests.Session()
    form = respond(start(s), "normal")
    check(signed_in(s, post_acs(s, form)), "a response signs in once")
    r = post_acs(s, form)
    check(r.status_code == 401, f"the same response posted again is refused ({r.status_code})")
    fresh = requests.Session()
    url = start(fresh)
    relay = re.search(r"RelayState=([^&]+)", url).group(1)
    replay = dict(form, RelayState=requests.utils.unquote(relay))
    r = post_acs(fresh, replay)
    check(r.status_code == 401, f"the response replayed into a new sign-in is refused ({r.status_code})")

    # A response for one browser's sign-in, posted from another browser: the ACS verifies it,
    # but only the browser that started the sign-in can finish it.
    victim, thief = requests.Session(), requests.Session()
    form = respond(start(victim), "normal")
    r = post_acs(thief, form)
    check(r.status_code == 303 and not signed_in(thief, r),
          "a response finished from another browser signs no one in")

    # Unsolicited (IdP-initiated) and unknown RelayState: refused before any XML is read.
    s = requests.Session()
    form = respond(start(s), "normal")
    r = post_acs(requests.Session(), dict(form, RelayState="not-a-sign-in"))
    check(r.status_code == 401, "an unknown RelayState is refused")
    r = post_acs(requests.Session(), dict(form, RelayState=""))
    check(r.status_code == 401, "an unsolicited response is refused")
    big = requests.post(form["acs"], data={"SAMLResponse": "A" * (300 * 1024), "RelayState": "x"},
                        timeout=30)
    check(big.status_code == 413, f"an oversized response is refused ({big.status_code})")
    print("all SAML checks passed", flush=True)


if __name__ == "__main__":
    main()
