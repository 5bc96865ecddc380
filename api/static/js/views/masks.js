// The mask view: a heatmap of a chosen layer's kept positions (downsampled by the API when large).

import { api } from "../api.js";
import { fmtPercent, h, replace } from "../dom.js";

const MAX_CELLS = 128;
const LIGHT = [243, 244, 246];
const DARK = [30, 58, 138];

function drawGrid(grid) {
  const canvas = h("canvas", { id: "mask-canvas", width: String(Math.max(grid.grid_cols, 1)), height: String(Math.max(grid.grid_rows, 1)) });
  const context = canvas.getContext("2d");
  const image = context.createImageData(Math.max(grid.grid_cols, 1), Math.max(grid.grid_rows, 1));
  grid.cells.forEach((row, r) =>
    row.forEach((value, c) => {
      const i = (r * grid.grid_cols + c) * 4;
      for (let k = 0; k < 3; k += 1) image.data[i + k] = Math.round(LIGHT[k] + (DARK[k] - LIGHT[k]) * value);
      image.data[i + 3] = 255;
    }),
  );
  context.putImageData(image, 0, 0);
  const pixels = Math.max(1, Math.min(16, Math.floor(Math.min(640 / Math.max(grid.grid_cols, 1), 440 / Math.max(grid.grid_rows, 1)))));
  canvas.style.width = `${grid.grid_cols * pixels}px`;
  canvas.style.height = `${grid.grid_rows * pixels}px`;
  return canvas;
}

export function describeGrid(grid) {
  const scale =
    grid.row_scale === 1 && grid.col_scale === 1
      ? "one cell per weight (dark: kept, light: pruned)"
      : `downsampled: each cell averages ${grid.row_scale} × ${grid.col_scale} weights (darker: more kept)`;
  return (
    `${grid.layer}: weight ${grid.shape.join(" × ")} shown as ${grid.rows} rows (outputs) × ${grid.cols} columns ` +
    `(the reduction dimension) in ${grid.grid_rows} × ${grid.grid_cols} cells, ${scale}. ` +
    `Kept ${grid.kept.toLocaleString()} of ${grid.total.toLocaleString()} weights (${fmtPercent(grid.density)}).`
  );
}

export async function renderMaskView(container, { jobId, manifest, signal }) {
  let layers = [];
  try {
    layers = (await api(`/v1/jobs/${jobId}/masks`, { signal })).items;
  } catch (exc) {
    if (signal.aborted) return;
    replace(container, h("div", { class: "alert alert-error" }, `Could not read the masks: ${exc.message}`));
    return;
  }
  if (!layers.length) {
    replace(container, h("p", { class: "muted" }, "No layer has a mask."));
    return;
  }
  const density = new Map(((manifest && manifest.layers) || []).map((layer) => [layer.name, layer.density]));
  const select = h(
    "select",
    { id: "mask-layer" },
    layers.map((layer) =>
      h("option", { value: layer.name }, `${layer.name} (${layer.shape.join("×")}${density.has(layer.name) ? `, ${fmtPercent(density.get(layer.name))} kept` : ""})`),
    ),
  );
  const output = h("div", { id: "mask-output", "aria-live": "polite" });
  const form = h(
    "form",
    { class: "inline-form" },
    h("div", { class: "field" }, h("label", { for: "mask-layer" }, "Layer"), select),
    h("button", { type: "submit", class: "btn" }, "Show mask"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(output, h("p", { class: "muted" }, "Loading…"));
    try {
      const grid = await api(`/v1/jobs/${jobId}/masks/${encodeURIComponent(select.value)}?max_cells=${MAX_CELLS}`, { signal });
      const description = describeGrid(grid);
      const canvas = drawGrid(grid);
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", `Mask heatmap of ${grid.layer}`);
      replace(
        output,
        h(
          "div",
          { class: "mask-view" },
          h("figure", { class: "mask-figure" }, canvas),
          h(
            "div",
            {},
            h("p", { id: "mask-description" }, description),
            h("div", { class: "mask-legend" }, "pruned", h("span", { class: "ramp", "aria-hidden": "true" }), "kept"),
            h("p", { class: "muted small" }, "Rows are output channels; columns run along the dimension the N:M groups are taken from (input features, or input channels × kernel positions for convolutions)."),
          ),
        ),
      );
    } catch (exc) {
      if (!signal.aborted) replace(output, h("div", { class: "alert alert-error" }, `Could not load the mask: ${exc.message}`));
    }
  });
  replace(container, h("p", { class: "muted small" }, "Choose a layer to see which weights its mask keeps."), form, output);
}
