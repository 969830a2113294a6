/* Hand-written SVG charts, no dependency (no CDN, nothing to build): a line chart and a bar chart over
   time buckets. Readable without colour: every line has its own dash pattern and marker shape, error
   bars are hatched, the legend shows both, each point has a tooltip, and every chart has its data as
   a table under "Show data". Charts are drawn at their container's width and redrawn on resize. */
"use strict";

const Charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const DASHES = ["", "7 4", "2 3", "10 3 2 3", "4 2"];
  const MARKERS = ["circle", "square", "triangle", "diamond", "cross"];
  const drawn = new Set();
  let uid = 0;

  function s(tag, attrs, ...children) {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, v);
    for (const c of children) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }
  function marker(kind, x, y, r, cls) {
    const a = { class: cls, fill: "var(--panel)", stroke: "currentColor", "stroke-width": 1.6 };
    switch (kind) {
      case "square": return s("rect", { ...a, x: x - r, y: y - r, width: 2 * r, height: 2 * r });
      case "triangle": return s("path", { ...a, d: `M${x} ${y - r * 1.2}L${x + r * 1.1} ${y + r * 0.8}L${x - r * 1.1} ${y + r * 0.8}Z` });
      case "diamond": return s("path", { ...a, d: `M${x} ${y - r * 1.3}L${x + r * 1.3} ${y}L${x} ${y + r * 1.3}L${x - r * 1.3} ${y}Z` });
      case "cross": return s("path", { ...a, d: `M${x - r} ${y - r}L${x + r} ${y + r}M${x - r} ${y + r}L${x + r} ${y - r}` });
      default: return s("circle", { ...a, cx: x, cy: y, r });
    }
  }
  function niceMax(max) {
    if (!(max > 0)) return 1;
    const exp = Math.pow(10, Math.floor(Math.log10(max)));
    for (const m of [1, 2, 4, 6, 8, 10]) if (m * exp >= max) return m * exp;  // (quarters stay round)
    return 10 * exp;
  }
  function timeLabel(d, spanMs) {
    const pad = (n) => String(n).padStart(2, "0");
    if (spanMs <= 2 * 86400e3) return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return `${d.getMonth() + 1}/${d.getDate()}` + (spanMs <= 10 * 86400e3 ? ` ${pad(d.getHours())}h` : "");
  }

  function frame(el, opts, maxValue) {
    const width = Math.max(280, Math.floor(el.clientWidth || 600));
    const height = opts.height || (width < 500 ? 180 : 220);
    const m = { left: 58, right: 14, top: 12, bottom: 26 };
    const w = width - m.left - m.right, hgt = height - m.top - m.bottom;
    const yMax = niceMax(maxValue);
    const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": opts.label });
    for (let i = 0; i <= 4; i++) {
      const value = (yMax * i) / 4, y = m.top + hgt - (hgt * i) / 4;
      svg.append(s("line", { class: "grid-line", x1: m.left, x2: m.left + w, y1: y, y2: y }));
      svg.append(s("text", { class: "axis-label", x: m.left - 6, y: y + 4, "text-anchor": "end" }, opts.yFormat(value)));
    }
    const times = opts.times, n = times.length;
    const span = n > 1 ? times[n - 1] - times[0] : 3600e3;
    const ticks = Math.min(n, width < 500 ? 4 : 7);
    for (let k = 0; k < ticks; k++) {
      const i = ticks === 1 ? 0 : Math.round((k * (n - 1)) / (ticks - 1));
      svg.append(s("text", { class: "axis-label", x: m.left + x01(i, n) * w, y: height - 6, "text-anchor": k === 0 ? "start" : k === ticks - 1 ? "end" : "middle" },
        timeLabel(times[i], span)));
    }
    const X = (i) => m.left + x01(i, n) * w;
    const Y = (v) => m.top + hgt - (hgt * v) / yMax;
    return { svg, X, Y, w, hgt, m, n, width };
  }
  function x01(i, n) { return n > 1 ? i / (n - 1) : 0.5; }

  function legend(items) {
    return items.map((it) => {
      const sample = s("svg", { viewBox: "0 0 28 12", "aria-hidden": "true" });
      if (it.kind === "bar") {
        sample.append(s("rect", { x: 4, y: 1, width: 20, height: 10, class: it.cls, fill: it.hatch ? `url(#${it.hatch})` : "currentColor", stroke: "currentColor" }));
        if (it.hatch) sample.prepend(hatchDef(it.hatch, it.cls));
      } else {
        sample.append(s("line", { x1: 1, x2: 27, y1: 6, y2: 6, class: it.cls, "stroke-width": 2, "stroke-dasharray": it.dash || null }));
        sample.append(marker(it.marker, 14, 6, 3.2, it.cls));
      }
      return TEA.h("span", { class: "legend-item" }, sample, it.name);
    });
  }
  function hatchDef(id, cls) {
    return s("defs", {}, s("pattern", { id, width: 6, height: 6, patternUnits: "userSpaceOnUse", patternTransform: "rotate(45)" },
      s("rect", { width: 6, height: 6, fill: "var(--panel)" }),
      s("line", { x1: 0, y1: 0, x2: 0, y2: 6, class: cls, "stroke-width": 3 })));
  }
  function dataTable(opts) {
    const rows = opts.times.map((t, i) => Object.fromEntries([["time", TEA.fmt.time(t)], ...opts.series.map((sr, k) => [k, opts.yFormat(sr.values[i], true)])]));
    const cols = [{ key: "time", label: "Time" }, ...opts.series.map((sr, k) => ({ key: k, label: sr.name, num: true }))];
    return TEA.h("details", { class: "data" }, TEA.h("summary", {}, "Show data"), TEA.table(cols, rows, { label: opts.label + " (data)" }));
  }
  function place(el, opts, draw) {
    const render = () => {
      if (!el.isConnected) { drawn.delete(render); return; }
      TEA.clear(el);
      draw();
    };
    drawn.add(render);
    render();
  }

  /** Lines over time buckets: opts {label, times: Date[], series: [{name, values}], yFormat(v)}. */
  function line(el, opts) {
    place(el, opts, () => {
      const max = Math.max(0, ...opts.series.flatMap((sr) => sr.values.filter((v) => v !== null)));
      const f = frame(el, opts, max);
      const every = f.n <= 48 ? 1 : Math.ceil(f.n / 24);
      opts.series.forEach((sr, k) => {
        const cls = `s${(k % 5) + 1}`, dash = DASHES[k % 5], kind = MARKERS[k % 5];
        let d = "", pen = false;
        sr.values.forEach((v, i) => {
          if (v === null || v === undefined) { pen = false; return; }
          d += `${pen ? "L" : "M"}${f.X(i).toFixed(1)} ${f.Y(v).toFixed(1)}`;
          pen = true;
        });
        f.svg.append(s("path", { d, class: cls, fill: "none", "stroke-width": 2, "stroke-dasharray": dash || null, "stroke-linejoin": "round" }));
        sr.values.forEach((v, i) => {
          if (v === null || v === undefined) return;
          const dot = marker(kind, f.X(i), f.Y(v), i % every === 0 ? 3.2 : 2.6, cls);
          if (i % every !== 0) dot.setAttribute("class", cls + " hover-dot");
          dot.append(s("title", {}, `${sr.name} · ${TEA.fmt.time(opts.times[i])}: ${opts.yFormat(v, true)}`));
          f.svg.append(dot);
        });
      });
      const items = opts.series.map((sr, k) => ({ name: sr.name, cls: `s${(k % 5) + 1}`, dash: DASHES[k % 5], marker: MARKERS[k % 5] }));
      el.append(TEA.h("figure", { class: "chart" }, TEA.h("figcaption", {}, legend(items)), f.svg, dataTable(opts)));
    });
  }

  /** Bars over time buckets, the second series (a part of the first, e.g. errors of requests) hatched over it. */
  function bars(el, opts) {
    place(el, opts, () => {
      const max = Math.max(0, ...opts.series[0].values);
      const f = frame(el, opts, max);
      const hatch = `hatch-${++uid}`;
      f.svg.prepend(hatchDef(hatch, "s2"));
      const slot = f.n > 1 ? f.w / (f.n - 1) : f.w;
      const bw = Math.max(1, Math.min(28, slot * 0.7));
      opts.series.forEach((sr, k) => {
        sr.values.forEach((v, i) => {
          if (!v) return;
          const y = f.Y(v), x = Math.min(Math.max(f.X(i) - bw / 2, f.m.left), f.m.left + f.w - bw);
          const bar = s("rect", { x: x.toFixed(1), y: y.toFixed(1), width: bw.toFixed(1), height: Math.max(0.5, f.m.top + f.hgt - y).toFixed(1),
            class: k === 0 ? "s1" : "s2", fill: k === 0 ? "currentColor" : `url(#${hatch})`, "fill-opacity": k === 0 ? 0.35 : 1,
            stroke: "currentColor", "stroke-width": k === 0 ? 0 : 1 });
          bar.append(s("title", {}, `${sr.name} · ${TEA.fmt.time(opts.times[i])}: ${opts.yFormat(v, true)}`));
          f.svg.append(bar);
        });
      });
      const items = opts.series.map((sr, k) => ({ name: sr.name, cls: k === 0 ? "s1" : "s2", kind: "bar", hatch: k === 0 ? null : `legend-${hatch}` }));
      el.append(TEA.h("figure", { class: "chart" }, TEA.h("figcaption", {}, legend(items)), f.svg, dataTable(opts)));
    });
  }

  let pending = null;
  window.addEventListener("resize", () => {
    clearTimeout(pending);
    pending = setTimeout(() => { for (const render of [...drawn]) render(); }, 150);
  });

  return { line, bars };
})();
