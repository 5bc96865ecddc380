// Small DOM and formatting helpers. Text always goes in as text nodes, never as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function setAttributes(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.setAttribute("class", value);
    else if (key === "text") el.textContent = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
}

function appendAll(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** h("a", {href: "#/jobs"}, "Jobs") */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttributes(el, attrs);
  appendAll(el, children);
  return el;
}

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttributes(el, attrs);
  appendAll(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function replace(el, ...children) {
  clear(el);
  appendAll(el, children);
  return el;
}

let uid = 0;
export function uniqueId(prefix) {
  uid += 1;
  return `${prefix}-${uid}`;
}

export function announce(message) {
  const region = document.getElementById("announcer");
  if (!region) return;
  region.textContent = "";
  window.setTimeout(() => {
    region.textContent = message;
  }, 30);
}

// -- formatting -----------------------------------------------------------------------------------
export function isNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

export function fmtBytes(n) {
  if (!isNumber(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function fmtPercent(x, digits = 1) {
  return isNumber(x) ? `${(x * 100).toFixed(digits)}%` : "—";
}

export function fmtNumber(x, digits = 4) {
  if (!isNumber(x)) return "—";
  if (x !== 0 && (Math.abs(x) < 1e-3 || Math.abs(x) >= 1e5)) return x.toExponential(2);
  return Number(x.toPrecision(digits)).toString();
}

const COMPACT = new Intl.NumberFormat("en", { notation: "compact", maximumSignificantDigits: 3 });

/** 131000 -> "131K" */
// The result key of a job's primary metric: val_accuracy, or val_perplexity for a causal LM (lower is
// better). Results from before tasks had one name none: they are accuracies.
export function primaryMetric(result) {
  const recorded = result && result.primary_metric;
  return (recorded && typeof recorded.name === "string" && recorded.name) || "val_accuracy";
}

export function fmtMetric(name, value, digits = 1) {
  return name === "val_perplexity" ? fmtNumber(value) : fmtPercent(value, digits);
}

export function fmtCompact(x) {
  return isNumber(x) ? COMPACT.format(x) : "—";
}

export function fmtDuration(seconds) {
  if (!isNumber(seconds) || seconds < 0) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const hours = Math.floor(m / 60);
  return `${hours} h ${m % 60} min`;
}

export function fmtAge(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (seconds < 45) return "just now";
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

export function fmtDate(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

export function shortId(id) {
  return id ? id.slice(0, 8) : "";
}

export const TERMINAL_STATES = new Set(["succeeded", "failed", "cancelled"]);

export function stateBadge(state) {
  return h("span", { class: `badge state-${state}`, dataset: { state } }, state);
}

/** A badge per warning of a job's result (e.g. "did not learn"); the message is its tooltip. */
export function warningBadges(job) {
  return (job.warnings || []).map((w) =>
    h("span", { class: "badge badge-warning", title: w.message, dataset: { warning: w.code } }, w.code.replaceAll("_", " ")),
  );
}

/** Fraction done of a job, from its state and latest progress report. */
export function jobFraction(job) {
  if (job.state === "succeeded") return 1;
  const fraction = job.progress && job.progress.fraction;
  return isNumber(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
}

export function progressBar(fraction, label) {
  const percent = Math.round(fraction * 100);
  return h(
    "div",
    { class: "progress" },
    h("progress", { max: "100", value: String(percent), "aria-label": label }),
    h("span", {}, `${percent}%`),
  );
}
