// The reference privacy center: how the platform's client-area buttons call the suite's functions.
//
// Every call sends the user's bearer token (`Authorization: Bearer <token>`); step-up actions
// (export, erasure) are first sent without a code, answer 401 `verification_required` (a code is
// mailed to accounts without 2FA), then sent again with `X-Verification-Code`. Personal data is
// only ever written with textContent: nothing a function answers is parsed as HTML.
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("pc-config").textContent);
  const token = document.querySelector('meta[name="pc-token"]').content;
  const api = config.endpoints;
  const msg = config.messages;
  const $ = (id) => document.getElementById(id);

  async function call(method, url, { body, code } = {}) {
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (code) headers["X-Verification-Code"] = code;
    const response = await fetch(url, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit", // the token is the credential, as in the client area
      cache: "no-store",
    });
    let data = null;
    if ((response.headers.get("Content-Type") || "").includes("application/json")) {
      data = await response.json();
    }
    return { status: response.status, data, error: (data && data.error) || null };
  }

  function say(id, text, isError) {
    const node = $(id);
    node.textContent = text;
    node.classList.toggle("error", Boolean(isError));
  }

  function failure(id, answer) {
    const detail = answer.error ? answer.error.message : `HTTP ${answer.status}`;
    say(id, `${msg.failed} ${detail}`, true);
  }

  function when(iso) {
    return iso ? new Date(iso).toLocaleString(config.lang) : "";
  }

  // --- Consents and objections ---------------------------------------------------------------

  function showConsents(state) {
    for (const box of document.querySelectorAll("input.consent")) {
      const current = state.consents[box.dataset.purpose];
      box.checked = Boolean(current && current.granted);
      box.disabled = !box.checked; // giving consent again happens in the platform's own settings
      box.title = box.checked ? "" : msg.regive;
    }
    for (const box of document.querySelectorAll("input.objection")) {
      box.checked = Boolean(state.objections[box.dataset.kind]);
      box.disabled = box.checked; // lifting an objection is a new explicit consent, not this page
    }
    $("restriction").hidden = !state.restriction.in_force;
    $("restriction-since").textContent = when(state.restriction.since);
    const body = $("consent-history").tBodies[0];
    body.replaceChildren();
    for (const event of state.history) {
      const row = body.insertRow();
      const action = event.action === "given" ? msg.given : event.action === "withdrawn" ? msg.withdrawn_action : event.action;
      for (const value of [when(event.occurred_at), event.purpose, action, event.channel, event.policy_version]) {
        row.insertCell().textContent = value == null ? "" : String(value);
      }
    }
  }

  async function loadConsents() {
    const answer = await call("GET", api.consent);
    if (answer.status === 200) {
      showConsents(answer.data);
      say("consents-status", "");
    } else if (answer.error && answer.error.code === "account_inactive") {
      say("consents-status", msg.inactive, true);
      for (const box of document.querySelectorAll("input.consent, input.objection")) box.disabled = true;
    } else {
      failure("consents-status", answer);
    }
  }

  async function withdraw(purpose, object, statusId, done) {
    const answer = await call("POST", api.consent, { body: { purpose, object } });
    if (answer.status === 200) {
      showConsents(answer.data);
      say(statusId, done);
    } else {
      failure(statusId, answer);
      await loadConsents();
    }
  }

  for (const box of document.querySelectorAll("input.consent")) {
    box.addEventListener("change", () => {
      if (!box.checked) withdraw(box.dataset.purpose, false, "consents-status", msg.withdrawn);
    });
  }
  for (const box of document.querySelectorAll("input.objection")) {
    box.addEventListener("change", () => {
      if (box.checked) withdraw(box.dataset.purpose, true, "objections-status", msg.objected);
    });
  }

  // --- Step-up: ask without a code, then with the code the user enters --------------------------

  function askForCode(formId, inputId, statusId, answer, retry) {
    const form = $(formId);
    const input = $(inputId);
    say(statusId, config.two_factor ? msg.code_totp : msg.code_mailed);
    form.hidden = false;
    input.value = "";
    input.focus();
    form.onsubmit = async (event) => {
      event.preventDefault();
      const again = await retry(input.value.trim());
      if (again.status < 300) form.hidden = true;
    };
  }

  // --- Export ----------------------------------------------------------------------------------

  let exportTimer = null;

  async function followExport(requestId) {
    $("export-progress").hidden = false;
    say("export-status", msg.export_pending);
    const answer = await call("GET", `${api.export}${encodeURIComponent(requestId)}`);
    if (answer.status !== 200) {
      $("export-progress").hidden = true;
      return failure("export-status", answer);
    }
    if (answer.data.download_url) {
      $("export-progress").hidden = true;
      $("export-link").href = answer.data.download_url;
      $("export-link").hidden = false;
      say("export-status", `${msg.export_ready} ${when(answer.data.download_url_expires_at)}`);
      $("export-link").focus();
      return;
    }
    if (["failed", "rejected", "cancelled"].includes(answer.data.state)) {
      $("export-progress").hidden = true;
      return say("export-status", `${msg.failed} ${answer.data.state}`, true);
    }
    exportTimer = setTimeout(() => followExport(requestId), 1000);
  }

  async function startExport(code) {
    const answer = await call("POST", api.export, { body: {}, code });
    if (answer.status === 202) {
      clearTimeout(exportTimer);
      loadAccount();
      followExport(answer.data.request_id);
    } else if (answer.status === 401 && answer.error.code === "verification_required") {
      askForCode("export-code-form", "export-code", "export-status", answer, startExport);
    } else {
      failure("export-status", answer);
    }
    return answer;
  }

  $("export-start").addEventListener("click", () => startExport());

  // --- Erasure, with its cooling-off countdown -----------------------------------------------------

  let countdownTimer = null;

  function showPending(erasure) {
    clearInterval(countdownTimer);
    $("erasure-form").hidden = true;
    $("erasure-code-form").hidden = true;
    $("erasure-cancel").hidden = !erasure.cancellable;
    $("erasure-cancel").dataset.requestId = erasure.request_id;
    say("erasure-status", `${msg.erasure_pending} ${when(erasure.erase_after)}`);
    const end = new Date(erasure.erase_after).getTime();
    const tick = () => {
      const left = Math.max(0, Math.floor((end - Date.now()) / 1000));
      const days = Math.floor(left / 86400);
      const clock = new Date((left % 86400) * 1000).toISOString().slice(11, 19);
      $("erasure-countdown").textContent = `${msg.erasure_remaining} ${days} ${msg.days} ${clock}`;
    };
    tick();
    countdownTimer = setInterval(tick, 1000);
  }

  function showNoErasure() {
    clearInterval(countdownTimer);
    $("erasure-form").hidden = false;
    $("erasure-cancel").hidden = true;
    $("erasure-countdown").textContent = "";
  }

  async function loadErasure() {
    const answer = await call("GET", api.erasure);
    if (answer.status === 200) showPending(answer.data);
    else if (answer.status === 404) showNoErasure();
    else failure("erasure-status", answer);
  }

  async function startErasure(code) {
    const answer = await call("POST", api.erasure, { body: {}, code });
    if (answer.status === 200 || answer.status === 202) {
      showPending(answer.data);
      loadConsents();
      loadAccount();
    } else if (answer.status === 401 && answer.error.code === "verification_required") {
      askForCode("erasure-code-form", "erasure-code", "erasure-status", answer, startErasure);
    } else {
      failure("erasure-status", answer);
    }
    return answer;
  }

  $("erasure-form").addEventListener("submit", (event) => {
    event.preventDefault();
    startErasure();
  });

  $("erasure-cancel").addEventListener("click", async () => {
    const requestId = $("erasure-cancel").dataset.requestId;
    const answer = await call("DELETE", `${api.erasure}${encodeURIComponent(requestId)}`);
    if (answer.status === 200) {
      showNoErasure();
      say("erasure-status", msg.erasure_cancelled);
      loadConsents();
      loadAccount();
    } else {
      failure("erasure-status", answer);
    }
  });

  // --- Places of functions built separately: a 404 means "not deployed yet" --------------------------

  async function loadRectify() {
    const answer = await call("GET", api.rectify);
    if (answer.status === 404) return say("rectify-status", msg.unavailable);
    if (answer.status !== 200 || !answer.data) return failure("rectify-status", answer);
    const list = $("rectify-details");
    list.replaceChildren();
    // GET /rectify-account/ answers each field with its value and the processors that also hold it.
    for (const [field, item] of Object.entries(answer.data.fields || {})) {
      const term = document.createElement("dt");
      term.textContent = field;
      const detail = document.createElement("dd");
      const holders = (item.also_held_by || []).map((h) => h.name).join(", ");
      detail.textContent = (item.value == null ? "" : String(item.value)) + (holders ? ` (${holders})` : "");
      list.append(term, detail);
    }
    say("rectify-status", "");
  }

  async function loadNotice() {
    const answer = await call("GET", api.notice);
    if (answer.status === 404) return say("notice-status", msg.unavailable);
    if (answer.status !== 200 || !answer.data) return failure("notice-status", answer);
    const version = answer.data.version_in_force || answer.data.version;
    if (version) $("notice-version").textContent = String(version.number || version);
    say("notice-status", "");
  }

  // --- Who the token acts for (whoami): status, 2FA, requests in progress -------------------------

  async function loadAccount() {
    const answer = await call("GET", api.whoami);
    // whoami serves active accounts only: a pending erasure has deactivated this one.
    if (answer.error && answer.error.code === "account_inactive") return say("account-summary", msg.account_deactivated);
    if (answer.status !== 200) return failure("account-summary", answer);
    const me = answer.data;
    say("account-summary", [
      me.status === "active" ? msg.account_active : msg.account_deactivated,
      me.two_factor ? msg.two_factor_on : msg.two_factor_off,
      `${me.open_requests} ${msg.open_requests}`,
    ].join(" · "));
  }

  loadAccount();
  loadConsents();
  loadErasure();
  loadRectify();
  loadNotice();
})();
