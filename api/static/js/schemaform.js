// A form generated from a JSON Schema (the JobSpec in /openapi.json): one input per field, defaults
// prefilled, client-side checks from the schema's constraints, and server field messages shown next
// to the fields they name.

import { h, replace } from "./dom.js";

export const OMIT = Symbol("omit");

const LABELS = {
  lr: "Learning rate",
  min_lr: "Minimum learning rate",
  n: "N (weights kept per group)",
  m: "M (group size)",
  t_i: "Removal start t_i (epoch)",
  t_f: "Removal end t_f (epoch)",
  srste_lambda: "SR-STE λ",
  score_init: "LBC score start",
  prior_strength: "Score prior strength",
  calibration_samples: "Calibration samples",
  time_limit_s: "Time limit (seconds)",
  val_fraction: "Validation fraction",
  val_size: "Validation size",
  val_path: "Validation dataset",
  path: "Dataset",
  args: "Architecture arguments (JSON)",
  checkpoint: "Dense starting checkpoint",
  hflip: "Horizontal flips",
  betas: "AdamW betas",
  grad_clip_norm: "Gradient clip norm",
};

const SECTION_TITLES = {
  model: "Model",
  dataset: "Dataset",
  sparsity: "Sparsity",
  train: "Training",
  benchmark: "Speedup benchmark",
  limits: "Limits",
  schedule: "LBC removal schedule",
  layers: "Layers to sparsify",
  synthetic: "Synthetic data",
};

export function humanize(key) {
  if (LABELS[key]) return LABELS[key];
  const text = key.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

export function resolveRef(root, schema) {
  let current = schema;
  for (let guard = 0; current && current.$ref && guard < 20; guard += 1) {
    const name = current.$ref.split("/").pop();
    const target = (root.components && root.components.schemas && root.components.schemas[name]) || {};
    const { $ref, ...rest } = current;
    current = { ...target, ...rest };
  }
  return current || {};
}

/** {schema, nullable}: `anyOf: [X, {type: null}]` unwrapped to X (keeping default/description). */
export function unwrap(root, schema) {
  const resolved = resolveRef(root, schema);
  if (!resolved.anyOf) return { schema: resolved, nullable: false };
  const options = resolved.anyOf.map((option) => resolveRef(root, option));
  const nonNull = options.filter((option) => option.type !== "null");
  const nullable = nonNull.length < options.length;
  const { anyOf, ...outer } = resolved;
  if (nonNull.length === 1) return { schema: { ...nonNull[0], ...outer }, nullable };
  return { schema: { ...outer, type: "string" }, nullable };
}

function kindOf(schema) {
  if (schema.enum) return "enum";
  if (schema.type === "boolean") return "boolean";
  if (schema.type === "integer" || schema.type === "number") return "number";
  if (schema.type === "array") return "array";
  if (schema.type === "object" && schema.properties) return "object";
  if (schema.type === "object") return "json";
  return "text";
}

function fieldId(path) {
  return `f-${path.join("-").replace(/[^A-Za-z0-9_-]/g, "_")}`;
}

function checkNumber(schema, value, label) {
  if (!Number.isFinite(value)) return `${label} must be a number`;
  if (schema.type === "integer" && !Number.isInteger(value)) return `${label} must be a whole number`;
  if (schema.minimum !== undefined && value < schema.minimum) return `${label} must be at least ${schema.minimum}`;
  if (schema.maximum !== undefined && value > schema.maximum) return `${label} must be at most ${schema.maximum}`;
  if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) return `${label} must be greater than ${schema.exclusiveMinimum}`;
  if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) return `${label} must be less than ${schema.exclusiveMaximum}`;
  return "";
}

function checkText(schema, value, label) {
  if (schema.minLength !== undefined && value.length < schema.minLength) return `${label} must have at least ${schema.minLength} character(s)`;
  if (schema.maxLength !== undefined && value.length > schema.maxLength) return `${label} must have at most ${schema.maxLength} characters`;
  if (schema.pattern) {
    let re = null;
    try {
      re = new RegExp(schema.pattern);
    } catch {
      re = null;
    }
    if (re && !re.test(value)) return `${label} does not have the expected form (${schema.pattern})`;
  }
  return "";
}

const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

/**
 * Build the form. options.widgets maps a dotted path to a function(field) returning a custom control
 * ({control, read}), options.visibleWhen maps a dotted path to a predicate over the form's values.
 */
export function buildSchemaForm(root, rootSchema, options = {}) {
  const fields = [];
  const fieldsets = new Map();
  const widgets = options.widgets || {};
  const visibleWhen = options.visibleWhen || {};

  function makeField(path, schema, nullable, required) {
    const key = path[path.length - 1];
    const dotted = path.join(".");
    const id = fieldId(path);
    const label = humanize(key);
    const kind = kindOf(schema);
    const hintId = `${id}-hint`;
    const errorId = `${id}-error`;
    const describedBy = `${schema.description ? hintId : ""} ${errorId}`.trim();
    const error = h("p", { class: "field-error", id: errorId });
    const hint = schema.description ? h("p", { class: "hint", id: hintId }, schema.description) : null;
    const field = { path, dotted, id, label, kind, schema, nullable, required, error };
    const hasDefault = Object.prototype.hasOwnProperty.call(schema, "default");
    field.default = hasDefault ? schema.default : undefined;
    let control;
    const custom = widgets[dotted];
    if (custom) {
      const made = custom(field, { id, describedBy });
      control = made.control;
      field.read = made.read;
      field.reset = made.reset || (() => {});
      field.focusTarget = made.focusTarget || control;
    } else if (kind === "enum") {
      const placeholder = !hasDefault || nullable ? [h("option", { value: "" }, required ? "Choose…" : "(not set)")] : [];
      control = h(
        "select",
        { id, name: dotted, "aria-describedby": describedBy, required },
        placeholder,
        schema.enum.map((value) => h("option", { value: String(value), selected: hasDefault && value === schema.default }, String(value))),
      );
      field.read = () => {
        if (!control.value) return required ? { error: `${label} is required` } : OMIT;
        return control.value;
      };
      field.reset = () => {
        control.value = hasDefault && schema.default !== null ? String(schema.default) : "";
      };
    } else if (kind === "boolean") {
      control = h("input", { type: "checkbox", id, name: dotted, "aria-describedby": describedBy, checked: Boolean(schema.default) });
      field.read = () => control.checked;
      field.reset = () => {
        control.checked = Boolean(schema.default);
      };
    } else if (kind === "number") {
      control = h("input", {
        type: "number",
        id,
        name: dotted,
        inputmode: schema.type === "integer" ? "numeric" : "decimal",
        step: schema.type === "integer" ? "1" : "any",
        min: schema.minimum ?? schema.exclusiveMinimum,
        max: schema.maximum ?? schema.exclusiveMaximum,
        value: hasDefault && schema.default !== null ? String(schema.default) : "",
        placeholder: !hasDefault || schema.default === null ? (schema.examples ? `e.g. ${schema.examples[0]}` : "not set") : null,
        "aria-describedby": describedBy,
        required,
      });
      field.read = () => {
        const raw = control.value.trim();
        if (raw === "") {
          if (control.validity && control.validity.badInput) return { error: `${label} must be a number` };
          return required ? { error: `${label} is required` } : OMIT;
        }
        const value = Number(raw);
        const problem = checkNumber(schema, value, label);
        return problem ? { error: problem } : value;
      };
      field.reset = () => {
        control.value = hasDefault && schema.default !== null ? String(schema.default) : "";
      };
    } else if (kind === "array") {
      const items = resolveRef(root, schema.items || {});
      const numeric = items.type === "integer" || items.type === "number";
      control = h("input", {
        type: "text",
        id,
        name: dotted,
        value: Array.isArray(schema.default) ? schema.default.join(", ") : "",
        placeholder: schema.examples ? schema.examples[0].join(", ") : "comma-separated",
        "aria-describedby": describedBy,
      });
      field.read = () => {
        const raw = control.value.trim();
        if (!raw) return OMIT;
        const parts = raw.split(",").map((part) => part.trim()).filter(Boolean);
        const values = [];
        for (const part of parts) {
          if (numeric) {
            const value = Number(part);
            const problem = checkNumber(items, value, `each value of ${label}`);
            if (problem) return { error: `${problem} (got ${part})` };
            values.push(value);
          } else {
            if (items.enum && !items.enum.includes(part)) return { error: `${part} is not one of ${items.enum.join(", ")}` };
            const problem = checkText(items, part, `each value of ${label}`);
            if (problem) return { error: problem };
            values.push(part);
          }
        }
        if (schema.minItems !== undefined && values.length < schema.minItems) return { error: `${label} needs at least ${schema.minItems} value(s)` };
        if (schema.maxItems !== undefined && values.length > schema.maxItems) return { error: `${label} takes at most ${schema.maxItems} values` };
        return values;
      };
      field.reset = () => {
        control.value = Array.isArray(schema.default) ? schema.default.join(", ") : "";
      };
    } else if (kind === "json") {
      control = h("textarea", { id, name: dotted, rows: "2", spellcheck: "false", "aria-describedby": describedBy, placeholder: schema.examples ? JSON.stringify(schema.examples[0]) : "{}" });
      control.value = schema.default && Object.keys(schema.default).length ? JSON.stringify(schema.default) : "";
      field.read = () => {
        const raw = control.value.trim();
        if (!raw) return OMIT;
        let value;
        try {
          value = JSON.parse(raw);
        } catch {
          return { error: `${label} must be a JSON object, for example {"width": 0.5}` };
        }
        if (!value || typeof value !== "object" || Array.isArray(value)) return { error: `${label} must be a JSON object` };
        return value;
      };
      field.reset = () => {
        control.value = "";
      };
    } else {
      control = h("input", {
        type: "text",
        id,
        name: dotted,
        value: hasDefault && schema.default !== null ? String(schema.default) : "",
        placeholder: schema.examples ? `e.g. ${schema.examples[0]}` : null,
        maxlength: schema.maxLength,
        "aria-describedby": describedBy,
        required,
      });
      field.read = () => {
        const raw = control.value.trim();
        if (!raw) return required ? { error: `${label} is required` } : OMIT;
        const problem = checkText(schema, raw, label);
        return problem ? { error: problem } : raw;
      };
      field.reset = () => {
        control.value = hasDefault && schema.default !== null ? String(schema.default) : "";
      };
    }
    field.control = control;
    field.focusTarget = field.focusTarget || control;
    const labelEl = h("label", { for: id }, label, required ? h("span", { "aria-hidden": "true" }, " *") : null, " ", h("code", { class: "path" }, dotted));
    field.wrapper =
      kind === "boolean"
        ? h("div", { class: "field checkbox", dataset: { path: dotted } }, control, labelEl, hint, error)
        : h("div", { class: `field${kind === "json" ? " wide" : ""}`, dataset: { path: dotted } }, labelEl, control, hint, error);
    fields.push(field);
    return field.wrapper;
  }

  function makeFieldset(path, schema, title) {
    const dotted = path.join(".");
    const error = h("p", { class: "field-error", id: `${fieldId(path)}-error` });
    const primitive = h("div", { class: "fields" });
    const nested = [];
    const requiredKeys = new Set(schema.required || []);
    for (const [key, propSchema] of Object.entries(schema.properties || {})) {
      const { schema: inner, nullable } = unwrap(root, propSchema);
      const childPath = [...path, key];
      if (kindOf(inner) === "object") {
        nested.push(makeFieldset(childPath, inner, SECTION_TITLES[key] || humanize(key)));
      } else {
        primitive.append(makeField(childPath, inner, nullable, requiredKeys.has(key)));
      }
    }
    const fieldset = h(
      "fieldset",
      { id: `${fieldId(path)}-set`, dataset: { path: dotted } },
      h("legend", {}, title),
      schema.description ? h("p", { class: "section-help" }, schema.description) : null,
      error,
      primitive.childNodes.length ? primitive : null,
      nested,
    );
    fieldsets.set(dotted, { fieldset, error, path });
    return fieldset;
  }

  // Top level: loose fields (like the job name) first, in a "General" section; then one section per object.
  const general = h("div", { class: "fields" });
  const sections = [];
  const requiredTop = new Set(rootSchema.required || []);
  for (const [key, propSchema] of Object.entries(rootSchema.properties || {})) {
    const { schema: inner, nullable } = unwrap(root, propSchema);
    if (kindOf(inner) === "object") {
      const outer = propSchema.description || "";
      const own = inner.description || "";
      const description = own.includes(outer) ? own : outer.includes(own) ? outer : `${outer} ${own}`;
      const withDescription = { ...inner, description: description || undefined };
      sections.push(makeFieldset([key], withDescription, SECTION_TITLES[key] || humanize(key)));
    } else {
      general.append(makeField([key], inner, nullable, requiredTop.has(key)));
    }
  }
  const generalSet = general.childNodes.length ? h("fieldset", { dataset: { path: "" } }, h("legend", {}, "General"), general) : null;
  const element = h("div", { class: "schema-form" }, generalSet, sections);

  function values() {
    // Raw current values by path, for visibility rules.
    const out = {};
    for (const field of fields) {
      const value = field.read();
      out[field.dotted] = value === OMIT || (value && value.error) ? field.default : value;
    }
    return out;
  }

  function isVisible(dotted, current) {
    for (const [prefix, predicate] of Object.entries(visibleWhen)) {
      if ((dotted === prefix || dotted.startsWith(`${prefix}.`)) && !predicate(current)) return false;
    }
    return true;
  }

  function applyVisibility() {
    const current = values();
    for (const field of fields) field.wrapper.hidden = !isVisible(field.dotted, current);
    for (const [dotted, set] of fieldsets) set.fieldset.hidden = !isVisible(dotted, current);
  }

  /** {body, errors}: only fields that differ from their defaults (and required ones) go in the body. */
  function collect() {
    const body = {};
    const errors = [];
    const current = values();
    for (const field of fields) {
      if (!isVisible(field.dotted, current)) continue;
      const value = field.read();
      if (value === OMIT) continue;
      if (value && typeof value === "object" && value.error) {
        errors.push({ field: field.dotted, message: value.error });
        continue;
      }
      if (!field.required && field.default !== undefined && same(value, field.default)) continue;
      let target = body;
      for (const key of field.path.slice(0, -1)) target = target[key] || (target[key] = {});
      target[field.path[field.path.length - 1]] = value;
    }
    return { body, errors };
  }

  function clearErrors() {
    for (const field of fields) {
      field.error.textContent = "";
      field.focusTarget.removeAttribute("aria-invalid");
    }
    for (const set of fieldsets.values()) set.error.textContent = "";
  }

  /** Put each {field, message} next to the field it names (or its closest section); returns the
   * problems that found no place, and the first element to focus. */
  function showErrors(problems) {
    const byPath = new Map(fields.map((field) => [field.dotted, field]));
    const unplaced = [];
    let first = null;
    for (const problem of problems) {
      const parts = String(problem.field || "").split(".").filter(Boolean);
      let placed = false;
      for (let n = parts.length; n > 0 && !placed; n -= 1) {
        const dotted = parts.slice(0, n).join(".");
        const field = byPath.get(dotted);
        if (field && !field.wrapper.hidden) {
          const text = n < parts.length ? `${parts.slice(n).join(".")}: ${problem.message}` : problem.message;
          field.error.textContent = field.error.textContent ? `${field.error.textContent} ${text}` : text;
          field.focusTarget.setAttribute("aria-invalid", "true");
          first = first || field.focusTarget;
          placed = true;
        } else if (fieldsets.has(dotted) && !fieldsets.get(dotted).fieldset.hidden) {
          const set = fieldsets.get(dotted);
          const text = n < parts.length ? `${parts.slice(n).join(".")}: ${problem.message}` : problem.message;
          set.error.textContent = set.error.textContent ? `${set.error.textContent} ${text}` : text;
          first = first || set.fieldset;
          placed = true;
        }
      }
      if (!placed) unplaced.push(problem);
    }
    return { unplaced, first };
  }

  function reset() {
    for (const field of fields) field.reset();
    clearErrors();
    applyVisibility();
  }

  function fieldByPath(dotted) {
    return fields.find((field) => field.dotted === dotted) || null;
  }

  element.addEventListener("change", applyVisibility);
  applyVisibility();
  return { element, fields, collect, showErrors, clearErrors, reset, applyVisibility, fieldByPath };
}

export function errorSummary(container, problems, focus) {
  if (!problems.length) {
    replace(container);
    return;
  }
  replace(
    container,
    h(
      "div",
      { class: "alert alert-error", role: "alert", tabindex: "-1", id: "form-errors" },
      h("strong", {}, problems.length === 1 ? "The job spec has a problem:" : `The job spec has ${problems.length} problems:`),
      h(
        "ul",
        {},
        problems.map((problem) =>
          h("li", {}, problem.field ? h("code", {}, problem.field) : null, problem.field ? ": " : null, problem.message, focus && problem.field ? [" ", focus(problem.field)] : null),
        ),
      ),
    ),
  );
}
