// The portal's only script of its own (no inline script: the CSP forbids it).
// Copy buttons for secrets shown once; focus on the error summary after a refused form;
// the bar of a form that sends a file; regions kept live by server-sent events.
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const value = document.getElementById(button.dataset.copy);
  if (!value) return;
  navigator.clipboard.writeText(value.textContent.trim()).then(() => {
    button.textContent = button.dataset.copied || "Copied";
  });
});

function focusSummary() {
  const summary = document.querySelector("[data-autofocus]");
  if (summary) summary.focus();
}

function followLiveRegions(root) {
  // Each `progress` event carries the region's new HTML, rendered by the portal; `done` ends.
  if (!window.EventSource) return;
  for (const region of root.querySelectorAll("[data-events]")) {
    const source = new EventSource(region.dataset.events);
    source.addEventListener("progress", (e) => { region.innerHTML = e.data; });
    source.addEventListener("done", () => source.close());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  focusSummary();
  followLiveRegions(document);
});

// A form with data-progress sends its file by XMLHttpRequest, so its bar can show the bytes
// sent. The answer is shown as the browser would: a redirect's page, or the form again with
// the refusal. Without script the form posts as any form does.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.progress || !window.FormData) return;
  event.preventDefault();
  const id = form.dataset.progress;
  const panel = document.getElementById(id);
  const bar = document.getElementById(`${id}-bar`);
  const words = document.getElementById(`${id}-words`);
  const button = form.querySelector("button[type=submit]");
  panel.hidden = false;
  bar.value = 0;
  if (button) button.disabled = true;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", form.action);
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    const percent = Math.floor((e.loaded / e.total) * 100);
    bar.value = percent;
    words.textContent = words.dataset.sentWords.replace("{percent}", percent);
  });
  xhr.upload.addEventListener("load", () => {
    bar.value = 100;
    words.textContent = words.dataset.checkingWords;
  });
  xhr.addEventListener("load", () => {
    if (xhr.status < 400 && xhr.responseURL && xhr.responseURL !== form.action) {
      window.location.assign(xhr.responseURL);
      return;
    }
    const answer = new DOMParser().parseFromString(xhr.responseText, "text/html");
    const main = answer.querySelector("main");
    if (!main) {
      window.location.reload();
      return;
    }
    document.querySelector("main").replaceWith(main);
    document.title = answer.title;
    focusSummary();
    followLiveRegions(main);
  });
  xhr.addEventListener("error", () => {
    words.textContent = words.dataset.lostWords;
    if (button) button.disabled = false;
  });
  xhr.send(new FormData(form));
});

// Data entry: a form with data-evaluate asks the portal, and through it registrations' one
// engine, how the record stands after each change (debounced; only the answer to the newest
// question is applied). Only the fields' relevance, required marks, computed values and
// messages change: the inputs are never replaced, so focus and typed text stay. A field's
// message shows once the person has touched it (or after the form was sent back); the live
// summary lists them for screen readers. Fields that do not apply are disabled, so
// nothing hidden is sent.
// The questions go over one WebSocket (the form's `live` route), opened at the first change:
// no HTTP request per change. When it cannot open, closes, or does not open or answer in
// time (a proxy holding it), the unanswered change is POSTed to the evaluate route instead,
// and a socket is tried again later, waiting longer each time.
const ENTRY_DELAY_MS = 300;
const LIVE_OPEN_MS = 3_000;
const LIVE_ANSWER_MS = 5_000;
const LIVE_RETRY_MS = 5_000;
const LIVE_RETRY_MAX_MS = 300_000;
const entry = {
  timer: null, controller: null, asked: 0, answered: 0,
  socket: null, liveTimer: null, retryAt: 0, retryMs: LIVE_RETRY_MS,
};

function entryForm(target) {
  return target instanceof Element ? target.closest("form[data-evaluate]") : null;
}

function entryAsk(form) {
  clearTimeout(entry.timer);
  entry.timer = setTimeout(() => entryEvaluate(form), ENTRY_DELAY_MS);
}

function entryBody(form) {
  const body = new URLSearchParams();
  for (const [key, value] of new FormData(form)) body.append(key, value);
  return body;
}

function entryEvaluate(form) {
  ++entry.asked;
  if (!entryLive(form)) entryPost(form);
}

function entryAnswered(form, answer) {
  if (answer.seq !== entry.asked) return;
  entry.answered = answer.seq;
  if (answer.fields) entryApply(form, answer);
}

// The newest question over the socket: true when it is sent, or will be once the socket
// is open (or posted once it is given up); false when there is no socket to use now.
function entryLive(form) {
  if (entry.socket) {
    if (entry.socket.readyState === WebSocket.OPEN) entryLiveSend(form);
    return true;
  }
  if (!window.WebSocket || Date.now() < entry.retryAt) return false;
  const url = new URL(form.dataset.evaluate.replace(/\/evaluate$/, "/live"), window.location.href);
  url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
  let socket;
  try {
    socket = new WebSocket(url);
  } catch (e) {
    return false;
  }
  entry.socket = socket;
  entryLiveWait(form, socket, LIVE_OPEN_MS);
  socket.addEventListener("open", () => {
    if (entry.socket !== socket) return;
    clearTimeout(entry.liveTimer);
    entryLiveSend(form);
  });
  socket.addEventListener("message", (e) => {
    if (entry.socket !== socket) return;
    entry.retryMs = LIVE_RETRY_MS;
    try {
      const answer = JSON.parse(e.data);
      if (answer.fields) entrySignedOut(false);
      entryAnswered(form, answer);
    } catch (error) {
      // Not an answer: nothing to apply.
    }
    if (entry.answered === entry.asked) clearTimeout(entry.liveTimer);
  });
  socket.addEventListener("close", () => entryLiveDrop(form, socket));
  return true;
}

function entryLiveSend(form) {
  if (entry.answered === entry.asked) return;
  entry.socket.send(JSON.stringify({ seq: entry.asked, form: entryBody(form).toString() }));
  entryLiveWait(form, entry.socket, LIVE_ANSWER_MS);
}

function entryLiveWait(form, socket, ms) {
  clearTimeout(entry.liveTimer);
  entry.liveTimer = setTimeout(() => entryLiveDrop(form, socket), ms);
}

// The socket given up (closed, or not open or not answering in time): the unanswered
// change is posted, and a socket is tried again after a while.
function entryLiveDrop(form, socket) {
  if (entry.socket !== socket) return;
  clearTimeout(entry.liveTimer);
  entry.socket = null;
  socket.close();
  entry.retryAt = Date.now() + entry.retryMs;
  entry.retryMs = Math.min(entry.retryMs * 2, LIVE_RETRY_MAX_MS);
  if (entry.answered !== entry.asked) entryPost(form);
}

async function entryPost(form) {
  if (entry.controller) entry.controller.abort();
  const controller = new AbortController();
  entry.controller = controller;
  const asked = entry.asked;
  let answer;
  try {
    const response = await fetch(form.dataset.evaluate, {
      method: "POST",
      body: entryBody(form),
      credentials: "same-origin",
      headers: { "X-CSRF-Token": form.querySelector("input[name=csrf_token]").value },
      signal: controller.signal,
      // Signed out, the route sends the browser to the sign-in page: not followed, said.
      redirect: "manual",
    });
    if (response.type === "opaqueredirect" || response.status === 401) {
      entrySignedOut(true);
      return;
    }
    if (!response.ok) return;
    answer = await response.json();
  } catch (e) {
    return;
  }
  entrySignedOut(false);
  entryAnswered(form, { seq: asked, ...answer });
}

// The session ended (signed out in another tab, expired): the person is told, and what
// they typed stays; the notice goes once a change is answered again.
function entrySignedOut(ended) {
  const notice = document.getElementById("entry-signed-out");
  if (notice && notice.hidden === ended) notice.hidden = !ended;
}

function entryApply(form, answer) {
  const showAll = form.dataset.showAll === "1";
  const problems = [];
  for (const [name, state] of Object.entries(answer.fields)) {
    const box = form.querySelector(`[data-field="${name}"]`);
    if (!box) continue;
    const instance = box.closest("[data-removed]");
    const removed = instance && instance.dataset.removed === "1";
    // A field that stops applying while the person is in it (typed the SSIN, moved on to
    // the name before the answer came) stays until they leave it (entryLeave): hidden
    // under their fingers, it took the focus and what they were typing away.
    const held = !state.relevant && box.contains(document.activeElement);
    box.dataset.relevant = state.relevant ? "1" : "0";
    box.hidden = !state.relevant && !held;
    for (const input of box.querySelectorAll("input, select, textarea")) {
      const off = (!state.relevant && !held) || removed;
      if (input.disabled !== off && document.activeElement !== input) input.disabled = off;
    }
    const required = box.querySelector(".required");
    const optional = box.querySelector(".optional");
    if (required) required.hidden = !state.required;
    if (optional) optional.hidden = state.required;
    if (box.hasAttribute("data-computed")) {
      const output = box.querySelector("input");
      if (output && output.value !== state.value) output.value = state.value;
    }
    const shown = state.relevant && !removed && (showAll || box.dataset.touched === "1");
    const message = shown && state.errors.length ? state.errors[0] : "";
    const error = document.getElementById(`${name}-error`);
    if (error) {
      error.hidden = !message;
      error.textContent = "";
      if (message) {
        const hidden = document.createElement("span");
        hidden.className = "visually-hidden";
        hidden.textContent = `${error.dataset.prefix || "Error"}: `;
        error.append(hidden, message);
      }
    }
    box.classList.toggle("field-error", Boolean(message));
    for (const input of box.querySelectorAll("input, select, textarea")) {
      if (message) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    }
    // The summary names each field by its label: "Date of birth: This field is required."
    if (message) problems.push([name, box.dataset.label ? `${box.dataset.label}: ${message}` : message]);
  }
  entryScopes(form);
  entrySummary(problems);
}

// A group or repeat instance whose every field is left out is left out too.
function entryScopes(form) {
  for (const scope of [...form.querySelectorAll("[data-scope]")].reverse()) {
    const fields = scope.querySelectorAll("[data-field]");
    const removed = scope.dataset.removed === "1";
    // Inner scopes come first (reversed document order): a field in a hidden inner one is out.
    const out = (f) => f.hidden || (f.closest("[data-scope]") !== scope && f.closest("[data-scope]").hidden);
    scope.hidden = removed || (fields.length > 0 && [...fields].every(out));
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const form of document.querySelectorAll("form[data-evaluate]")) entryScopes(form);
});

function entrySummary(problems) {
  const summary = document.getElementById("entry-summary");
  if (!summary) return;
  const title = summary.querySelector("h2");
  const list = summary.querySelector("ul");
  list.textContent = "";
  summary.hidden = problems.length === 0;
  title.textContent = problems.length === 1 ? title.dataset.one : title.dataset.many.replace("{count}", problems.length);
  for (const [name, message] of problems) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = `#${name}`;
    link.textContent = message;
    item.append(link);
    list.append(item);
  }
}

function entryTouch(event) {
  const form = entryForm(event.target);
  if (!form) return;
  const box = event.target.closest("[data-field]");
  if (box) box.dataset.touched = "1";
  entryAsk(form);
}

document.addEventListener("input", entryTouch);

// Leaving a field that stopped applying while the person was in it: now it goes (its
// value is not sent; the engine ignores a value of a field that does not apply anyway).
function entryLeave(event) {
  const box = event.target instanceof Element ? event.target.closest("[data-field]") : null;
  if (!box || box.hidden || box.dataset.relevant !== "0" || box.contains(event.relatedTarget)) return;
  box.hidden = true;
  for (const input of box.querySelectorAll("input, select, textarea")) input.disabled = true;
  const form = entryForm(box);
  if (form) entryScopes(form);
}

document.addEventListener("focusout", entryLeave);
document.addEventListener("change", entryTouch);

// Repeats without a count: add the next instance, remove the last (its values cleared).
document.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-repeat-add], button[data-repeat-remove]");
  if (!button) return;
  const form = entryForm(button);
  const name = button.dataset.repeatAdd || button.dataset.repeatRemove;
  const instances = [...form.querySelectorAll(`[data-instance-of="${name}"]`)];
  if (button.dataset.repeatAdd) {
    const next = instances.find((i) => i.dataset.removed === "1");
    if (!next) return;
    next.dataset.removed = "0";
    next.hidden = false;
    const first = next.querySelector("input:not([readonly]), select");
    if (first) { first.disabled = false; first.focus(); }
  } else {
    const shown = instances.filter((i) => i.dataset.removed === "0");
    if (shown.length <= 1) return;
    const last = shown[shown.length - 1];
    for (const input of last.querySelectorAll("input, select")) {
      if (input.type === "checkbox" || input.type === "radio") input.checked = false;
      else input.value = "";
    }
    last.dataset.removed = "1";
    last.hidden = true;
    button.focus();
  }
  entryAsk(form);
});
