// Holdfast's web UI: small enhancements of server-rendered pages. Every page reads without
// this script; it adds live refresh of the logs and the forms that change data, which call
// the same API as the SDKs with the session's CSRF token (so the API decides, as always).
(function () {
  "use strict";
  const token = document.querySelector('meta[name="csrf-token"]');
  const csrf = token ? token.content : "";

  async function api(method, path, body, headers) {
    const r = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: Object.assign({ "content-type": "application/json", "x-csrf-token": csrf }, headers || {}),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch (_) {
      json = null;
    }
    if (!r.ok) {
      const error = json && json.error;
      const message = error && error.message && (error.field ? error.field + ": " + error.message : error.message);
      const failure = new Error(message || r.status + " " + r.statusText);
      failure.code = error && error.code;
      throw failure;
    }
    return json;
  }

  function say(form, message, error) {
    const out = form.querySelector("[role=status]");
    if (out) {
      out.textContent = message;
      out.classList.toggle("error", !!error);
    }
  }

  function json(text, what) {
    if (text.trim() === "") return null;
    try {
      return JSON.parse(text);
    } catch (e) {
      throw new Error(what + " is not JSON: " + e.message);
    }
  }

  // Replaces the element `id` with its copy in a fresh copy of this page.
  async function refresh(id) {
    const r = await fetch(location.href, { credentials: "same-origin" });
    if (!r.ok) return;
    const page = new DOMParser().parseFromString(await r.text(), "text/html");
    const fresh = page.getElementById(id);
    const shown = document.getElementById(id);
    if (fresh && shown) shown.replaceWith(document.importNode(fresh, true));
  }

  // Live refresh of the newest logs: the results are fetched again every five seconds.
  const live = document.getElementById("live");
  if (live) {
    live.closest("[hidden]") && live.closest("[hidden]").removeAttribute("hidden");
    let timer = null;
    const tick = () => refresh("results");
    const set = () => {
      clearInterval(timer);
      timer = live.checked ? setInterval(tick, 5000) : null;
    };
    live.addEventListener("change", set);
    set();
  }

  // A row of a log or an experiment, read through the query API.
  async function row(kind, objectId, id) {
    const query = {
      select: [{ op: "star" }],
      from: { op: "function", name: { op: "ident", name: [kind] }, args: [{ op: "literal", value: objectId }] },
      filter: { op: "eq", left: { op: "ident", name: ["id"] }, right: { op: "literal", value: id } },
      limit: 1,
    };
    const out = await api("POST", "/btql", { query });
    if (!out.data || !out.data.length) throw new Error("the span is gone");
    return out.data[0];
  }

  // Simple CSV (RFC 4180: quotes, doubled quotes, CRLF); returns rows of cells.
  function csv(text) {
    const rows = [];
    let cell = "", cells = [], quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"' && text[i + 1] === '"') { cell += '"'; i++; }
        else if (c === '"') quoted = false;
        else cell += c;
      } else if (c === '"') quoted = true;
      else if (c === ",") { cells.push(cell); cell = ""; }
      else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        cells.push(cell); rows.push(cells); cells = []; cell = "";
      } else cell += c;
    }
    if (cell !== "" || cells.length) { cells.push(cell); rows.push(cells); }
    return rows.filter((r) => r.length > 1 || r[0] !== "");
  }

  // Records of an import file: objects, from JSON Lines or CSV with a header row.
  function records(name, text) {
    if (/\.jsonl?$/i.test(name)) {
      return text.split(/\r?\n/).filter((l) => l.trim()).map((l, n) => {
        const v = json(l, "line " + (n + 1));
        return v && typeof v === "object" && !Array.isArray(v) ? v : { value: v };
      });
    }
    const [head, ...body] = csv(text);
    if (!head) return [];
    return body.map((cells) => Object.fromEntries(head.map((h, i) => [h, cells[i] === undefined ? "" : cells[i]])));
  }

  // An imported record as a dataset event: the columns mapped to input (or expected) are
  // its value (one column) or an object of them (several); the metadata columns are kept by
  // name. CSV cells that are JSON (numbers, objects, true) are read as such.
  function mapped(record, mapping) {
    const parse = (v) => { try { return typeof v === "string" ? JSON.parse(v) : v; } catch (_) { return v; } };
    const columns = (target) => Object.keys(mapping).filter((c) => mapping[c] === target && c in record);
    const event = { metadata: {} };
    for (const target of ["input", "expected"]) {
      const cs = columns(target);
      event[target] = cs.length === 0 ? null
        : cs.length === 1 ? parse(record[cs[0]])
        : Object.fromEntries(cs.map((c) => [c, parse(record[c])]));
    }
    for (const c of columns("metadata")) event.metadata[c] = parse(record[c]);
    return event;
  }

  // The organization API path of a form's `data-org`.
  const org = (form) => "/v1/organization/" + encodeURIComponent(form.getAttribute("data-org"));
  // Comma-separated email domains as a list.
  const domains = (text) => text.split(",").map((d) => d.trim()).filter((d) => d);
  // A group mapping, one `provider group = Holdfast group` a line, as an object.
  function mapping(text) {
    const out = {};
    text.split("\n").forEach((line, i) => {
      if (!line.trim()) return;
      const at = line.lastIndexOf("=");
      const from = line.slice(0, at).trim();
      const to = line.slice(at + 1).trim();
      if (at < 0 || !from || !to) throw new Error("group mapping, line " + (i + 1) + ": write provider group = Holdfast group");
      out[from] = to;
    });
    return out;
  }

  // A role form as the role API takes it: permissions (each with the restriction chosen)
  // and the roles it includes.
  function roleBody(form) {
    // Each line: the permissions chosen on it, restricted to its object type (or none); a
    // permission chosen twice on one type counts once.
    const pairs = new Map();
    for (const line of form.querySelectorAll("fieldset.permissions")) {
      const only = line.querySelector("select[name=restrict]").value || null;
      for (const c of line.querySelectorAll("input[name=permission]:checked")) {
        pairs.set(c.value + " " + (only || ""), { permission: c.value, restrict_object_type: only });
      }
    }
    const includes = Array.from(form.elements.includes.selectedOptions).map((o) => o.value);
    if (!pairs.size && !includes.length) throw new Error("choose at least one permission or role");
    return {
      name: form.elements.name.value,
      description: form.elements.description.value,
      member_permissions: Array.from(pairs.values()),
      member_roles: includes,
    };
  }

  // An OpenID Connect connection form as the API takes it (an empty secret keeps the stored
  // one on a change).
  function oidcBody(form) {
    const e = form.elements;
    const body = { name: e.name.value, preset: e.preset.value, client_id: e.client_id.value, allowed_domains: domains(e.domains.value) };
    if (e.issuer.value) body.issuer = e.issuer.value;
    if (e.client_secret.value) body.client_secret = e.client_secret.value;
    if (e.scopes.value.trim()) body.scopes = e.scopes.value.trim().split(/\s+/);
    if (e.verified.value) body.require_verified_email = e.verified.value === "yes";
    if (e.claim.value.trim()) body.group_claim = e.claim.value.trim();
    body.group_mapping = mapping(e.mapping.value);
    return body;
  }

  // A SAML connection form as the API takes it (no metadata keeps the stored on a change).
  function samlBody(form) {
    const e = form.elements;
    const body = { name: e.name.value, allowed_domains: domains(e.domains.value) };
    if (e.metadata_url.value) body.idp_metadata_url = e.metadata_url.value;
    if (e.metadata_xml.value.trim()) body.idp_metadata_xml = e.metadata_xml.value;
    if (e.email_attribute.value.trim()) body.email_attribute = e.email_attribute.value.trim();
    if (e.claim.value.trim()) body.group_attribute = e.claim.value.trim();
    body.group_mapping = mapping(e.mapping.value);
    return body;
  }

  // (Attributes are read with getAttribute: a form's `dataset` property is shadowed by a
  // control named "dataset".)
  let pending = [];
  const actions = {
    "add-to-dataset": async (form) => {
      const span = await row(form.getAttribute("data-kind"), form.getAttribute("data-object"), form.getAttribute("data-row"));
      const dataset = form.elements.dataset.value;
      await api("POST", "/v1/dataset/" + encodeURIComponent(dataset) + "/insert", {
        events: [{ input: span.input, expected: span.output === undefined ? null : span.output,
          metadata: Object.assign({}, span.metadata || {}, { source_span: span.id }) }],
      });
      say(form, "Added to " + form.elements.dataset.selectedOptions[0].text + ".");
    },
    "save-row": async (form) => {
      const event = {
        input: json(form.elements.input.value, "Input"),
        expected: json(form.elements.expected.value, "Expected"),
        metadata: json(form.elements.metadata.value, "Metadata") || {},
      };
      if (form.elements.id && form.elements.id.value) event.id = form.elements.id.value;
      await api("POST", "/v1/dataset/" + encodeURIComponent(form.getAttribute("data-dataset")) + "/insert", { events: [event] });
      location.reload();
    },
    "delete-row": async (form) => {
      await api("POST", "/v1/dataset/" + encodeURIComponent(form.getAttribute("data-dataset")) + "/insert", {
        events: [{ id: form.elements.id.value, _object_delete: true }],
      });
      location.reload();
    },
    "read-import": async (form) => {
      const file = form.elements.file.files[0];
      if (!file) throw new Error("Choose a CSV or JSON Lines file.");
      pending = records(file.name, await file.text());
      if (!pending.length) throw new Error("The file holds no records.");
      const columns = [...new Set(pending.flatMap((r) => Object.keys(r)))];
      const table = document.getElementById("mapping");
      table.replaceChildren();
      for (const column of columns) {
        const tr = document.createElement("tr");
        const th = document.createElement("th");
        th.scope = "row";
        th.textContent = column;
        const td = document.createElement("td");
        const select = document.createElement("select");
        select.name = "map:" + column;
        select.setAttribute("aria-label", "Where " + column + " goes");
        for (const target of ["input", "expected", "metadata", "skip"]) {
          const option = document.createElement("option");
          option.value = target;
          option.textContent = target;
          select.append(option);
        }
        select.value = /^(input|question|prompt)$/i.test(column) ? "input"
          : /^(expected|answer|output|label)$/i.test(column) ? "expected" : "metadata";
        td.append(select);
        tr.append(th, td);
        table.append(tr);
      }
      document.getElementById("import-map").hidden = false;
      say(form, pending.length + " records read; choose where each column goes.");
    },
    "import": async (form) => {
      const mapping = {};
      for (const el of form.querySelectorAll("select[name^='map:']")) mapping[el.name.slice(4)] = el.value;
      const events = pending.map((r) => mapped(r, mapping));
      for (let i = 0; i < events.length; i += 500) {
        await api("POST", "/v1/dataset/" + encodeURIComponent(form.getAttribute("data-dataset")) + "/insert", { events: events.slice(i, i + 500) });
        say(form, "Imported " + Math.min(i + 500, events.length) + " of " + events.length + "…");
      }
      location.reload();
    },
    "create-group": async (form) => {
      await api("POST", "/v1/group", { name: form.elements.name.value, description: form.elements.description.value });
      location.reload();
    },
    "group-member": async (form, submitter) => {
      const change = submitter && submitter.value === "remove" ? "remove_member_users" : "add_member_users";
      const email = form.elements.user.value.trim();
      const member = Array.from(document.querySelectorAll("#member-emails option"))
        .find((o) => o.value === email);
      if (!member) throw new Error("No member of the organization has the email " + email);
      await api("PATCH", "/v1/group/" + encodeURIComponent(form.getAttribute("data-group")),
        { [change]: [member.getAttribute("data-user")] });
      location.reload();
    },
    "create-role": async (form) => {
      await api("POST", "/v1/role", roleBody(form));
      location.reload();
    },
    "edit-role": async (form) => {
      // Replaced in one request: what it held is removed and what is chosen added, only if
      // the role is still the version the page showed.
      const now = JSON.parse(form.getAttribute("data-current"));
      const role = roleBody(form);
      try {
        await api("PATCH", "/v1/role/" + encodeURIComponent(form.getAttribute("data-role")), {
          name: role.name,
          description: role.description,
          remove_member_permissions: now.member_permissions,
          remove_member_roles: now.member_roles,
          add_member_permissions: role.member_permissions,
          add_member_roles: role.member_roles,
        }, { "if-match": form.getAttribute("data-version") });
      } catch (e) {
        if (e.code !== "precondition_failed") throw e;
        // The form keeps the choices made and takes the role as the page now shows it (its
        // version, what it holds, and in words what it allows), so saving again replaces it.
        const id = CSS.escape(form.getAttribute("data-role"));
        const r = await fetch(location.href, { credentials: "same-origin" });
        const page = r.ok ? new DOMParser().parseFromString(await r.text(), "text/html") : null;
        const now = page && page.querySelector('#edit-role form[data-role="' + id + '"]');
        const allows = page && page.querySelector('#roles tr[data-role="' + id + '"] td.allows');
        if (!now || !allows) throw new Error("Not saved: someone changed or deleted this role since the page was loaded. Reload the page to see the roles as they are now.");
        form.setAttribute("data-current", now.getAttribute("data-current"));
        form.setAttribute("data-version", now.getAttribute("data-version"));
        throw new Error("Not saved: someone changed this role since the page was loaded. It now allows " +
          allows.textContent + ". Your choices are still in the form: save again to replace the role with them, or reload the page to start from the role as it is now.");
      }
      location.assign(location.pathname + "#roles-h");
    },
    "delete-role": async (form) => {
      await api("DELETE", "/v1/role/" + encodeURIComponent(form.getAttribute("data-role")));
      location.reload();
    },
    "grant": async (form) => {
      const [kind, who] = form.elements.who.value.split(":");
      const [objectType, objectId] = form.elements.on.value.split(":");
      const body = { object_type: objectType, object_id: objectId, role_id: form.elements.role.value };
      body[kind === "group" ? "group_id" : "user_id"] = who;
      await api("POST", "/v1/acl", body);
      location.reload();
    },
    "revoke-grant": async (form) => {
      await api("DELETE", "/v1/acl/" + encodeURIComponent(form.elements.id.value));
      location.reload();
    },
    "invite": async (form) => {
      await api("PATCH", "/v1/organization/members", {
        invite_users: { emails: [form.elements.email.value], group_ids: [form.elements.group.value] },
      });
      location.reload();
    },
    "password-link": async (form) => {
      const path = org(form) + "/password_link";
      const made = await api("POST", path, { user_id: form.getAttribute("data-user") });
      const shown = document.getElementById("sign-in-link");
      shown.querySelector("code").textContent = made.link;
      shown.hidden = false;
      say(form, "Made: copy it now, it is shown only once.");
    },
    "sign-in": async (form) => {
      const allowed = form.elements.password_login.checked;
      if (!allowed && !window.confirm("Turn passwords off? Everyone signed in with a password is signed out, you too if you did.")) return;
      await api("PUT", org(form) + "/sign_in", { password_login: allowed });
      location.reload();
    },
    "add-oidc": async (form) => {
      await api("POST", org(form) + "/oidc", oidcBody(form));
      location.reload();
    },
    "edit-oidc": async (form) => {
      await api("PUT", org(form) + "/oidc/" + encodeURIComponent(form.getAttribute("data-id")), oidcBody(form));
      location.reload();
    },
    "add-saml": async (form) => {
      await api("POST", org(form) + "/saml", samlBody(form));
      location.reload();
    },
    "edit-saml": async (form) => {
      await api("PUT", org(form) + "/saml/" + encodeURIComponent(form.getAttribute("data-id")), samlBody(form));
      location.reload();
    },
    "remove-connection": async (form) => {
      await api("DELETE", org(form) + "/" + form.getAttribute("data-kind") + "/" + encodeURIComponent(form.getAttribute("data-id")));
      location.reload();
    },
    "create-key": async (form) => {
      const made = await api("POST", "/v1/api_key", { name: form.elements.name.value });
      const shown = document.getElementById("new-key");
      shown.querySelector("code").textContent = made.key;
      shown.hidden = false;
      form.elements.name.value = "";
      say(form, "Created. Copy the key now: it is shown only once.");
      // The list, with the new key in it, from a fresh copy of the page (which never holds
      // a secret); the secret shown above stays until the page is left. The key is made
      // whatever becomes of this, so a failed refresh leaves the list as it was rather than
      // reporting an error over the key.
      await refresh("key-list").catch(() => {});
    },
    "revoke-key": async (form) => {
      await api("DELETE", "/v1/api_key/" + encodeURIComponent(form.elements.id.value));
      location.reload();
    },
  };

  // One listener for every form that acts, so forms put in the page later (a refreshed list)
  // act as those it was served with.
  document.addEventListener("submit", async (event) => {
    const form = event.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute("data-action")) return;
    event.preventDefault();
    const action = actions[form.getAttribute("data-action")];
    if (form.getAttribute("data-confirm") && !window.confirm(form.getAttribute("data-confirm"))) return;
    const button = form.querySelector("button[type=submit]");
    if (button) button.disabled = true;
    try {
      await action(form, event.submitter);
    } catch (e) {
      say(form, e.message, true);
    } finally {
      if (button) button.disabled = false;
    }
  });
})();
