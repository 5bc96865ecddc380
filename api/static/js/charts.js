// Hand-drawn SVG charts: line charts over time and horizontal bar charts. No library.

import { h, isNumber, s, uniqueId, fmtNumber } from "./dom.js";

// Colour-blind-safe palette (Okabe-Ito, darkened for contrast on white) with distinct dash patterns.
export const PALETTE = ["#0b5cad", "#c2410c", "#047857", "#7e22ce", "#a16207", "#be185d"];
const DASHES = ["", "6 3", "2 3", "8 3 2 3", "", "4 2"];

function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const power = 10 ** Math.floor(Math.log10(raw));
  const scaled = raw / power;
  const nice = scaled < 1.5 ? 1 : scaled < 3 ? 2 : scaled < 7 ? 5 : 10;
  return nice * power;
}

export function niceTicks(min, max, count = 5) {
  if (!isNumber(min) || !isNumber(max)) return [];
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    min -= pad;
    max += pad;
  }
  const step = niceStep(max - min, count);
  const first = Math.ceil(min / step - 1e-9) * step;
  const ticks = [];
  for (let value = first; value <= max + step * 1e-9; value += step) ticks.push(Number(value.toPrecision(12)));
  return ticks;
}

function domain(values, fixedMin, fixedMax) {
  const finite = values.filter(isNumber);
  let min = isNumber(fixedMin) ? fixedMin : Math.min(...finite);
  let max = isNumber(fixedMax) ? fixedMax : Math.max(...finite);
  if (!finite.length) {
    min = isNumber(fixedMin) ? fixedMin : 0;
    max = isNumber(fixedMax) ? fixedMax : 1;
  }
  if (min === max) {
    const pad = Math.abs(min) * 0.1 || 1;
    if (!isNumber(fixedMin)) min -= pad;
    if (!isNumber(fixedMax)) max += pad;
    if (min === max) max = min + 1;
  }
  const ticks = niceTicks(min, max);
  if (!isNumber(fixedMin) && ticks.length && ticks[0] > min) ticks.unshift(ticks[0] - (ticks[1] - ticks[0] || 1));
  if (!isNumber(fixedMin) && ticks.length) min = Math.min(min, ticks[0]);
  if (!isNumber(fixedMax) && ticks.length && ticks[ticks.length - 1] < max) {
    const step = ticks.length > 1 ? ticks[1] - ticks[0] : 1;
    ticks.push(ticks[ticks.length - 1] + step);
  }
  if (!isNumber(fixedMax) && ticks.length) max = Math.max(max, ticks[ticks.length - 1]);
  return { min, max, ticks: ticks.filter((t) => t >= min - 1e-12 && t <= max + 1e-12) };
}

function legend(series) {
  return h(
    "ul",
    { class: "legend" },
    series.map((item, i) =>
      h(
        "li",
        {},
        s(
          "svg",
          { viewBox: "0 0 22 10", "aria-hidden": "true", focusable: "false" },
          s("line", {
            x1: 1,
            y1: 5,
            x2: 21,
            y2: 5,
            stroke: item.color || PALETTE[i % PALETTE.length],
            "stroke-width": item.kind === "bar" ? 8 : 2.5,
            "stroke-dasharray": item.dash ?? DASHES[i % DASHES.length],
          }),
        ),
        item.name,
      ),
    ),
  );
}

/**
 * lineChart({title, series: [{name, points: [[x, y]], markers}], xLabel, yFormat, yMin, yMax, empty})
 * returns a <figure>; an empty chart says what will appear there.
 */
export function lineChart({ title, series, xLabel = "epoch", yFormat = fmtNumber, yMin, yMax, empty }) {
  const width = 560;
  const height = 230;
  const margin = { left: 58, right: 16, top: 12, bottom: 36 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const captionId = uniqueId("chart");
  const descId = uniqueId("chart-desc");
  const shown = series.filter((item) => item.points.length);
  const xs = shown.flatMap((item) => item.points.map((p) => p[0]));
  const ys = shown.flatMap((item) => item.points.map((p) => p[1]));
  const x = domain(xs, xs.length ? undefined : 0, xs.length ? undefined : 1);
  const y = domain(ys, yMin, yMax);
  const sx = (value) => margin.left + ((value - x.min) / (x.max - x.min || 1)) * plotW;
  const sy = (value) => margin.top + plotH - ((value - y.min) / (y.max - y.min || 1)) * plotH;

  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`,
    role: "img",
    "aria-labelledby": captionId,
    "aria-describedby": descId,
    "data-points": String(ys.length),
  });
  for (const tick of y.ticks) {
    svg.append(
      s("line", { class: "chart-grid", x1: margin.left, x2: width - margin.right, y1: sy(tick), y2: sy(tick) }),
      s("text", { class: "chart-tick", x: margin.left - 6, y: sy(tick) + 4, "text-anchor": "end" }, yFormat(tick)),
    );
  }
  for (const tick of x.ticks) {
    svg.append(
      s("line", { class: "chart-axis", x1: sx(tick), x2: sx(tick), y1: margin.top + plotH, y2: margin.top + plotH + 4 }),
      s("text", { class: "chart-tick", x: sx(tick), y: margin.top + plotH + 16, "text-anchor": "middle" }, fmtNumber(tick, 3)),
    );
  }
  svg.append(
    s("line", { class: "chart-axis", x1: margin.left, x2: width - margin.right, y1: margin.top + plotH, y2: margin.top + plotH }),
    s("line", { class: "chart-axis", x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH }),
    s("text", { class: "chart-label", x: margin.left + plotW / 2, y: height - 4, "text-anchor": "middle" }, xLabel),
  );
  if (!shown.length) {
    svg.append(
      s(
        "text",
        { class: "chart-empty", x: margin.left + plotW / 2, y: margin.top + plotH / 2, "text-anchor": "middle" },
        empty || "No data yet",
      ),
    );
  }
  series.forEach((item, i) => {
    if (!item.points.length) return;
    const color = item.color || PALETTE[i % PALETTE.length];
    const d = item.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    svg.append(
      s("path", {
        d,
        fill: "none",
        stroke: color,
        "stroke-width": item.width || 2,
        "stroke-dasharray": item.dash ?? DASHES[i % DASHES.length],
        "stroke-linejoin": "round",
        "data-series": item.name,
      }),
    );
    if (item.markers || item.points.length === 1) {
      for (const p of item.points) svg.append(s("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 3, fill: color }));
    }
  });

  const summary = shown.length
    ? shown
        .map((item) => {
          const last = item.points[item.points.length - 1];
          return `${item.name}: ${yFormat(last[1])} at ${xLabel} ${fmtNumber(last[0], 3)}`;
        })
        .join("; ")
    : empty || "No data yet";
  return h(
    "figure",
    { class: "chart", dataset: { chart: title } },
    h("figcaption", { id: captionId }, title),
    svg,
    h("p", { id: descId, class: "visually-hidden" }, summary),
    legend(series),
  );
}

/**
 * Horizontal grouped bars: barChart({title, categories, series: [{name, values}], reference, xFormat}).
 * Null values are left out (and said so in the text alternative).
 */
export function barChart({ title, categories, series, reference, referenceLabel, xFormat = fmtNumber, xLabel }) {
  const width = 760;
  const rowH = 14 * series.length + 10;
  const margin = { left: 170, right: 60, top: isNumber(reference) ? 22 : 8, bottom: 36 };
  const height = margin.top + margin.bottom + Math.max(1, categories.length) * rowH;
  const plotW = width - margin.left - margin.right;
  const values = series.flatMap((item) => item.values).filter(isNumber);
  if (isNumber(reference)) values.push(reference);
  const x = domain(values, 0, undefined);
  const sx = (value) => margin.left + ((value - x.min) / (x.max - x.min || 1)) * plotW;
  const captionId = uniqueId("chart");
  const descId = uniqueId("chart-desc");
  const svg = s("svg", {
    class: "bar-chart",
    viewBox: `0 0 ${width} ${height}`,
    width,
    height,
    role: "img",
    "aria-labelledby": captionId,
    "aria-describedby": descId,
  });
  const bottom = height - margin.bottom;
  for (const tick of x.ticks) {
    svg.append(
      s("line", { class: "chart-grid", x1: sx(tick), x2: sx(tick), y1: margin.top, y2: bottom }),
      s("text", { class: "chart-tick", x: sx(tick), y: bottom + 14, "text-anchor": "middle" }, xFormat(tick)),
    );
  }
  if (xLabel) svg.append(s("text", { class: "chart-label", x: margin.left + plotW / 2, y: height - 4, "text-anchor": "middle" }, xLabel));
  categories.forEach((name, row) => {
    const top = margin.top + row * rowH + 5;
    const label = name.length > 26 ? `${name.slice(0, 25)}…` : name;
    svg.append(s("text", { class: "chart-tick", x: margin.left - 8, y: top + (rowH - 10) / 2 + 4, "text-anchor": "end" }, label));
    series.forEach((item, i) => {
      const value = item.values[row];
      if (!isNumber(value)) return;
      const y = top + i * 14;
      svg.append(
        s("rect", { x: sx(0), y, width: Math.max(1, sx(value) - sx(0)), height: 11, fill: item.color || PALETTE[i % PALETTE.length] }),
        s("text", { class: "chart-tick", x: sx(value) + 4, y: y + 9 }, xFormat(value)),
      );
    });
  });
  svg.append(s("line", { class: "chart-axis", x1: margin.left, x2: margin.left, y1: margin.top, y2: bottom }));
  if (isNumber(reference)) {
    svg.append(
      s("line", { x1: sx(reference), x2: sx(reference), y1: margin.top, y2: bottom, stroke: "#b91c1c", "stroke-width": 1.5, "stroke-dasharray": "5 3" }),
      s("text", { class: "chart-tick", x: sx(reference), y: margin.top - 8, "text-anchor": "middle" }, referenceLabel || ""),
    );
  }
  const summary = categories
    .map((name, row) => `${name}: ${series.map((item) => `${item.name} ${isNumber(item.values[row]) ? xFormat(item.values[row]) : "none"}`).join(", ")}`)
    .join("; ");
  return h(
    "figure",
    { class: "chart" },
    h("figcaption", { id: captionId }, title),
    svg,
    h("p", { id: descId, class: "visually-hidden" }, summary),
    legend(series.map((item) => ({ ...item, kind: "bar", dash: "" }))),
  );
}
