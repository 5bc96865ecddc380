// Uploaded datasets, dense checkpoints and Hugging Face models: upload forms with progress, and the owner's lists.

import { api, getOpenApi, upload } from "../api.js";
import { announce, fmtAge, fmtBytes, fmtDate, h, replace } from "../dom.js";

function formatsOf(openapi, path, fallback) {
  try {
    const schema = openapi.paths[path].post.requestBody.content["multipart/form-data"].schema;
    return { formats: schema.properties.format.enum || fallback, required: (schema.required || []).includes("format") };
  } catch {
    return { formats: fallback, required: true };
  }
}

function describe(kind, item) {
  const summary = item.summary || {};
  if (kind === "datasets") {
    const parts = [];
    if (summary.samples !== undefined) parts.push(`${Number(summary.samples).toLocaleString()} samples`);
    if (summary.num_classes !== undefined) parts.push(`${summary.num_classes} classes`);
    if (Array.isArray(summary.input_shape)) parts.push(`input ${summary.input_shape.join("×")}`);
    return parts.join(", ") || "—";
  }
  const parts = [];
  if (kind === "hf-models") {
    if (summary.model_type) parts.push(summary.model_type);
    if (summary.parameter_count !== undefined) parts.push(`${Number(summary.parameter_count).toLocaleString()} parameters`);
    if (Array.isArray(summary.tasks)) parts.push(`tasks: ${summary.tasks.join(", ")}`);
    if (Array.isArray(summary.stripped_config_keys) && summary.stripped_config_keys.length) {
      parts.push(`config keys stripped: ${summary.stripped_config_keys.join(", ")}`);
    }
    return parts.join(", ") || "—";
  }
  if (summary.tensor_count !== undefined) parts.push(`${summary.tensor_count} tensors`);
  if (summary.parameter_count !== undefined) parts.push(`${Number(summary.parameter_count).toLocaleString()} parameters`);
  return parts.join(", ") || "—";
}

const PREFIXES = { datasets: "dataset", checkpoints: "checkpoint", "hf-models": "model" };

function uploadSection({ kind, title, intro, formats, formatRequired, accept, signal }) {
  const prefix = PREFIXES[kind];
  const list = h("div", { id: `${kind}-list` });
  const message = h("div", { id: `${prefix}-upload-message`, role: "status" });
  const progress = h("progress", { id: `${prefix}-upload-progress`, max: "100", value: "0", "aria-label": `Upload progress of the ${prefix}`, hidden: true });
  const fileInput = h("input", { type: "file", id: `${prefix}-file`, name: "file", accept, required: true, "aria-describedby": `${prefix}-file-hint` });
  const formatSelect = h(
    "select",
    { id: `${prefix}-format`, name: "format", required: formatRequired },
    formatRequired ? h("option", { value: "" }, "Choose…") : h("option", { value: "" }, "detect from the file"),
    formats.map((format) => h("option", { value: format }, format)),
  );
  const nameInput = h("input", { type: "text", id: `${prefix}-name`, name: "name", maxlength: "200", placeholder: "default: the file name" });
  const button = h("button", { type: "submit", class: "btn" }, `Upload ${prefix}`);
  const form = h(
    "form",
    { class: "inline-form", novalidate: true, "aria-label": `Upload a ${prefix}` },
    h("div", { class: "field" }, h("label", { for: `${prefix}-file` }, "File"), fileInput),
    // Models have no format to choose: the server reads the archive's config.json.
    formats.length ? h("div", { class: "field" }, h("label", { for: `${prefix}-format` }, "Format"), formatSelect) : null,
    h("div", { class: "field" }, h("label", { for: `${prefix}-name` }, "Name (optional)"), nameInput),
    button,
  );

  async function refresh() {
    let items;
    try {
      items = (await api(`/v1/${kind}`, { signal })).items;
    } catch (exc) {
      if (!signal.aborted) replace(list, h("div", { class: "alert alert-error" }, `Could not list ${kind}: ${exc.message}`));
      return;
    }
    if (!items.length) {
      replace(list, h("p", { class: "muted" }, `No ${kind} uploaded yet.`));
      return;
    }
    replace(
      list,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { id: `${kind}-table` },
          h("caption", { class: "visually-hidden" }, `Uploaded ${kind}`),
          h(
            "thead",
            {},
            h(
              "tr",
              {},
              ["Name", "Format", "Size", "Contents", "SHA-256", "Uploaded", "ID (use in a job spec)"].map((t) =>
                h("th", { scope: "col", class: t === "Size" ? "num" : null }, t),
              ),
            ),
          ),
          h(
            "tbody",
            {},
            items.map((item) =>
              h(
                "tr",
                { dataset: { id: item.id } },
                h("th", { scope: "row" }, item.name),
                h("td", {}, item.format),
                h("td", { class: "num" }, fmtBytes(item.size)),
                h("td", { class: "small" }, describe(kind, item)),
                h("td", {}, h("code", { class: "sha", title: item.sha256 }, item.sha256)),
                h("td", { title: fmtDate(item.created_at) }, fmtAge(item.created_at)),
                h("td", {}, h("code", {}, item.id)),
              ),
            ),
          ),
        ),
      ),
    );
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(message);
    fileInput.removeAttribute("aria-invalid");
    formatSelect.removeAttribute("aria-invalid");
    const file = fileInput.files && fileInput.files[0];
    const problems = [];
    if (!file) {
      problems.push("Choose a file.");
      fileInput.setAttribute("aria-invalid", "true");
    }
    if (formatRequired && !formatSelect.value) {
      problems.push("Choose the format.");
      formatSelect.setAttribute("aria-invalid", "true");
    }
    if (problems.length) {
      replace(message, h("div", { class: "alert alert-error" }, problems.join(" ")));
      (file ? formatSelect : fileInput).focus();
      return;
    }
    const data = new FormData();
    if (formatSelect.value) data.append("format", formatSelect.value);
    if (nameInput.value.trim()) data.append("name", nameInput.value.trim());
    data.append("file", file, file.name);
    button.disabled = true;
    progress.hidden = false;
    progress.value = 0;
    try {
      const created = await upload(`/v1/${kind}`, data, (fraction) => {
        progress.value = Math.round(fraction * 100);
      });
      const text = `Uploaded ${created.name} (${created.format}, ${fmtBytes(created.size)}): id ${created.id}.`;
      replace(message, h("div", { class: "alert alert-ok" }, text));
      announce(text);
      form.reset();
      await refresh();
    } catch (exc) {
      const details = Array.isArray(exc.details) ? exc.details.map((d) => `${d.field ? `${d.field}: ` : ""}${d.message}`) : [];
      const field = Array.isArray(exc.details) && exc.details.find((d) => d.field === "format");
      if (field) formatSelect.setAttribute("aria-invalid", "true");
      replace(
        message,
        h("div", { class: "alert alert-error" }, `Upload rejected: ${exc.message}`, details.length > 1 ? h("ul", {}, details.map((d) => h("li", {}, d))) : null),
      );
    } finally {
      button.disabled = false;
      progress.hidden = true;
    }
  });

  const section = h(
    "section",
    { class: "panel", id: `${kind}-section`, "aria-labelledby": `${kind}-title` },
    h("h2", { id: `${kind}-title` }, title),
    h("p", { class: "muted small", id: `${prefix}-file-hint` }, intro),
    form,
    h("div", { class: "progress" }, progress),
    message,
    h("h3", {}, `Your ${kind}`),
    list,
  );
  return { section, refresh };
}

export async function renderData(main, { signal }) {
  main.append(h("h1", {}, "Datasets, checkpoints & models"));
  const openapi = await getOpenApi();
  if (signal.aborted) return;
  const datasetFormats = formatsOf(openapi, "/v1/datasets", ["mnist", "npz", "imagefolder", "cifar10", "cifar100"]);
  const checkpointFormats = formatsOf(openapi, "/v1/checkpoints", ["safetensors", "torch"]);
  const datasets = uploadSection({
    kind: "datasets",
    title: "Datasets",
    intro:
      "mnist: a zip or tar of IDX files; npz: arrays x and y; imagefolder: a zip or tar with one folder per class; " +
      "cifar10 / cifar100: the python-version tar.gz; text: a UTF-8 corpus (plain or JSON lines with text); " +
      "labeled-text: JSON lines or CSV with text and label; tokenizer: a tokenizer.json (use its id as dataset.tokenizer). " +
      "Files are validated before they are accepted; use the id as dataset.path.",
    formats: datasetFormats.formats,
    formatRequired: datasetFormats.required,
    accept: ".zip,.tar,.tgz,.gz,.npz,.tar.gz",
    signal,
  });
  const checkpoints = uploadSection({
    kind: "checkpoints",
    title: "Dense checkpoints",
    intro:
      "A safetensors file, or a torch state dict saved with torch.save (scanned, never unpickled). " +
      "Use the id as model.checkpoint to start from these weights.",
    formats: checkpointFormats.formats,
    formatRequired: checkpointFormats.required,
    accept: ".safetensors,.pt,.pth,.bin",
    signal,
  });
  const models = uploadSection({
    kind: "hf-models",
    title: "Hugging Face models",
    intro:
      "A .zip or .tar(.gz) of a model directory: config.json, model.safetensors (or shards with " +
      "model.safetensors.index.json) and optional tokenizer and processor files (`lbc upload model DIR` makes " +
      "the archive for you). Pickles (.bin, .pt), .pt2 programs and code are refused; nothing is run. " +
      "Use the id as model.path with model.source huggingface.",
    formats: [],
    formatRequired: false,
    accept: ".zip,.tar,.tgz,.gz,.tar.gz",
    signal,
  });
  main.append(datasets.section, checkpoints.section, models.section);
  await Promise.all([datasets.refresh(), checkpoints.refresh(), models.refresh()]);
}
