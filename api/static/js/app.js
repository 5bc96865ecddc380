// The dashboard's shell: sign-in state, hash routes (#/jobs, #/jobs/<id>, #/new, #/data), layout.

import { clearKey, getKey, setKey } from "./api.js";
import { announce, h, replace } from "./dom.js";
import { renderData } from "./views/data.js";
import { renderJob } from "./views/job.js";
import { renderJobs } from "./views/jobs.js";
import { renderNewJob } from "./views/newjob.js";
import { renderSignIn } from "./views/signin.js";

const main = document.getElementById("main");
let active = null;
let signInMessage = null;

/**
 * Sign in from the link `lbc serve` prints, `/#key=<key>`, then drop the key from the address bar and
 * the history. The fragment never leaves the browser, so the key reaches no server or proxy log. A route
 * may follow the key (`/#key=<key>#/jobs/<id>`); the old query form `/?key=<key>` still works.
 */
function takeKeyFromUrl() {
  const url = new URL(window.location.href);
  const fromHash = /^#key=([^&#]*)(?:[&#](.*))?$/.exec(url.hash);
  const key = fromHash ? decodeURIComponent(fromHash[1]) : url.searchParams.get("key");
  if (!fromHash && !url.searchParams.has("key")) return;
  url.searchParams.delete("key");
  if (fromHash) url.hash = fromHash[2] ? `#${fromHash[2].replace(/^#/, "")}` : "";
  if (key && key.trim()) setKey(key.trim());
  const query = url.searchParams.toString();
  window.history.replaceState(null, "", `${url.pathname}${query ? `?${query}` : ""}${url.hash || "#/jobs"}`);
}

export function parseRoute(hash = window.location.hash) {
  const text = hash.replace(/^#\/?/, "");
  const [path, query = ""] = text.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query);
  if (parts[0] === "jobs" && parts[1]) return { name: "job", id: parts[1], params };
  if (parts[0] === "new") return { name: "new", params };
  if (parts[0] === "data") return { name: "data", params };
  return { name: "jobs", params };
}

export function navigate(hash) {
  if (window.location.hash === hash) render();
  else window.location.hash = hash;
}

const VIEWS = { jobs: renderJobs, job: renderJob, new: renderNewJob, data: renderData };
const NAV_OF = { jobs: "jobs", job: "jobs", new: "new", data: "data" };

function showChrome(signedIn) {
  document.getElementById("nav").hidden = !signedIn;
  document.getElementById("account").hidden = !signedIn;
  const key = getKey();
  document.getElementById("key-label").textContent = signedIn && key ? `key ${key.slice(0, 10)}…` : "";
}

function render() {
  if (active) active.abort();
  active = new AbortController();
  const signal = active.signal;
  const route = parseRoute();
  replace(main);
  if (!getKey()) {
    showChrome(false);
    document.title = "Sign in · LBC dashboard";
    renderSignIn(main, {
      message: signInMessage,
      onSignedIn: () => {
        signInMessage = null;
        if (parseRoute().name === "jobs" && !window.location.hash.startsWith("#/jobs")) navigate("#/jobs");
        else render();
      },
    });
    focusHeading();
    return;
  }
  showChrome(true);
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === NAV_OF[route.name]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  Promise.resolve(VIEWS[route.name](main, { ...route, signal, navigate }))
    .catch((exc) => {
      if (signal.aborted || exc.name === "AbortError") return;
      replace(main, h("h1", {}, "Something went wrong"), h("div", { class: "alert alert-error", role: "alert" }, exc.message));
    })
    .finally(() => {
      if (!signal.aborted) focusHeading();
    });
}

function focusHeading() {
  const heading = main.querySelector("h1");
  if (heading) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
    document.title = `${heading.textContent} · LBC dashboard`;
  }
}

window.addEventListener("lbc:unauthorized", () => {
  if (!getKey()) return;
  clearKey();
  signInMessage = "The API key was not accepted (revoked or mistyped). Sign in again.";
  announce(signInMessage);
  render();
});

document.getElementById("sign-out").addEventListener("click", () => {
  clearKey();
  signInMessage = "Signed out.";
  window.history.replaceState(null, "", `${window.location.pathname}#/jobs`);
  render();
});

window.addEventListener("hashchange", () => {
  takeKeyFromUrl(); // a sign-in link pasted into a tab that is already open
  render();
});
takeKeyFromUrl();
render();
