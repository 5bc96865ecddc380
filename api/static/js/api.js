// The REST API from the browser: the key travels in the Authorization header, never in a URL.

const KEY_NAME = "lbc.apiKey";

export function getKey() {
  return window.sessionStorage.getItem(KEY_NAME);
}

export function setKey(key) {
  window.sessionStorage.setItem(KEY_NAME, key);
}

export function clearKey() {
  window.sessionStorage.removeItem(KEY_NAME);
}

/** An error answer of the API: {error: {code, message, details, request_id}}. */
export class ApiError extends Error {
  constructor(status, error) {
    super((error && error.message) || `request failed with status ${status}`);
    this.status = status;
    this.code = (error && error.code) || "http_error";
    this.details = error ? error.details : null;
    this.requestId = error ? error.request_id : null;
  }
}

function authHeaders(extra = {}) {
  const headers = { ...extra };
  const key = getKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = new ApiError(response.status, body && body.error);
  if (response.status === 401) window.dispatchEvent(new CustomEvent("lbc:unauthorized"));
  return error;
}

/** fetch a /v1 path; JSON bodies in and out. Throws ApiError for an error status. */
export async function api(path, { method = "GET", body, headers = {}, signal, raw = false } = {}) {
  const init = { method, headers: authHeaders({ Accept: "application/json", ...headers }), signal };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    if (exc.name === "AbortError") throw exc;
    throw new ApiError(0, { code: "network_error", message: "the server cannot be reached" });
  }
  if (!response.ok) throw await errorOf(response);
  if (raw) return response;
  if (response.status === 204 || response.status === 304) return null;
  return response.json();
}

export async function apiBlob(path, { signal } = {}) {
  const response = await api(path, { raw: true, signal, headers: { Accept: "*/*" } });
  return response.blob();
}

export async function apiText(path, { signal } = {}) {
  const response = await api(path, { raw: true, signal, headers: { Accept: "text/plain, */*" } });
  return response.text();
}

/** Multipart upload with progress (fetch cannot report upload progress; XMLHttpRequest can). */
export function upload(path, formData, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    const key = getKey();
    if (key) xhr.setRequestHeader("Authorization", `Bearer ${key}`);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded / event.total);
    });
    xhr.addEventListener("load", () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(1);
        resolve(body);
      } else {
        if (xhr.status === 401) window.dispatchEvent(new CustomEvent("lbc:unauthorized"));
        reject(new ApiError(xhr.status, body && body.error));
      }
    });
    xhr.addEventListener("error", () =>
      reject(new ApiError(0, { code: "network_error", message: "the upload was interrupted" })),
    );
    xhr.send(formData);
  });
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const timer = window.setTimeout(resolve, ms);
    if (signal) signal.addEventListener("abort", () => window.clearTimeout(timer), { once: true });
  });

/**
 * Server-Sent Events over fetch, so the request can carry the Authorization header (EventSource
 * cannot). Reconnects after errors with Last-Event-ID, honours `retry:`, and restarts a connection
 * that has been silent for longer than `idleMs` (the server sends a heartbeat comment every 15 s).
 *
 * onEvent({id, event, data}) returns true for an event that ends the stream (a terminal state): when
 * the server closes the stream right after such an event, no reconnect is made.
 * onStatus("connecting" | "live" | "reconnecting" | "ended" | "error", detail)
 */
export function streamEvents(path, { onEvent, onStatus, signal, idleMs = 45000 }) {
  let lastEventId = null;
  let retryMs = 3000;
  let finished = false;

  async function connectOnce() {
    const connection = new AbortController();
    const abortConnection = () => connection.abort();
    signal.addEventListener("abort", abortConnection, { once: true });
    let idleTimer = null;
    const touch = () => {
      window.clearTimeout(idleTimer);
      idleTimer = window.setTimeout(() => connection.abort(), idleMs);
    };
    try {
      const headers = authHeaders({ Accept: "text/event-stream" });
      if (lastEventId !== null) headers["Last-Event-ID"] = String(lastEventId);
      touch();
      const response = await fetch(path, { headers, signal: connection.signal, cache: "no-store" });
      if (!response.ok) throw await errorOf(response);
      onStatus("live");
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let data = [];
      let type = "";
      let id = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        touch();
        buffer += value;
        let newline;
        while ((newline = buffer.indexOf("\n")) >= 0) {
          let line = buffer.slice(0, newline);
          buffer = buffer.slice(newline + 1);
          if (line.endsWith("\r")) line = line.slice(0, -1);
          if (line === "") {
            if (id !== null) lastEventId = id;
            if (data.length) {
              let parsed = null;
              try {
                parsed = JSON.parse(data.join("\n"));
              } catch {
                parsed = data.join("\n");
              }
              // Only the stream's latest event counts: a retried job replays an earlier attempt's end.
              finished = Boolean(onEvent({ id: lastEventId, event: type || "message", data: parsed }));
            }
            data = [];
            type = "";
            id = null;
            continue;
          }
          if (line.startsWith(":")) continue; // a comment: the heartbeat
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          let fieldValue = colon < 0 ? "" : line.slice(colon + 1);
          if (fieldValue.startsWith(" ")) fieldValue = fieldValue.slice(1);
          if (field === "data") data.push(fieldValue);
          else if (field === "event") type = fieldValue;
          else if (field === "id") id = fieldValue;
          else if (field === "retry" && /^\d+$/.test(fieldValue)) retryMs = Number(fieldValue);
        }
      }
      return "closed";
    } finally {
      window.clearTimeout(idleTimer);
      signal.removeEventListener("abort", abortConnection);
    }
  }

  (async () => {
    onStatus("connecting");
    while (!signal.aborted) {
      try {
        await connectOnce();
        if (finished) {
          onStatus("ended");
          return;
        }
      } catch (exc) {
        if (signal.aborted) return;
        if (exc instanceof ApiError && exc.status >= 400 && exc.status < 500) {
          onStatus("error", exc);
          return;
        }
      }
      if (signal.aborted) return;
      onStatus("reconnecting");
      await sleep(retryMs, signal);
    }
  })();
}

let openApiPromise = null;

/** The service's OpenAPI document (public; fetched once per page). */
export function getOpenApi() {
  if (!openApiPromise) {
    openApiPromise = fetch("/openapi.json", { headers: { Accept: "application/json" } }).then((response) => {
      if (!response.ok) throw new ApiError(response.status, { message: "the API schema could not be loaded" });
      return response.json();
    });
    openApiPromise.catch(() => {
      openApiPromise = null;
    });
  }
  return openApiPromise;
}

export function randomKey() {
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
