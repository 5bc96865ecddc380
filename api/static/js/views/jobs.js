// The jobs list: filters, keyset paging, auto-refresh while jobs are active.

import { api, getOpenApi } from "../api.js";
import {
  TERMINAL_STATES,
  fmtAge,
  fmtDate,
  fmtMetric,
  fmtPercent,
  h,
  jobFraction,
  primaryMetric,
  progressBar,
  replace,
  shortId,
  stateBadge,
  warningBadges,
} from "../dom.js";

const STATES = ["queued", "running", "cancelling", "succeeded", "failed", "cancelled"];
// Only a fallback: the filter reads the API's own list of methods from its OpenAPI document.
const METHODS = ["lbc", "srste", "asp", "wanda", "dense"];

/** The choices of a query parameter of GET /v1/jobs, as the API documents them. */
function choicesOf(openapi, name, fallback) {
  try {
    const parameter = openapi.paths["/v1/jobs"].get.parameters.find((p) => p.name === name);
    let schema = parameter.schema;
    if (schema.anyOf) schema = schema.anyOf.find((option) => option.enum || option.$ref) || schema;
    if (schema.$ref) schema = openapi.components.schemas[schema.$ref.split("/").pop()];
    return Array.isArray(schema.enum) && schema.enum.length ? schema.enum : fallback;
  } catch {
    return fallback;
  }
}
const PAGE_SIZES = ["10", "20", "50", "100"];
const REFRESH_MS = 3000;

// Cursors of the pages before the current one (keyset paging only goes forward).
const history = { filters: "", cursors: [] };

function select(id, label, options, value) {
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    h(
      "select",
      { id, name: id.replace("filter-", "") },
      options.map(([optionValue, text]) => h("option", { value: optionValue, selected: optionValue === value }, text)),
    ),
  );
}

function jobRow(job) {
  const result = job.result || {};
  const title = job.name || `job ${shortId(job.id)}`;
  return h(
    "tr",
    { dataset: { jobId: job.id, state: job.state } },
    h(
      "td",
      {},
      h("a", { href: `#/jobs/${job.id}` }, title),
      h("div", { class: "muted small mono" }, shortId(job.id)),
    ),
    h("td", {}, stateBadge(job.state), " ", warningBadges(job), job.phase && !TERMINAL_STATES.has(job.state) ? h("div", { class: "muted small" }, job.phase) : null),
    h("td", {}, job.method),
    h("td", {}, job.pattern),
    h("td", {}, job.architecture),
    h("td", {}, job.dataset_source || "—", job.dataset_id ? h("div", { class: "muted small mono" }, shortId(job.dataset_id)) : null),
    h("td", {}, progressBar(jobFraction(job), `Progress of ${title}`)),
    h("td", { class: "num", title: primaryMetric(result) }, fmtMetric(primaryMetric(result), result[primaryMetric(result)])),
    h("td", { class: "num" }, fmtPercent(result.density)),
    h("td", { title: fmtDate(job.created_at) }, h("time", { datetime: job.created_at }, fmtAge(job.created_at))),
  );
}

export async function renderJobs(main, { params, signal, navigate }) {
  const filters = {
    status: params.get("status") || "",
    method: params.get("method") || "",
    pattern: params.get("pattern") || "",
    limit: PAGE_SIZES.includes(params.get("limit")) ? params.get("limit") : "20",
  };
  const cursor = params.get("cursor") || "";
  const filterKey = JSON.stringify(filters);
  if (history.filters !== filterKey || !cursor) {
    history.filters = filterKey;
    history.cursors = [];
  }

  const openapi = await getOpenApi().catch(() => null);
  if (signal.aborted) return;
  const states = openapi ? choicesOf(openapi, "status", STATES) : STATES;
  const methods = openapi ? choicesOf(openapi, "method", METHODS) : METHODS;
  const patternInput = h("input", {
    type: "text",
    id: "filter-pattern",
    name: "pattern",
    value: filters.pattern,
    placeholder: "2:4",
    size: "6",
    pattern: "[0-9]{1,2}:[0-9]{1,2}",
    "aria-describedby": "filter-pattern-hint",
  });
  const form = h(
    "form",
    { class: "filters", "aria-label": "Filter jobs" },
    select("filter-status", "State", [["", "Any state"], ...states.map((v) => [v, v])], filters.status),
    select("filter-method", "Method", [["", "Any method"], ...methods.map((v) => [v, v])], filters.method),
    h(
      "div",
      { class: "field" },
      h("label", { for: "filter-pattern" }, "Pattern"),
      patternInput,
      h("span", { id: "filter-pattern-hint", class: "visually-hidden" }, "N:M, for example 2:4"),
    ),
    select("filter-limit", "Per page", PAGE_SIZES.map((v) => [v, v]), filters.limit),
    h("button", { type: "submit", class: "btn" }, "Apply filters"),
    h("button", { type: "button", class: "btn btn-secondary", onclick: () => navigate("#/jobs") }, "Clear"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!patternInput.checkValidity()) {
      patternInput.setAttribute("aria-invalid", "true");
      patternInput.focus();
      return;
    }
    const query = new URLSearchParams();
    for (const [key, value] of new FormData(form).entries()) if (value && !(key === "limit" && value === "20")) query.set(key, value);
    navigate(`#/jobs${query.toString() ? `?${query}` : ""}`);
  });

  const status = h("p", { class: "muted small", role: "status", id: "jobs-status" });
  const tbody = h("tbody");
  const table = h(
    "table",
    { id: "jobs-table" },
    h("caption", { class: "visually-hidden" }, "Jobs, newest first"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Job", "State", "Method", "Pattern", "Model", "Dataset", "Progress"].map((t) => h("th", { scope: "col" }, t)),
        h("th", { scope: "col", class: "num", title: "validation accuracy, or perplexity for language models" }, "Accuracy / ppl"),
        h("th", { scope: "col", class: "num" }, "Density"),
        h("th", { scope: "col" }, "Age"),
      ),
    ),
    tbody,
  );
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });

  main.append(
    h(
      "div",
      { class: "page-head" },
      h("h1", {}, "Jobs"),
      h("div", { class: "actions" }, h("a", { href: "#/new", class: "btn" }, "New job")),
    ),
    h("section", { class: "panel", "aria-label": "Filters" }, form),
    h("section", { class: "panel", "aria-labelledby": "jobs-heading" }, h("h2", { id: "jobs-heading", class: "visually-hidden" }, "Job list"), h("div", { class: "table-wrap" }, table), status, pager),
  );

  function pageLink(text, targetCursor, onclick) {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(filters)) if (value && !(key === "limit" && value === "20")) query.set(key, value);
    if (targetCursor) query.set("cursor", targetCursor);
    return h("a", { class: "btn btn-secondary btn-small", href: `#/jobs${query.toString() ? `?${query}` : ""}`, onclick }, text);
  }

  let timer = null;
  async function load() {
    const query = new URLSearchParams({ limit: filters.limit });
    for (const key of ["status", "method", "pattern"]) if (filters[key]) query.set(key, filters[key]);
    if (cursor) query.set("cursor", cursor);
    let page;
    try {
      page = await api(`/v1/jobs?${query}`, { signal });
    } catch (exc) {
      if (signal.aborted) return;
      status.textContent = `Could not load jobs: ${exc.message}`;
      status.className = "alert alert-error";
      return;
    }
    if (signal.aborted) return;
    if (!tbody.contains(document.activeElement)) {
      replace(tbody, page.items.map(jobRow));
      if (!page.items.length) {
        tbody.append(
          h(
            "tr",
            {},
            h(
              "td",
              { colspan: "10", class: "muted" },
              filters.status || filters.method || filters.pattern ? "No jobs match these filters." : "No jobs yet. ",
              filters.status || filters.method || filters.pattern ? null : h("a", { href: "#/new" }, "Submit the first one."),
            ),
          ),
        );
      }
    }
    const active = page.items.some((job) => !TERMINAL_STATES.has(job.state));
    status.className = "muted small";
    status.textContent = `${page.items.length} job(s) on this page${active ? "; updating while jobs are active" : ""}.`;
    replace(
      pager,
      cursor ? pageLink("First page", "", () => (history.cursors = [])) : null,
      cursor ? pageLink("Newer", history.cursors[history.cursors.length - 1] || "", () => history.cursors.pop()) : null,
      page.next_cursor ? pageLink("Older", page.next_cursor, () => history.cursors.push(cursor)) : null,
    );
    window.clearTimeout(timer);
    if (active || !page.items.length) timer = window.setTimeout(load, REFRESH_MS);
  }
  signal.addEventListener("abort", () => window.clearTimeout(timer));
  await load();
}
