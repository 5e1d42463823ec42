"""Signing in to Holdfast in headless Chromium driven over WebDriver: with a local password set
through an invite link, and through a real OpenID provider (compat/js/oidc_provider.mjs):
login, just-in-time provisioning, group mapping at every login, logout, key rotation; and
every refusal the relying party owes.

Environment: HOLDFAST (base URL), PROVIDER (issuer URL), OWNER_KEY (an Owner's API key),
INVITE (an invite link for dave@acme.test), SHOTS (a folder for screenshots). Prints one line per check; exits non-zero on the first
failure.
"""

import json
import os
import sys
import time

import requests
from selenium.webdriver.common.by import By

from chromium import browser, check, wait

HF = os.environ["HOLDFAST"].rstrip("/")
OP = os.environ["PROVIDER"].rstrip("/")
KEY = os.environ["OWNER_KEY"]
SHOTS = os.environ["SHOTS"]
API = {"Authorization": f"Bearer {KEY}"}
DRIVER = None


def mode(m):
    requests.post(f"{OP}/__mode", data=m, timeout=10).raise_for_status()


def set_groups(g):
    requests.post(f"{OP}/__groups", data=json.dumps(g), timeout=10).raise_for_status()


def shot(d, name):
    d.save_screenshot(os.path.join(SHOTS, f"{name}.png"))


def sign_in(d, login, name=None):
    """From Holdfast's sign-in page through the provider's pages; returns where it ends."""
    d.delete_all_cookies()
    d.get(f"{HF}/login")
    if name:
        shot(d, name)
    d.find_element(By.PARTIAL_LINK_TEXT, "Sign in with").click()
    for _ in range(20):
        url = d.current_url
        if url.startswith(HF) or url.startswith(f"{OP}/__held"):
            return url
        logins = d.find_elements(By.NAME, "login")
        if logins:
            logins[0].send_keys(login)
            d.find_element(By.NAME, "password").send_keys("any password")
            d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        else:
            buttons = d.find_elements(By.CSS_SELECTOR, "button[type=submit]")
            if buttons:
                buttons[0].click()
        wait(lambda: d.current_url != url, 5)
    return d.current_url


def signed_in_as(d):
    d.get(f"{HF}/account")
    found = d.find_elements(By.ID, "who")
    return found[0].text if found and d.current_url.startswith(f"{HF}/account") else None


def refused(d):
    return wait(lambda: bool(d.find_elements(By.ID, "refused")), 5)


def user_id(email):
    users = requests.get(f"{HF}/v1/user", headers=API, timeout=10).json()["objects"]
    return next((u["id"] for u in users if u["email"] == email), None)


def group_members(name):
    groups = requests.get(f"{HF}/v1/group", headers=API, timeout=10).json()["objects"]
    return next(g for g in groups if g["name"] == name).get("member_users") or []


def password_flow(d):
    """The invite link sets a password; the sign-in form uses it; a session id planted
    before signing in is not the one after (fixation)."""
    invite = os.environ["INVITE"]
    d.delete_all_cookies()
    d.get(invite)
    shot(d, "00-set-password")
    token = d.find_element(By.ID, "token").get_attribute("value")
    check(len(token) > 20 and "#" not in d.current_url,
          "the invite page moved the link's token into its form and out of the address bar")
    password = "correct horse battery staple"
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "confirm").send_keys(password + "!")
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    check(wait(lambda: "differ" in d.page_source), "two different passwords are refused")
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "confirm").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    check(wait(lambda: d.current_url.startswith(f"{HF}/login") and d.find_elements(By.ID, "notice")),
          "setting the password lands on the sign-in page")
    planted = "a" * 64
    d.add_cookie({"name": "holdfast_session", "value": planted, "path": "/"})
    d.find_element(By.ID, "email").send_keys("dave@acme.test")
    d.find_element(By.ID, "password").send_keys("not the password at all")
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    check(wait(lambda: "Wrong email or password" in d.page_source), "a wrong password is refused")
    d.find_element(By.ID, "email").clear()
    d.find_element(By.ID, "email").send_keys("dave@acme.test")
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait(lambda: d.current_url.startswith(f"{HF}/account"))
    check(signed_in_as(d) == "dave@acme.test", "dave signs in with his password")
    cookie = d.get_cookie("holdfast_session")
    check(cookie is not None and cookie["value"] != planted and cookie["httpOnly"],
          "the session id is new at sign-in (a planted one is not used) and HttpOnly")
    d.find_element(By.ID, "sign-out").click()
    wait(lambda: d.current_url.startswith(f"{HF}/login"))
    check(signed_in_as(d) is None, "dave signs out")
    d.get(invite)
    d.find_element(By.ID, "password").send_keys(password)
    d.find_element(By.ID, "confirm").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    check(wait(lambda: "not valid" in d.page_source), "the invite link works once")


def main():
    global DRIVER
    d = DRIVER = browser()
    try:
        password_flow(d)
        mode("normal")
        set_groups({"alice@acme.test": ["hf-eng"], "carol@acme.test": ["hf-view"]})

        # Login, provisioning and group mapping.
        end = sign_in(d, "alice@acme.test", "01-sign-in")
        check(end.startswith(f"{HF}/account"), f"alice signs in and lands on her account page ({end})")
        shot(d, "02-account")
        check(signed_in_as(d) == "alice@acme.test", "the account page shows alice")
        alice = user_id("alice@acme.test")
        check(alice is not None, "alice was provisioned (acme.test is an allowed domain)")
        check(alice in group_members("Engineers"), "hf-eng put alice in Engineers")

        # Logout.
        d.find_element(By.ID, "sign-out").click()
        check(wait(lambda: d.current_url.startswith(f"{HF}/login")),
              "signing out lands on the sign-in page")
        check(signed_in_as(d) is None, "after signing out the account page asks to sign in")

        # Group mapping applied at every login: alice left hf-eng at the provider.
        set_groups({"alice@acme.test": [], "carol@acme.test": ["hf-view"]})
        sign_in(d, "alice@acme.test")
        check(signed_in_as(d) == "alice@acme.test", "alice signs in again")
        check(alice not in group_members("Engineers"), "without hf-eng alice left Engineers")
        used_callback = requests.get(f"{OP}/__last", timeout=10).text

        # A new person of an allowed domain, mapped to Viewers.
        sign_in(d, "carol@acme.test")
        check(signed_in_as(d) == "carol@acme.test", "carol signs in (first time)")
        carol = user_id("carol@acme.test")
        check(carol in group_members("Viewers"), "hf-view put carol in Viewers")

        # Key rotation: the provider signs with a key the cached JWKS lacks.
        time.sleep(6)
        mode("rotate")
        sign_in(d, "alice@acme.test")
        check(signed_in_as(d) == "alice@acme.test", "a token signed with a rotated-in key is accepted")
        mode("normal")

        # Refusals.
        d.delete_all_cookies()
        d.get(used_callback)
        check(refused(d), "a callback used once is refused the second time (reused code and state)")
        check(signed_in_as(d) is None, "no session after the reused callback")
        for m, what in [
            ("wrong_issuer", "a token from another issuer"),
            ("wrong_audience", "a token for another client"),
            ("bad_signature", "a token whose signature does not verify"),
            ("alg_none", "an unsigned token (alg none)"),
            ("hs256", "a token signed with HS256 under the client secret"),
            ("expired", "an expired token"),
            ("replay_nonce", "a token replayed from an earlier sign-in (nonce)"),
            ("swap_state", "a callback with a state this browser did not start"),
            ("reuse_code", "a code that was already exchanged"),
        ]:
            mode(m)
            sign_in(d, "alice@acme.test")
            ok = refused(d)
            if m == "expired":
                shot(d, "03-refused")
            check(ok and signed_in_as(d) is None, f"refused: {what}")
        mode("normal")
        sign_in(d, "mallory@evil.test")
        check(refused(d) and user_id("mallory@evil.test") is None,
              "refused: a person of a domain not allowed is neither signed in nor provisioned")
        sign_in(d, "unverified-bob@acme.test")
        check(refused(d) and user_id("unverified-bob@acme.test") is None,
              "refused: an email the provider has not verified")

        # A callback taken to another browser (no binding cookie): refused, login CSRF.
        mode("hold")
        end = sign_in(d, "alice@acme.test")
        check(end.startswith(f"{OP}/__held"), "the provider held the callback")
        stolen = requests.get(f"{OP}/__last", timeout=10).text
        r = requests.get(stolen, allow_redirects=False, timeout=10)
        check(r.status_code == 401 and "holdfast_session=" not in r.headers.get("set-cookie", ""),
              f"refused: a callback from a browser that did not start the sign-in ({r.status_code})")
        mode("normal")
        print("all browser checks passed", flush=True)
    finally:
        d.quit()


if __name__ == "__main__":
    sys.exit(main())
