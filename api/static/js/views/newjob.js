// The new-job form, generated from the JobSpec schema of /openapi.json.

import { api, getOpenApi, randomKey } from "../api.js";
import { announce, fmtBytes, h, replace, shortId } from "../dom.js";
import { OMIT, buildSchemaForm, errorSummary, resolveRef } from "../schemaform.js";

const PATH_SOURCES = new Set(["mnist", "npz", "imagefolder", "cifar10", "cifar100", "text", "labeled-text"]);

function uploadSelect(items, noneLabel, kindLabel) {
  return (field, { id, describedBy }) => {
    const control = h(
      "select",
      { id, name: field.dotted, "aria-describedby": describedBy },
      h("option", { value: "" }, noneLabel),
      items.map((item) =>
        h("option", { value: item.id }, `${item.name} (${item.format}, ${fmtBytes(item.size)}, ${shortId(item.id)})`),
      ),
    );
    if (!items.length) control.append(h("option", { value: "", disabled: true }, `no ${kindLabel} uploaded yet`));
    return {
      control,
      read: () => control.value || OMIT,
      reset: () => {
        control.value = "";
      },
    };
  };
}

function argsHelp(models, architecture) {
  const model = models.items.find((item) => item.name === architecture);
  if (!model) return "Choose an architecture to see its arguments.";
  const args = model.args.map((arg) => `${arg.name} (default ${JSON.stringify(arg.default)})`).join(", ");
  return `${model.name}: ${model.description} Arguments: ${args || "none"}.`;
}

export async function renderNewJob(main, { signal, navigate }) {
  main.append(
    h("h1", {}, "New job"),
    h(
      "p",
      { class: "muted" },
      "Every field comes from the service's job schema with its default filled in; only what you change is sent. ",
      "Upload your own data or starting weights on the ",
      h("a", { href: "#/data" }, "datasets, checkpoints & models"),
      " page first.",
    ),
  );
  const loading = h("p", { class: "muted", role: "status" }, "Loading the job schema…");
  main.append(loading);
  const [openapi, models, datasets, checkpoints, hfModels] = await Promise.all([
    getOpenApi(),
    api("/v1/models", { signal }),
    api("/v1/datasets", { signal }),
    api("/v1/checkpoints", { signal }),
    api("/v1/hf-models", { signal }),
  ]);
  if (signal.aborted) return;
  loading.remove();

  const specSchema = resolveRef(openapi, { $ref: "#/components/schemas/JobSpec" });
  const schemaForm = buildSchemaForm(openapi, specSchema, {
    widgets: {
      "dataset.path": uploadSelect(datasets.items, "(none)", "datasets"),
      "dataset.val_path": uploadSelect(datasets.items, "(none: split off from the training data)", "datasets"),
      "model.checkpoint": uploadSelect(checkpoints.items, "(none: random initialisation)", "checkpoints"),
      "model.path": uploadSelect(hfModels.items, "(choose an uploaded model)", "models"),
      "dataset.tokenizer": uploadSelect(
        datasets.items.filter((d) => d.format === "tokenizer"),
        "(none: UTF-8 bytes)",
        "datasets",
      ),
    },
    visibleWhen: {
      // A Hugging Face model is built from its own config.json: no architecture, arguments or checkpoint.
      "model.architecture": (v) => v["model.source"] !== "huggingface",
      "model.args": (v) => v["model.source"] !== "huggingface",
      "model.checkpoint": (v) => v["model.source"] !== "huggingface",
      "model.path": (v) => v["model.source"] === "huggingface",
      "dataset.path": (v) => PATH_SOURCES.has(v["dataset.source"]),
      "dataset.val_path": (v) => PATH_SOURCES.has(v["dataset.source"]),
      "dataset.split": (v) => ["mnist", "cifar10", "cifar100"].includes(v["dataset.source"]),
      "dataset.image_size": (v) => v["dataset.source"] === "imagefolder",
      "dataset.block_size": (v) => v["dataset.source"] === "text",
      "dataset.max_length": (v) => v["dataset.source"] === "labeled-text",
      "dataset.tokenizer": (v) => ["text", "labeled-text"].includes(v["dataset.source"]),
      "dataset.synthetic": (v) => v["dataset.source"] === "synthetic",
      "sparsity.schedule": (v) => v["sparsity.method"] === "lbc",
      "sparsity.srste_lambda": (v) => v["sparsity.method"] === "srste",
      "sparsity.score_init": (v) => v["sparsity.method"] === "lbc",
      "sparsity.prior_strength": (v) => v["sparsity.method"] === "lbc" && v["sparsity.score_init"] !== "uniform",
      "sparsity.calibration_samples": (v) =>
        v["sparsity.method"] === "wanda" || (v["sparsity.method"] === "lbc" && v["sparsity.score_init"] === "wanda"),
      "train.momentum": (v) => v["train.optimizer"] !== "adamw",
      "train.nesterov": (v) => v["train.optimizer"] !== "adamw",
      "train.betas": (v) => v["train.optimizer"] === "adamw",
      "train.min_lr": (v) => v["train.lr_schedule"] === "cosine",
      "train.step_milestones": (v) => v["train.lr_schedule"] === "step",
      "train.step_gamma": (v) => v["train.lr_schedule"] === "step",
    },
  });

  // The architecture's arguments, next to the args box.
  const architecture = schemaForm.fieldByPath("model.architecture");
  const args = schemaForm.fieldByPath("model.args");
  if (architecture && args) {
    const help = h("p", { class: "hint", id: "model-args-help" });
    args.wrapper.append(help);
    args.control.setAttribute("aria-describedby", `${args.control.getAttribute("aria-describedby") || ""} model-args-help`.trim());
    const refresh = () => {
      help.textContent = argsHelp(models, architecture.control.value);
    };
    architecture.control.addEventListener("change", refresh);
    refresh();
  }

  const errors = h("div", { id: "form-errors-box" });
  const submit = h("button", { type: "submit", class: "btn", id: "submit-job" }, "Submit job");
  const preview = h("pre", { class: "json", id: "request-preview" });
  const form = h(
    "form",
    { class: "spec-form", novalidate: true, "aria-labelledby": "new-job-title" },
    h("h2", { id: "new-job-title", class: "visually-hidden" }, "Job spec"),
    errors,
    schemaForm.element,
    h("details", { class: "panel" }, h("summary", {}, "Request body that will be sent"), preview),
    h(
      "div",
      { class: "form-actions" },
      submit,
      h(
        "button",
        {
          type: "button",
          class: "btn btn-secondary",
          onclick: () => {
            schemaForm.reset();
            replace(errors);
            updatePreview();
          },
        },
        "Reset to defaults",
      ),
      h("span", { class: "muted small" }, "* required"),
    ),
  );
  main.append(form);

  let idempotencyKey = randomKey();
  function updatePreview() {
    const { body, errors: problems } = schemaForm.collect();
    preview.textContent = JSON.stringify(body, null, 2) + (problems.length ? `\n\n(${problems.length} field(s) to fix first)` : "");
  }
  form.addEventListener("input", () => {
    idempotencyKey = randomKey(); // a changed spec is a new job; an unchanged resubmit is the same one
    updatePreview();
  });
  form.addEventListener("change", updatePreview);
  updatePreview();

  function focusButton(path) {
    return h(
      "button",
      {
        type: "button",
        class: "btn btn-secondary btn-small",
        onclick: () => {
          const parts = path.split(".");
          for (let n = parts.length; n > 0; n -= 1) {
            const field = schemaForm.fieldByPath(parts.slice(0, n).join("."));
            if (field && !field.wrapper.hidden) {
              field.focusTarget.focus();
              return;
            }
          }
        },
      },
      "Go to field",
    );
  }

  function report(problems) {
    const { first } = schemaForm.showErrors(problems);
    errorSummary(errors, problems, focusButton);
    const summary = errors.querySelector("#form-errors");
    if (summary) summary.focus();
    else if (first) first.focus();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    schemaForm.clearErrors();
    replace(errors);
    const { body, errors: problems } = schemaForm.collect();
    if (problems.length) {
      report(problems);
      return;
    }
    submit.disabled = true;
    submit.textContent = "Submitting…";
    try {
      const job = await api("/v1/jobs", { method: "POST", body, headers: { "Idempotency-Key": idempotencyKey }, signal });
      announce(`Job ${job.id} submitted`);
      navigate(`#/jobs/${job.id}`);
    } catch (exc) {
      if (signal.aborted) return;
      if (exc.status === 422 && Array.isArray(exc.details)) report(exc.details);
      else {
        replace(errors, h("div", { class: "alert alert-error", role: "alert", tabindex: "-1", id: "form-errors" }, exc.message));
        errors.firstChild.focus();
      }
    } finally {
      submit.disabled = false;
      submit.textContent = "Submit job";
    }
  });
}
