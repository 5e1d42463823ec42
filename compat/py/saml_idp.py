"""A local SAML 2.0 identity provider for Holdfast's sign-in tests: pysaml2 (signing with
Debian's xmlsec1), with a login page, and modes that misbehave on purpose so that the service
provider's refusals can be tested with a real provider's signatures.

    python saml_idp.py <port>

Prints "ready <entity id>" once it answers. Endpoints:
  GET  /metadata          the IdP's metadata (its signing certificate, its SSO endpoint)
  GET  /sso/redirect      the HTTP-Redirect binding: a login page for the AuthnRequest
  POST /sso/login         signs in as the current user; answers with the HTTP-POST form
Control endpoints (test only):
  POST /__sp       body: the service provider's metadata XML
  POST /__user     body: {"email": ..., "name": ..., "groups": [...]}  who signs in next
  POST /__respond  body: {"url": <the SSO redirect URL the SP made>, "mode": <mode>}
                   answers {"acs": ..., "SAMLResponse": ..., "RelayState": ...}
  Modes: normal (response and assertion signed) | assertion_only | response_only | unsigned |
         tampered | wrapped | wrapped_nested | expired | wrong_audience | wrong_recipient |
         other_key (signed by a key the SP does not know)
"""

import base64
import datetime
import html
import json
import os
import re
import sys
import tempfile
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS, NameID
from saml2.server import Server
from saml2.sigver import pre_signature_part
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

PORT = int(sys.argv[1])
BASE = f"http://127.0.0.1:{PORT}"
WORK = tempfile.mkdtemp(prefix="holdfast-saml-idp-")


def key_pair(name):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    key_file, cert_file = os.path.join(WORK, name + ".key"), os.path.join(WORK, name + ".crt")
    with open(key_file, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_file, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return key_file, cert_file


def server(key_file, cert_file):
    conf = IdPConfig()
    conf.load({
        "entityid": f"{BASE}/metadata",
        "service": {"idp": {
            "endpoints": {"single_sign_on_service": [(f"{BASE}/sso/redirect", BINDING_HTTP_REDIRECT)]},
            "policy": {"default": {"lifetime": {"minutes": 5}, "attribute_restrictions": None,
                                   "name_form": NAME_FORMAT_BASIC}},
            "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
        }},
        "key_file": key_file,
        "cert_file": cert_file,
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        "metadata": {},
    })
    return conf, Server(config=conf)


CONF, IDP = server(*key_pair("idp"))
_, STRANGER = server(*key_pair("stranger"))
USER = {"email": "sam@acme.test", "name": "Sam Saml", "groups": []}


def sign(idp, xml, node_class, node_id):
    return idp.sec.sign_statement(xml, node_class, node_id=node_id)


def respond(url, mode):
    """The HTTP-POST form's fields for the AuthnRequest in `url`, made the way `mode` says."""
    q = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
    req = IDP.parse_authn_request(q["SAMLRequest"][0], BINDING_HTTP_REDIRECT).message
    args = IDP.response_args(req, [BINDING_HTTP_POST])
    identity = {"mail": [USER["email"]], "displayName": [USER["name"]]}
    if USER["groups"]:
        identity["groups"] = USER["groups"]
    resp = IDP.create_authn_response(
        identity, userid=USER["email"],
        name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=USER["email"]),
        authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"},
        sign_response=False, sign_assertion=False, **args)
    a = resp.assertion
    if mode == "expired":
        past = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1))
        stamp = past.strftime("%Y-%m-%dT%H:%M:%SZ")
        a.conditions.not_on_or_after = stamp
        a.subject.subject_confirmation[0].subject_confirmation_data.not_on_or_after = stamp
    if mode == "wrong_audience":
        a.conditions.audience_restriction[0].audience[0].text = "https://elsewhere.example/sp"
    if mode == "wrong_recipient":
        a.subject.subject_confirmation[0].subject_confirmation_data.recipient = \
            "https://elsewhere.example/acs"
    signer = STRANGER if mode == "other_key" else IDP
    cert = signer.sec.my_cert
    sign_assertion = mode not in ("unsigned", "response_only")
    sign_response = mode not in ("unsigned", "assertion_only", "wrapped", "wrapped_nested")
    if sign_assertion:
        a.signature = pre_signature_part(a.id, cert, 1, DIGEST_SHA256, SIG_RSA_SHA256)
    if sign_response:
        resp.signature = pre_signature_part(resp.id, cert, 1, DIGEST_SHA256, SIG_RSA_SHA256)
    xml = str(resp)
    if sign_assertion:
        xml = sign(signer, xml, "urn:oasis:names:tc:SAML:2.0:assertion:Assertion", a.id)
    if sign_response:
        xml = sign(signer, xml, "urn:oasis:names:tc:SAML:2.0:protocol:Response", resp.id)
    if isinstance(xml, bytes):
        xml = xml.decode()
    if mode == "tampered":
        xml = xml.replace(USER["email"], "mallory@acme.test")
    if mode in ("wrapped", "wrapped_nested"):
        xml = wrap(xml, mode == "wrapped_nested")
    return {"acs": args["destination"], "RelayState": q.get("RelayState", [""])[0],
            "SAMLResponse": base64.b64encode(xml.encode()).decode()}


def wrap(xml, nested):
    """Signature wrapping: the signed assertion stays (so its signature still verifies), and an
    unsigned copy claiming to be mallory@acme.test is put where a careless parser reads it:
    before it, or around it."""
    m = re.search(r"<(\w+:)?Assertion\b.*</(\w+:)?Assertion>", xml, re.S)
    signed = m.group(0)
    evil = re.sub(r"<(\w+:)?Signature\b.*?</(\w+:)?Signature>", "", signed, flags=re.S)
    evil = evil.replace(USER["email"], "mallory@acme.test")
    evil = re.sub(r'\bID="[^"]+"', 'ID="_evil0001"', evil, count=1)
    if nested:
        p = m.group(1) or ""
        # The signed assertion hidden inside the evil one, where a parser that looks up the
        # signed ID finds it but the reader of the first assertion does not.
        evil = evil.replace(f"</{p}Assertion>", f"<{p}Advice>{signed}</{p}Advice></{p}Assertion>", 1)
        return xml[:m.start()] + evil + xml[m.end():]
    return xml[:m.start()] + evil + signed + xml[m.end():]


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def send(self, code, body, ctype="text/html; charset=utf-8"):
        data = body.encode() if isinstance(body, str) else body
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()

    def do_GET(self):
        path = urllib.parse.urlparse(self.path).path
        if path == "/metadata":
            self.send(200, create_metadata_string(None, config=CONF, valid=24),
                      "application/samlmetadata+xml")
        elif path == "/sso/redirect":
            url = html.escape(BASE + self.path)
            self.send(200, f"""<!doctype html><title>Test IdP</title><h1>Test IdP</h1>
<form method="post" action="/sso/login"><input type="hidden" name="url" value="{url}">
<p>Signing in as <b id="who">{html.escape(USER['email'])}</b></p>
<button type="submit" id="idp-login">Sign in</button></form>""")
        else:
            self.send(404, "not found")

    def do_POST(self):
        path = urllib.parse.urlparse(self.path).path
        try:
            if path == "/__sp":
                IDP.metadata.load("inline", self.body())
                self.send(200, "{}", "application/json")
            elif path == "/__user":
                USER.update(json.loads(self.body()))
                self.send(200, "{}", "application/json")
            elif path == "/__respond":
                req = json.loads(self.body())
                self.send(200, json.dumps(respond(req["url"], req.get("mode", "normal"))),
                          "application/json")
            elif path == "/sso/login":
                url = urllib.parse.parse_qs(self.body())["url"][0]
                f = respond(url, "normal")
                self.send(200, f"""<!doctype html><title>Test IdP</title>
<form method="post" action="{html.escape(f['acs'])}">
<input type="hidden" name="SAMLResponse" value="{f['SAMLResponse']}">
<input type="hidden" name="RelayState" value="{html.escape(f['RelayState'])}">
<button type="submit" id="idp-continue">Continue</button></form>
<script>document.forms[0].submit()</script>""")
            else:
                self.send(404, "not found")
        except Exception as e:  # noqa: BLE001 - a test harness: say what broke
            self.send(500, json.dumps({"error": repr(e)}), "application/json")


if __name__ == "__main__":
    httpd = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    print(f"ready {BASE}/metadata", flush=True)
    httpd.serve_forever()
