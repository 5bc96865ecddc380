// The speedup report (schema lbc.speedup-report/3): summary, chart, per-layer timings, end to end,
// savings and notes; plus the report's own page and chart when the job published them.

import { apiBlob } from "../api.js";
import { barChart } from "../charts.js";
import { fmtBytes, fmtCompact, fmtNumber, fmtPercent, h, isNumber, replace } from "../dom.js";

export const REPORT_JSON = "speedup_report.json";
export const REPORT_HTML = "speedup_report.html";
export const REPORT_SVG = "speedup_chart.svg";

const ms = (timing) => (timing && isNumber(timing.median_ms) ? `${fmtNumber(timing.median_ms, 3)} ms` : "—");
const times = (x) => (isNumber(x) ? `${x.toFixed(2)}×` : "—");

function table(id, caption, headers, rows) {
  return h(
    "div",
    { class: "table-wrap" },
    h(
      "table",
      { id },
      h("caption", { class: "visually-hidden" }, caption),
      h("thead", {}, h("tr", {}, headers.map(([text, cls]) => h("th", { scope: "col", class: cls }, text)))),
      h("tbody", {}, rows),
    ),
  );
}

function configsOf(layers) {
  const seen = new Map();
  for (const layer of layers) {
    for (const m of layer.measurements || []) {
      const key = `batch ${m.batch_size}, ${m.dtype}`;
      if (!seen.has(key)) seen.set(key, { batch: m.batch_size, dtype: m.dtype });
    }
  }
  return [...seen.entries()];
}

function chartOf(report) {
  const layers = report.layers || [];
  if (!layers.length) return null;
  const names = layers.map((layer) => layer.name);
  const configs = configsOf(layers);
  const measured = layers.some((layer) => (layer.measurements || []).some((m) => isNumber(m.speedup)));
  if (measured) {
    const series = configs.slice(0, 4).map(([key, config]) => ({
      name: key,
      values: layers.map((layer) => {
        const m = (layer.measurements || []).find((x) => x.batch_size === config.batch && x.dtype === config.dtype);
        return m && isNumber(m.speedup) ? m.speedup : null;
      }),
    }));
    return barChart({
      title: "Measured speedup per layer (dense time / sparse time)",
      categories: names,
      series,
      reference: 1,
      referenceLabel: "1× (no gain)",
      xFormat: (v) => `${fmtNumber(v, 3)}×`,
      xLabel: "speedup",
    });
  }
  return barChart({
    title: "FLOPs per sample: dense vs ideal N:M (no sparse kernel measured on this device)",
    categories: names,
    series: [
      { name: "dense", values: layers.map((layer) => layer.flops_per_sample && layer.flops_per_sample.dense) },
      { name: "N:M (ideal)", values: layers.map((layer) => layer.flops_per_sample && layer.flops_per_sample.nm) },
    ],
    xFormat: fmtCompact,
    xLabel: "FLOPs per sample",
  });
}

function renderReport(report) {
  const summary = report.summary || {};
  const env = report.environment || {};
  const savings = report.savings || {};
  const end = report.end_to_end || {};
  const layerRows = (report.layers || []).flatMap((layer) => {
    const measurements = layer.measurements && layer.measurements.length ? layer.measurements : [null];
    return measurements.map((m, i) =>
      h(
        "tr",
        {},
        i === 0 ? h("th", { scope: "row", rowspan: String(measurements.length) }, h("code", {}, layer.name)) : null,
        h("td", { class: "mono" }, m && m.gemm ? `${m.gemm.m}×${m.gemm.n}×${m.gemm.k}` : "—"),
        h("td", { class: "num" }, m ? String(m.batch_size) : "—"),
        h("td", {}, m ? m.dtype : "—"),
        h("td", { class: "num" }, m ? ms(m.dense) : "—"),
        h("td", { class: "num" }, m ? ms(m.sparse) : "—"),
        h("td", { class: "num" }, m ? times(m.speedup) : "—"),
        h("td", {}, m ? m.recommendation : layer.recommendation),
        h("td", { class: "small" }, (m && m.reason) || layer.reason || ""),
        i === 0
          ? h(
              "td",
              { rowspan: String(measurements.length) },
              layer.compliance && layer.compliance.compliant ? h("span", { class: "yes" }, "yes") : h("span", { class: "no" }, "no"),
            )
          : null,
      ),
    );
  });
  const endRows = (end.measurements || []).map((m) =>
    h(
      "tr",
      {},
      h("td", { class: "num" }, String(m.batch_size)),
      h("td", {}, m.dtype),
      h("td", { class: "num" }, ms(m.dense)),
      h("td", { class: "num" }, ms(m.sparse)),
      h("td", { class: "num" }, times(m.speedup)),
      h("td", { class: "small" }, m.reason || ""),
    ),
  );
  const chart = chartOf(report);
  return h(
    "div",
    { id: "speedup-report" },
    summary.verdict ? h("p", { class: "alert alert-info", id: "speedup-verdict" }, summary.verdict) : null,
    h(
      "dl",
      { class: "grid-4" },
      [
        ["Median layer speedup", times(summary.median_layer_speedup)],
        ["End-to-end speedup", times(summary.end_to_end_speedup)],
        ["Device", `${env.device_name || env.device || "—"}${env.backend && env.backend !== "none" ? ` (${env.backend})` : ""}`],
        ["Sparse kernel on this device", env.sparse_kernels ? "yes" : "no"],
        ["FLOPs kept", fmtPercent(savings.flops_ratio)],
        ["Parameters", isNumber(savings.params_dense) ? `${(savings.params_nonzero ?? 0).toLocaleString()} of ${savings.params_dense.toLocaleString()} non-zero` : "—"],
        ["Compressed checkpoint", isNumber(savings.checkpoint_compressed_bytes) ? `${fmtBytes(savings.checkpoint_compressed_bytes)} (${fmtPercent(savings.checkpoint_ratio)} of dense)` : savings.checkpoint_note || "—"],
      ].map(([k, v]) => h("div", { class: "stat" }, h("dt", {}, k), h("dd", {}, v))),
    ),
    chart,
    h("h3", {}, "Per layer"),
    table(
      "speedup-layers",
      "Per-layer timings",
      [["Layer"], ["GEMM m×n×k"], ["Batch", "num"], ["Dtype"], ["Dense", "num"], ["Sparse", "num"], ["Speedup", "num"], ["Recommendation"], ["Why"], ["2:4 compliant"]],
      layerRows.length ? layerRows : h("tr", {}, h("td", { colspan: "10", class: "muted" }, "No layer was measured.")),
    ),
    endRows.length
      ? [h("h3", {}, "End to end"), table("speedup-e2e", "End-to-end latency", [["Batch", "num"], ["Dtype"], ["Dense", "num"], ["Sparse", "num"], ["Speedup", "num"], ["Note"]], endRows)]
      : null,
    (report.notes || []).length ? [h("h3", {}, "Notes"), h("ul", { class: "notes" }, report.notes.map((note) => h("li", {}, note)))] : null,
  );
}

export async function renderSpeedup(container, { artifacts, signal }) {
  const json = artifacts.get(REPORT_JSON);
  const html = artifacts.get(REPORT_HTML);
  const svg = artifacts.get(REPORT_SVG);
  if (!json && !html && !svg) {
    replace(container, h("p", { id: "no-speedup" }, "No speedup report for this job (benchmark disabled, or the job did not produce one)."));
    return;
  }
  const parts = [];
  if (json) {
    try {
      const report = JSON.parse(await (await apiBlob(json.url, { signal })).text());
      parts.push(renderReport(report));
    } catch (exc) {
      if (signal.aborted) return;
      parts.push(h("div", { class: "alert alert-error" }, `Could not read ${REPORT_JSON}: ${exc.message}`));
    }
  }
  if (svg) {
    try {
      const blob = await apiBlob(svg.url, { signal });
      const url = URL.createObjectURL(new Blob([blob], { type: "image/svg+xml" }));
      signal.addEventListener("abort", () => URL.revokeObjectURL(url), { once: true });
      parts.push(h("h3", {}, "Report chart"), h("img", { class: "report-chart", src: url, alt: "Speedup chart published with the report (the same numbers as the table above)" }));
    } catch (exc) {
      if (signal.aborted) return;
      parts.push(h("div", { class: "alert alert-error" }, `Could not load ${REPORT_SVG}: ${exc.message}`));
    }
  }
  if (html) {
    const holder = h("div", {});
    const button = h("button", { type: "button", class: "btn btn-secondary", id: "open-report-page", "aria-expanded": "false" }, "Show the report page");
    button.addEventListener("click", async () => {
      if (holder.firstChild) {
        replace(holder);
        button.setAttribute("aria-expanded", "false");
        button.textContent = "Show the report page";
        return;
      }
      try {
        const text = await (await apiBlob(html.url, { signal })).text();
        // Sandboxed without scripts or same-origin rights: the page can only be looked at.
        const frame = h("iframe", { class: "report-frame", title: "Speedup report page", sandbox: "" });
        frame.srcdoc = text;
        replace(holder, frame);
        button.setAttribute("aria-expanded", "true");
        button.textContent = "Hide the report page";
      } catch (exc) {
        if (!signal.aborted) replace(holder, h("div", { class: "alert alert-error" }, `Could not load ${REPORT_HTML}: ${exc.message}`));
      }
    });
    parts.push(h("h3", {}, "Report page"), h("p", {}, button), holder);
  }
  replace(container, parts);
}
