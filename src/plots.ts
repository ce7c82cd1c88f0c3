/**
 * The figures of a run and its report, drawn from the files the run wrote (run.json,
 * log.jsonl, diagnostics.json), so that `deno task plot` can redraw them at any time.
 *
 * Charts are Vega-Lite specifications, rendered headlessly by Vega to SVG, and rasterized to
 * PNG by resvg (WebAssembly) with the DejaVu Sans font: all from the npm registry, nothing at
 * run time from the network, no native code.
 */

import { createRequire } from "node:module";
import { initWasm, Resvg } from "@resvg/resvg-wasm";
import "dejavu-fonts-ttf/package.json" with { type: "json" };
import { UserError } from "./errors.ts";
import type { TopLevelSpec } from "vega-lite";
import { figureSpecs, FONT, renderSvg } from "./figures.ts";
import { writeFileAtomic } from "./files.ts";
import { readDiagnostics, readLog, readRunReport, REPORT_FILE } from "./run_dir.ts";

let wasmReady: Promise<void> | undefined;
let font: Uint8Array | undefined;

/** resvg's WebAssembly and the font, from the npm packages in Deno's cache. */
async function rasterizer(): Promise<Uint8Array> {
  const require = createRequire(import.meta.url);
  wasmReady ??= Deno.readFile(require.resolve("@resvg/resvg-wasm/index_bg.wasm")).then(initWasm);
  await wasmReady;
  font ??= await Deno.readFile(require.resolve("dejavu-fonts-ttf/ttf/DejaVuSans.ttf"));
  return font;
}

/** PNG of an SVG, scaled by `zoom` (2: sharp on high-density screens). */
export async function svgToPng(svg: string, zoom = 2): Promise<Uint8Array> {
  const fontBuffer = await rasterizer();
  const png = new Resvg(svg, {
    font: { fontBuffers: [fontBuffer], defaultFontFamily: FONT, loadSystemFonts: false },
    fitTo: { mode: "zoom", value: zoom },
  }).render();
  const bytes = png.asPng();
  png.free();
  return bytes;
}

export const escapeHtml = (s: string): string =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]!);
const escape = escapeHtml;

/** A self-contained HTML page: a title, the body given, and the figures inline. */
export function htmlPage(title: string, body: string, svgs: ReadonlyMap<string, string>): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title>
<style>
body { font-family: "DejaVu Sans", system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; } th, td { text-align: left; padding: 2px 12px 2px 0; }
th { font-weight: normal; color: #666; } .samples span { color: #888; font-size: 0.85em; }
td.num { text-align: right; font-variant-numeric: tabular-nums; } tr.best td { font-weight: bold; }
figure { margin: 2em 0; } svg { max-width: 100%; height: auto; }
</style></head><body>
<h1>${escape(title)}</h1>
${body}
${svgs.size ? "<h2>Figures</h2>" : ""}
${[...svgs].map(([name, svg]) => `<figure id="${name}">${svg}</figure>`).join("\n")}
</body></html>
`;
}

/** An HTML table: a header row, then rows of cells (numbers right-aligned). */
export function htmlTable(
  headers: readonly string[],
  rows: readonly (readonly (string | number)[])[],
  rowClass: (i: number) => string = () => "",
): string {
  const cell = (v: string | number) =>
    typeof v === "number" ? `<td class="num">${v}</td>` : `<td>${escape(v)}</td>`;
  return `<table><tr>${headers.map((h) => `<th>${escape(h)}</th>`).join("")}</tr>${
    rows.map((r, i) => `<tr class="${rowClass(i)}">${r.map(cell).join("")}</tr>`).join("")
  }</table>`;
}

/** Writes each figure as name.svg and name.png into `dir`; returns the SVGs by name. */
export async function writeFigures(
  dir: string,
  specs: ReadonlyMap<string, TopLevelSpec>,
): Promise<Map<string, string>> {
  const svgs = new Map<string, string>();
  for (const [name, spec] of specs) {
    const svg = await renderSvg(spec);
    svgs.set(name, svg);
    await writeFileAtomic(`${dir}/${name}.svg`, svg);
    await writeFileAtomic(`${dir}/${name}.png`, await svgToPng(svg));
  }
  return svgs;
}

/** A field of a JSON object read back from disk, whatever shape it turned out to have. */
const field = (o: unknown, key: string): unknown =>
  typeof o === "object" && o !== null ? (o as Record<string, unknown>)[key] : undefined;
const fixed = (v: unknown, digits: number) =>
  typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "n/a";

/** The report page: run.json's summary (what of it is there), then every figure inline. */
function reportHtml(run: Record<string, unknown> | null, svgs: Map<string, string>): string {
  const rows = (o: Record<string, unknown>) =>
    Object.entries(o).map(([k, v]) => `<tr><th>${escape(k)}</th><td>${escape(String(v))}</td></tr>`)
      .join("");
  const losses = field(run, "losses");
  const samples = field(run, "samples");
  const data = field(run, "data");
  const object = (v: unknown) => (typeof v === "object" && v !== null ? v : {});
  const summary = run
    ? `<h2>Result</h2>
<table>${
      rows({
        "train loss": fixed(field(losses, "train"), 4),
        "val loss": fixed(field(losses, "val"), 4),
        "test loss": fixed(field(losses, "test"), 4),
        "steps": field(run, "steps"),
        "training time": `${fixed(field(run, "train_seconds"), 1)} s (${
          fixed(field(run, "us_per_step"), 0)
        } us/step)`,
        "backend": `${field(run, "backend")}: ${field(run, "adapter")}`,
        "BatchNorm statistics": field(run, "calibrated")
          ? "recalibrated over the training split"
          : "running averages",
        "finished": field(run, "finished"),
      })
    }</table>
<h2>Samples</h2>
<ul class="samples">${
      (Array.isArray(samples) ? samples : []).map((s) =>
        `<li>${escape(String(field(s, "name")))} <span>${
          field(s, "inTrain") ? "in the training set" : "new"
        }</span></li>`
      ).join("")
    }</ul>
<h2>Configuration</h2>
<table>${
      rows({
        ...object(field(run, "config")),
        ...object(field(run, "train")),
        seed: field(run, "seed"),
        parameters: field(run, "params"),
        data: `${field(data, "path")} (${field(data, "words")} words)`,
      })
    }</table>`
    : "<p>(run.json not found: the run has not finished)</p>";
  return htmlPage("makemore-webgpu run", summary, svgs);
}

/**
 * Draws every figure of the run in `dir` (SVG and PNG) and its report.html, from what the run
 * wrote: figures whose data is missing (no diagnostics, an empty log) are left out.
 */
export async function plotRun(dir: string): Promise<string[]> {
  const isDir = await Deno.stat(dir).then((i) => i.isDirectory, () => false);
  if (!isDir) throw new UserError(`${dir}: no such run directory`);
  const log = await readLog(dir);
  const diag = await readDiagnostics(dir);
  const run = await readRunReport(dir);
  if (log.length === 0 && !diag && !run) {
    throw new UserError(`${dir}: nothing to plot (no log.jsonl, diagnostics.json or run.json)`);
  }
  const svgs = await writeFigures(dir, figureSpecs(log, diag));
  const written = [...svgs.keys()].flatMap((name) => [`${name}.png`, `${name}.svg`]);
  await writeFileAtomic(`${dir}/${REPORT_FILE}`, reportHtml(run, svgs));
  written.push(REPORT_FILE);
  return written;
}
