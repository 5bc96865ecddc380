// One job, live: the SSE stream drives the state, progress, charts and log; the outputs (per-layer
// table, mask view, speedup report, artifacts) load once the job has succeeded.

import { api, apiBlob, streamEvents } from "../api.js";
import { lineChart } from "../charts.js";
import {
  TERMINAL_STATES,
  announce,
  fmtBytes,
  fmtDate,
  fmtDuration,
  fmtNumber,
  fmtMetric,
  fmtPercent,
  h,
  isNumber,
  primaryMetric,
  jobFraction,
  replace,
  shortId,
  stateBadge,
  warningBadges,
} from "../dom.js";
import { renderMaskView } from "./masks.js";
import { renderSpeedup } from "./speedup.js";

const MAX_LOG_LINES = 400;
const MAX_STEP_POINTS = 4000;
const LAYER_ROWS_SHOWN = 40; // layer rows shown before "Show all" (transformers have hundreds)

function section(id, title, ...children) {
  return h("section", { class: "panel", id, "aria-labelledby": `${id}-title` }, h("h2", { id: `${id}-title` }, title), ...children);
}

function stat(label, id) {
  return h("div", { class: "stat" }, h("dt", { id: `${id}-label` }, label), h("dd", { id }, "—"));
}

export async function renderJob(main, { id, signal, navigate }) {
  let job;
  try {
    job = await api(`/v1/jobs/${encodeURIComponent(id)}`, { signal });
  } catch (exc) {
    if (signal.aborted) return;
    if (exc.status === 404 || exc.status === 422) {
      main.append(
        h("h1", { tabindex: "-1" }, "Job not found"),
        h("div", { class: "alert alert-error", role: "alert", id: "job-error" }, `${exc.message}. It does not exist, or it belongs to another owner.`),
        h("p", {}, h("a", { href: "#/jobs" }, "Back to your jobs")),
      );
      return;
    }
    throw exc;
  }
  if (signal.aborted) return;

  // -- what the page knows, fed by the event stream --------------------------------------------------
  const live = {
    steps: new Map(), // global_step -> {x, loss, lr}
    epochs: new Map(), // epoch -> metrics record
    logs: [],
    lastProgress: job.progress && Object.keys(job.progress).length ? job.progress : null,
    rate: null, // {f0, t0} of the attempt's first progress report (server time)
    lastProgressAt: null, // {f, t, seen}: server time and client time of the latest report
    attempt: job.attempt,
  };
  let outputsLoaded = false;
  let cancelRequested = false;
  let trainedOn = null; // the device the worker resolved, from the "training" phase event

  // -- layout ----------------------------------------------------------------------------------------
  const title = job.name || `Job ${shortId(job.id)}`;
  const badgeSlot = h("span", { id: "job-state", "aria-live": "polite" }, stateBadge(job.state), " ", warningBadges(job));
  const connection = h("span", { class: "live", id: "stream-status", dataset: { status: "connecting" } }, "connecting…");
  const cancelButton = h("button", { type: "button", class: "btn btn-danger", id: "cancel-job" }, "Cancel job");
  const retryButton = h("button", { type: "button", class: "btn btn-secondary", id: "retry-job" }, "Retry job");
  const actionMessage = h("div", { id: "action-message", role: "status" });
  const errorBox = h("div", { id: "job-failure", role: "alert" });
  // A succeeded job whose model is useless (did_not_learn): in plain sight above everything else.
  const warningBox = h("div", { id: "job-warnings", role: "alert" });
  const meta = h("dl", { class: "meta" });

  const stats = h(
    "dl",
    { class: "grid-4" },
    stat("Phase", "stat-phase"),
    stat("Epoch", "stat-epoch"),
    stat("Step", "stat-step"),
    stat("Time left (estimate)", "stat-eta"),
    stat("Loss", "stat-loss"),
    stat("Learning rate", "stat-lr"),
    stat("Validation accuracy", "stat-accuracy"),
    stat("Alive combinations / group", "stat-alive"),
    stat("Mask density (sparsified layers)", "stat-density"),
    stat("Model density (final)", "stat-model-density"),
    stat("Attempt", "stat-attempt"),
    stat("Duration", "stat-duration"),
  );
  const progressEl = h("progress", { id: "job-progress", max: "100", value: "0", "aria-label": "Training progress" });
  const progressText = h("span", { id: "job-progress-text" }, "0%");
  const charts = h("div", { class: "grid-2", id: "charts" });
  const layers = h("div", { id: "layers" }, h("p", { class: "muted" }, "The per-layer table appears when the job has succeeded."));
  const masks = h("div", { id: "masks" }, h("p", { class: "muted" }, "Masks are exported when the job has succeeded."));
  const speedup = h("div", { id: "speedup" }, h("p", { class: "muted" }, "No speedup report for this job yet: it is measured after training when benchmark.enabled is set."));
  const artifacts = h("div", { id: "artifacts" }, h("p", { class: "muted" }, "No artifacts yet."));
  const logBox = h("pre", { class: "log", id: "log-tail", tabindex: "0", "aria-label": "Job log, latest lines" }, "No log lines yet.");
  const specBox = h("pre", { class: "json" }, JSON.stringify(job.spec, null, 2));

  main.append(
    h(
      "div",
      { class: "page-head" },
      h(
        "div",
        {},
        h("p", { class: "small" }, h("a", { href: "#/jobs" }, "← All jobs")),
        h("h1", {}, title, " ", badgeSlot),
        meta,
      ),
      h("div", { class: "actions" }, connection, cancelButton, retryButton),
    ),
    actionMessage,
    errorBox,
    warningBox,
    section(
      "progress",
      "Progress",
      h("div", { class: "progress" }, progressEl, progressText),
      stats,
    ),
    section("charts-section", "Training curves", charts),
    section("layers-section", "Layers", layers),
    section("masks-section", "Mask view", masks),
    section("speedup-section", "Speedup report", speedup),
    section("artifacts-section", "Artifacts", artifacts),
    section("logs-section", "Log (latest lines)", logBox),
    section("spec-section", "Job spec", h("details", {}, h("summary", {}, "Show the validated spec (every default filled in)"), specBox)),
  );

  function renderMeta() {
    const items = [
      ["ID", h("code", {}, job.id)],
      ["Method", job.method],
      ["Pattern", job.pattern],
      ["Model", job.architecture],
      ["Dataset", job.dataset_source ? `${job.dataset_source}${job.dataset_id ? ` (upload ${shortId(job.dataset_id)})` : ""}` : "—"],
      ["Device", deviceLabel()],
      ["Submitted", fmtDate(job.created_at)],
    ];
    replace(meta, items.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
  }

  // Where the job runs, which is what a user cares about; the queue only says which pool took it (an
  // "auto" job waits in the GPU queue even on a machine whose worker has no GPU and trains on the CPU).
  function deviceLabel() {
    const ran = (job.result && job.result.device) || trainedOn;
    if (ran) return ran;
    const wanted = job.spec && job.spec.train && job.spec.train.device;
    return wanted === "auto" || !wanted ? "auto (CUDA if the worker has it, else CPU)" : `${wanted} (requested)`;
  }

  function setText(elId, text) {
    const el = main.querySelector(`#${elId}`);
    if (el && el.textContent !== text) el.textContent = text;
  }

  function eta() {
    if (job.state !== "running" || !live.rate || !live.lastProgressAt) return null;
    const { f, t, seen } = live.lastProgressAt;
    const df = f - live.rate.f0;
    const dt = (t - live.rate.t0) / 1000;
    if (df <= 0 || dt <= 0) return null;
    const remaining = ((1 - f) * dt) / df - (Date.now() - seen) / 1000;
    return Math.max(0, remaining);
  }

  function renderState() {
    replace(badgeSlot, stateBadge(job.state), " ", warningBadges(job));
    // The API says what the job's state allows (jobs/states.py); anything else could only answer 409.
    const actions = job.actions || [];
    cancelButton.hidden = !actions.includes("cancel");
    retryButton.hidden = !actions.includes("retry");
    cancelButton.disabled = retryButton.disabled = false;
    const fraction = jobFraction(job);
    progressEl.value = Math.round(fraction * 100);
    progressText.textContent = `${Math.round(fraction * 100)}%`;
    const p = live.lastProgress || {};
    const records = [...live.epochs.values()].sort((a, b) => a.epoch - b.epoch);
    const last = records[records.length - 1] || {};
    const epochs = (job.spec && job.spec.train && job.spec.train.epochs) || p.epochs;
    // The latest of the two reports wins: a step report inside an epoch, or the epoch's end.
    const stepAt = isNumber(p.epoch) && isNumber(p.step) ? p.epoch - 1 + p.step / Math.max(p.steps_per_epoch || 1, 1) : -1;
    const fromSteps = stepAt > (isNumber(last.epoch) ? last.epoch : -1);
    setText("stat-phase", job.state === "running" || job.state === "cancelling" ? job.phase || job.state : job.state);
    const epochNow = fromSteps ? p.epoch : last.epoch;
    setText("stat-epoch", isNumber(epochNow) ? `${epochNow} / ${epochs ?? "?"}` : "—");
    setText("stat-step", fromSteps && isNumber(p.step) ? `${p.step} / ${p.steps_per_epoch ?? "?"}` : "—");
    const remaining = eta();
    setText("stat-eta", TERMINAL_STATES.has(job.state) ? "—" : remaining === null ? "estimating…" : fmtDuration(remaining));
    setText("stat-loss", fmtNumber(fromSteps && isNumber(p.loss) ? p.loss : last.train_loss ?? p.loss));
    setText("stat-lr", fmtNumber(fromSteps && isNumber(p.lr) ? p.lr : last.lr ?? p.lr));
    const metric = primaryMetric(job.result || (isNumber(last.val_perplexity) ? { primary_metric: { name: "val_perplexity" } } : null));
    const value = (job.result && job.result[metric]) ?? last[metric];
    setText("stat-accuracy-label", metric === "val_perplexity" ? "Validation perplexity" : "Validation accuracy");
    setText("stat-accuracy", fmtMetric(metric, value, 2));
    setText("stat-alive", isNumber(last.alive_per_group) ? String(last.alive_per_group) : "—");
    setText("stat-density", fmtPercent(last.mask_density));
    setText("stat-model-density", fmtPercent(job.result && job.result.density));
    setText("stat-attempt", `${job.attempt} of ${job.max_attempts}`);
    const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
    setText("stat-duration", job.started_at ? fmtDuration((end - Date.parse(job.started_at)) / 1000) : "—");
    if ((job.state === "failed" || job.error_message) && job.state !== "succeeded") {
      replace(errorBox, h("div", { class: "alert alert-error" }, h("strong", {}, job.error_type || "error"), ": ", job.error_message || "the job failed"));
    } else {
      replace(errorBox);
    }
    replace(
      warningBox,
      (job.warnings || []).map((w) =>
        h("div", { class: "alert alert-warning", dataset: { warning: w.code } }, h("strong", {}, "Warning: ", w.code.replaceAll("_", " ")), " — ", w.message),
      ),
    );
  }

  function renderCharts() {
    const steps = [...live.steps.values()].sort((a, b) => a.x - b.x);
    const records = [...live.epochs.values()].sort((a, b) => a.epoch - b.epoch);
    const per = (key) => records.filter((r) => isNumber(r[key])).map((r) => [r.epoch, r[key]]);
    replace(
      charts,
      lineChart({
        title: "Loss",
        series: [
          { name: "train loss (live, per step)", points: steps.filter((p) => isNumber(p.loss)).map((p) => [p.x, p.loss]), width: 1.2 },
          { name: "train loss (epoch)", points: per("train_loss"), markers: true },
          { name: "validation loss", points: per("val_loss"), markers: true },
        ],
        yMin: 0,
      }),
      // A language model reports perplexity (lower is better) where a classifier reports accuracy.
      per("val_perplexity").length
        ? lineChart({
            title: "Perplexity",
            series: [
              { name: "train perplexity", points: per("train_perplexity"), markers: true },
              { name: "validation perplexity", points: per("val_perplexity"), markers: true },
            ],
            yMin: 0,
            empty: "Perplexity is reported at the end of each epoch",
          })
        : lineChart({
            title: "Accuracy",
            series: [
              { name: "train accuracy", points: per("train_accuracy"), markers: true },
              { name: "validation accuracy", points: per("val_accuracy"), markers: true },
            ],
            yMin: 0,
            yMax: 1,
            yFormat: (v) => fmtPercent(v, 0),
            empty: "Accuracy is reported at the end of each epoch",
          }),
      lineChart({
        title: "Learning rate",
        series: [
          { name: "lr (per step)", points: steps.filter((p) => isNumber(p.lr)).map((p) => [p.x, p.lr]), width: 1.5 },
          { name: "lr (end of epoch)", points: per("lr"), markers: true },
        ],
        yMin: 0,
      }),
      lineChart({
        title: "Alive combinations per group",
        series: [{ name: "alive combinations / group", points: per("alive_per_group"), markers: true }],
        yMin: 0,
        yFormat: (v) => fmtNumber(v, 3),
        empty: job.method === "lbc" ? "Reported at the end of each epoch" : `Not reported by ${job.method} (LBC only)`,
      }),
    );
  }

  function renderLogs() {
    const atBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 24;
    logBox.textContent = live.logs.length ? live.logs.join("\n") : "No log lines yet.";
    if (atBottom) logBox.scrollTop = logBox.scrollHeight;
  }

  let pending = null;
  function update() {
    if (pending) return;
    pending = window.setTimeout(() => {
      pending = null;
      if (signal.aborted) return;
      renderState();
      renderCharts();
      renderLogs();
    }, 120);
  }

  // -- outputs ---------------------------------------------------------------------------------------
  async function loadOutputs() {
    if (outputsLoaded) return;
    outputsLoaded = true;
    let items = [];
    try {
      items = (await api(`/v1/jobs/${job.id}/artifacts`, { signal })).items;
    } catch (exc) {
      if (signal.aborted) return;
      replace(artifacts, h("div", { class: "alert alert-error" }, `Could not list artifacts: ${exc.message}`));
      return;
    }
    renderArtifacts(items);
    const byName = new Map(items.map((a) => [a.name, a]));
    let manifest = null;
    if (byName.has("manifest.json")) {
      try {
        manifest = JSON.parse(await (await apiBlob(byName.get("manifest.json").url, { signal })).text());
      } catch (exc) {
        if (signal.aborted) return;
        replace(layers, h("div", { class: "alert alert-error" }, `Could not read the manifest: ${exc.message}`));
      }
    }
    if (manifest) renderLayers(manifest);
    else if (job.state === "succeeded") replace(layers, h("p", { class: "muted" }, "This job has no manifest."));
    if (byName.has("masks.safetensors")) renderMaskView(masks, { jobId: job.id, manifest, signal });
    else replace(masks, h("p", { class: "muted" }, "This job has no masks artifact."));
    renderSpeedup(speedup, { artifacts: byName, signal });
  }

  function renderLayers(manifest) {
    const rows = (manifest.layers || []).map((layer) =>
      h(
        "tr",
        { dataset: { layer: layer.name } },
        h("th", { scope: "row" }, h("code", {}, layer.name)),
        h("td", {}, layer.kind || "—"),
        h("td", { class: "mono" }, Array.isArray(layer.shape) ? layer.shape.join(" × ") : "—"),
        h("td", {}, layer.layout ? `${layer.group_direction || "—"} (${layer.layout})` : layer.group_direction || "—"),
        h("td", { class: "num" }, fmtPercent(layer.density)),
        h("td", { class: "num" }, isNumber(layer.nonzeros) ? layer.nonzeros.toLocaleString() : "—"),
        h("td", {}, layer.verified_nm ? h("span", { class: "yes" }, "✓ yes") : h("span", { class: "no" }, "✗ no")),
        h("td", { class: "num" }, isNumber(layer.violating_groups) ? String(layer.violating_groups) : "—"),
      ),
    );
    const skipped = (manifest.skipped || []).map((item) =>
      typeof item === "string"
        ? h("li", {}, item)
        : Array.isArray(item)
          ? h("li", {}, h("code", {}, String(item[0])), `: ${item.slice(1).join(" ")}`)
          : h("li", {}, h("code", {}, item.name || "?"), `: ${item.reason || JSON.stringify(item)}`),
    );
    const totals = manifest.totals || {};
    const pattern = manifest.pattern || {};
    const body = h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: "8", class: "muted" }, "No layer was sparsified.")));
    const controls = rows.length > LAYER_ROWS_SHOWN ? layerTableControls(rows) : null;
    replace(
      layers,
      h(
        "p",
        {},
        `Pattern ${pattern.text || job.pattern} (${pattern.semantics || "n of every m kept"}). `,
        `Overall density ${fmtPercent(totals.overall_density)}; `,
        `${isNumber(totals.sparsified_nonzeros) ? totals.sparsified_nonzeros.toLocaleString() : "—"} of `,
        `${isNumber(totals.sparsified_params) ? totals.sparsified_params.toLocaleString() : "—"} weights kept in the sparsified layers. `,
        manifest.verified ? h("span", { class: "yes" }, "Every layer verified N:M.") : h("span", { class: "no" }, "Not every layer is verified N:M."),
      ),
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "layers-table" },
          h("caption", { class: "visually-hidden" }, "Sparsified layers"),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Layer"),
              h("th", { scope: "col" }, "Kind"),
              h("th", { scope: "col" }, "Shape"),
              h("th", { scope: "col" }, "Groups along"),
              h("th", { scope: "col", class: "num" }, "Density"),
              h("th", { scope: "col", class: "num" }, "Non-zeros"),
              h("th", { scope: "col" }, "Verified N:M"),
              h("th", { scope: "col", class: "num" }, "Violating groups"),
            ),
          ),
          body,
        ),
      ),
      skipped.length ? h("div", {}, h("h3", {}, "Kept dense"), h("ul", {}, skipped)) : null,
    );
    if (controls) layers.querySelector(".table-wrap").before(controls);
  }

  // A transformer has hundreds of sparsified layers: show the first few, with a filter by name (plain text
  // or shell-style * and ?) and a toggle for the whole table.
  function layerTableControls(rows) {
    let showAll = false;
    const count = h("span", { class: "muted small", role: "status" });
    const filter = h("input", {
      type: "search",
      id: "layers-filter",
      placeholder: "Filter layers: mlp, *.q_proj, layers.1?.*",
      "aria-label": "Filter layers by name",
      oninput: () => apply(),
    });
    const toggle = h("button", { type: "button", class: "btn btn-small", id: "layers-toggle", onclick: () => {
      showAll = !showAll;
      apply();
    } });
    function apply() {
      const text = filter.value.trim();
      const pattern = text.includes("*") || text.includes("?")
        ? new RegExp(`^${text.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, ".*").replace(/\?/g, ".")}$`)
        : null;
      const matching = rows.filter((row) => (pattern ? pattern.test(row.dataset.layer) : row.dataset.layer.includes(text)));
      const limit = showAll || text ? Infinity : LAYER_ROWS_SHOWN;
      for (const row of rows) row.hidden = true;
      matching.slice(0, limit).forEach((row) => { row.hidden = false; });
      const shown = Math.min(matching.length, limit);
      count.textContent = `Showing ${shown} of ${rows.length} layers${text ? ` (${matching.length} match)` : ""}.`;
      toggle.textContent = showAll ? `Show the first ${LAYER_ROWS_SHOWN}` : `Show all ${rows.length}`;
      toggle.hidden = Boolean(text);
    }
    apply();
    return h("div", { class: "layers-controls" }, filter, " ", toggle, " ", count);
  }

  function renderArtifacts(items) {
    if (!items.length) {
      replace(artifacts, h("p", { class: "muted" }, job.state === "succeeded" ? "This job has no artifacts." : "No artifacts yet."));
      return;
    }
    const message = h("p", { role: "status", class: "small" });
    replace(
      artifacts,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: "artifacts-table" },
          h("caption", { class: "visually-hidden" }, "Artifacts"),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              h("th", { scope: "col" }, "Name"),
              h("th", { scope: "col", class: "num" }, "Size"),
              h("th", { scope: "col" }, "SHA-256"),
              h("th", { scope: "col" }, "Type"),
              h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
            ),
          ),
          h(
            "tbody",
            {},
            items.map((item) =>
              h(
                "tr",
                { dataset: { artifact: item.name } },
                h("th", { scope: "row" }, h("code", {}, item.name)),
                h("td", { class: "num", title: `${item.size} bytes` }, fmtBytes(item.size)),
                h("td", {}, h("code", { class: "sha", title: item.sha256, dataset: { sha256: item.sha256 } }, item.sha256)),
                h("td", { class: "small" }, item.content_type),
                h(
                  "td",
                  {},
                  h(
                    "button",
                    {
                      type: "button",
                      class: "btn btn-secondary btn-small",
                      "aria-label": `Download ${item.name}`,
                      onclick: (event) => download(item, event.currentTarget, message),
                    },
                    "Download",
                  ),
                ),
              ),
            ),
          ),
        ),
      ),
      message,
    );
  }

  async function download(item, button, message) {
    button.disabled = true;
    message.textContent = `Downloading ${item.name}…`;
    try {
      const blob = await apiBlob(item.url, { signal });
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: item.name.split("/").pop(), hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60000);
      message.textContent = `Downloaded ${item.name} (${fmtBytes(blob.size)}).`;
    } catch (exc) {
      if (!signal.aborted) message.textContent = `Download failed: ${exc.message}`;
    } finally {
      button.disabled = false;
    }
  }

  // -- actions ---------------------------------------------------------------------------------------
  async function act(action, button) {
    button.disabled = true;
    replace(actionMessage);
    try {
      job = await api(`/v1/jobs/${job.id}/${action}`, { method: "POST", signal });
      if (action === "cancel") cancelRequested = true;
      const text = action === "cancel" ? (job.state === "cancelled" ? "Job cancelled." : "Cancel requested; the job stops at its next step.") : "Job queued again.";
      replace(actionMessage, h("div", { class: "alert alert-ok" }, text));
      announce(text);
      if (action === "retry") {
        navigate(`#/jobs/${job.id}`); // a fresh page: a new attempt, a new stream
        return;
      }
      renderState();
    } catch (exc) {
      if (signal.aborted) return;
      replace(actionMessage, h("div", { class: "alert alert-error" }, exc.message));
      renderState();
    }
  }
  cancelButton.addEventListener("click", () => act("cancel", cancelButton));
  retryButton.addEventListener("click", () => act("retry", retryButton));

  // -- the stream ------------------------------------------------------------------------------------
  async function refreshJob() {
    try {
      job = await api(`/v1/jobs/${job.id}`, { signal });
    } catch {
      return;
    }
    renderMeta();
    update();
    if (job.state === "succeeded" || TERMINAL_STATES.has(job.state)) await loadOutputs();
  }

  function onEvent({ event, data }) {
    const payload = (data && data.data) || {};
    const attempt = data && data.attempt;
    const at = data && data.created_at ? Date.parse(data.created_at) : Date.now();
    if (event === "state") {
      if (payload.state && payload.state !== job.state) {
        job.state = payload.state;
        job.actions = []; // unknown until the API says what the new state allows
        if (!TERMINAL_STATES.has(payload.state)) refreshJob();
      }
      if (payload.state === "running") {
        if (isNumber(attempt)) job.attempt = Math.max(job.attempt, attempt);
        if (!job.started_at && data.created_at) job.started_at = data.created_at;
        live.rate = null;
      }
      update();
      if (payload.state === "cancelled" && cancelRequested) {
        replace(actionMessage, h("div", { class: "alert alert-ok" }, "Job cancelled."));
        announce("Job cancelled.");
      }
      if (TERMINAL_STATES.has(payload.state)) {
        refreshJob();
        return true;
      }
    } else if (event === "phase") {
      job.phase = payload.phase || job.phase;
      if (payload.phase === "training" && payload.device && payload.device !== trainedOn) {
        trainedOn = String(payload.device);
        renderMeta();
      }
      update();
    } else if (event === "progress") {
      live.lastProgress = payload;
      job.progress = payload;
      if (isNumber(payload.fraction)) {
        if (!live.rate || attempt !== live.attempt) live.rate = { f0: payload.fraction, t0: at };
        live.attempt = attempt;
        live.lastProgressAt = { f: payload.fraction, t: at, seen: Date.now() };
      }
      if (isNumber(payload.epoch) && isNumber(payload.step)) {
        const x = payload.epoch - 1 + payload.step / Math.max(payload.steps_per_epoch || 1, 1);
        live.steps.set(payload.global_step ?? x, { x, loss: payload.loss, lr: payload.lr });
        if (live.steps.size > MAX_STEP_POINTS) live.steps.delete(live.steps.keys().next().value);
      }
      update();
    } else if (event === "metrics") {
      if (isNumber(payload.epoch)) live.epochs.set(payload.epoch, payload);
      update();
    } else if (event === "log") {
      const lines = Array.isArray(payload.lines) ? payload.lines : [payload.message ?? payload.line ?? JSON.stringify(payload)];
      live.logs.push(...lines.map(String));
      if (live.logs.length > MAX_LOG_LINES) live.logs.splice(0, live.logs.length - MAX_LOG_LINES);
      update();
    }
    return false;
  }

  const STATUS_TEXT = { connecting: "connecting…", live: "● live", reconnecting: "reconnecting…", ended: "final", error: "stream error" };
  function onStatus(status, detail) {
    connection.dataset.status = status;
    connection.textContent = STATUS_TEXT[status] || status;
    if (status === "error" && detail) replace(actionMessage, h("div", { class: "alert alert-error" }, `Live updates stopped: ${detail.message}`));
  }

  renderMeta();
  renderState();
  renderCharts();
  const ticker = window.setInterval(() => {
    if (job.state === "running") renderState();
  }, 1000);
  signal.addEventListener("abort", () => {
    window.clearInterval(ticker);
    window.clearTimeout(pending);
  });
  streamEvents(`/v1/jobs/${job.id}/events`, { onEvent, onStatus, signal });
  if (TERMINAL_STATES.has(job.state)) loadOutputs();
}
