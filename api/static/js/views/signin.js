// Sign in with an API key; the key is checked against the API before it is kept.

import { setKey } from "../api.js";
import { h } from "../dom.js";

export function renderSignIn(main, { message, onSignedIn }) {
  const error = h("div", { class: "alert alert-error", role: "alert", id: "signin-error" });
  const input = h("input", {
    type: "password",
    id: "api-key",
    name: "api-key",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "api-key-hint signin-error",
  });
  const button = h("button", { type: "submit", class: "btn" }, "Sign in");
  const form = h(
    "form",
    { novalidate: true },
    h("label", { for: "api-key" }, "API key"),
    input,
    h(
      "p",
      { class: "muted small", id: "api-key-hint" },
      "Paste a key that starts with lbc_. ",
      h("code", {}, "lbc serve"),
      " prints a link that signs you in; ",
      h("code", {}, "lbc keys create --name NAME"),
      " makes a new key. The key is kept in this browser tab only.",
    ),
    h("div", {}, button),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    error.textContent = "";
    if (!key) {
      error.textContent = "Enter an API key.";
      input.setAttribute("aria-invalid", "true");
      input.focus();
      return;
    }
    button.disabled = true;
    try {
      // Plain fetch: a rejected key is this form's message, not a global sign-out.
      const response = await fetch("/v1/jobs?limit=1", {
        headers: { Authorization: `Bearer ${key}`, Accept: "application/json" },
      });
      if (!response.ok) {
        const body = await response.json().catch(() => null);
        throw new Error(
          response.status === 401 ? "This API key was not accepted." : (body && body.error && body.error.message) || `error ${response.status}`,
        );
      }
      setKey(key);
      onSignedIn();
    } catch (exc) {
      error.textContent = exc.message === "Failed to fetch" ? "The server cannot be reached." : exc.message;
      input.setAttribute("aria-invalid", "true");
      input.focus();
    } finally {
      button.disabled = false;
    }
  });
  main.append(
    h(
      "section",
      { class: "signin panel", "aria-labelledby": "signin-title" },
      h("h1", { id: "signin-title" }, "Sign in"),
      message ? h("div", { class: "alert alert-info", role: "status" }, message) : null,
      error,
      form,
    ),
  );
}
