/**
 * Hyper-parameter sweeps: a grid of training runs over comma-separated values of training
 * flags, run by src/batch_runs.ts, and their results side by side: sweep.json, sweep.csv, and
 * a report (a table with the train-val gap and the fitting it suggests, val loss against each
 * hyper-parameter, the best run by val loss).
 *
 * A run's directory is named by its values ("lr=0.1,hidden=200") under DIR/runs/, so a sweep
 * run again skips what it finished, and results from other machines (--print-commands, then
 * --collect) merge by name.
 */

import type { RunOutcome } from "./batch_runs.ts";
import { scatter } from "./figures.ts";
import { htmlPage, htmlTable, writeFigures } from "./plots.ts";
import { readRunReport } from "./run_dir.ts";
import { writeFileAtomic } from "./files.ts";
import type { TopLevelSpec } from "vega-lite";

/** A flag swept over values: `--lr 0.05,0.1` is { flag: "lr", values: ["0.05", "0.1"] }. */
export interface Axis {
  readonly flag: string;
  readonly values: readonly string[];
}

/** Every combination of the axes' values, the first axis varying slowest. */
export function grid(axes: readonly Axis[]): Record<string, string>[] {
  let points: Record<string, string>[] = [{}];
  for (const a of axes) {
    points = points.flatMap((p) => a.values.map((v) => ({ ...p, [a.flag]: v })));
  }
  return points;
}

/** The values of a run, read back from its directory name ("lr=0.1,hidden=200"). */
export function valuesOfName(name: string): Record<string, string> {
  if (name === "base") return {};
  return Object.fromEntries(
    name.split(",").map((kv) => {
      const i = kv.indexOf("=");
      return i < 0 ? [kv, ""] : [kv.slice(0, i), kv.slice(i + 1)];
    }),
  );
}

/** Over- or underfitting, as far as the losses tell (see `classify`). */
export type Fit = "overfitting" | "underfitting" | null;

export interface SweepRow {
  readonly name: string;
  readonly values: Readonly<Record<string, string>>;
  readonly status: string;
  readonly train: number | null;
  readonly val: number | null;
  readonly test: number | null;
  /** val - train. */
  readonly gap: number | null;
  readonly fit: Fit;
  readonly seconds: number | null;
  readonly steps: number | null;
  readonly error?: string;
}

export interface SweepResult {
  readonly params: readonly string[];
  readonly rows: readonly SweepRow[];
  readonly best: string | null;
}

const num = (v: unknown): number | null => typeof v === "number" && Number.isFinite(v) ? v : null;

/**
 * Flags each run by what its losses suggest, relative to the sweep:
 * - overfitting: val exceeds train by more than 0.05 nats and by more than twice the median
 *   gap of the sweep (the model memorizes the training split);
 * - underfitting: val and train within 0.02 of each other, but train more than 0.05 above the
 *   best train loss of the sweep (the model cannot fit what others can).
 */
export function classify(rows: readonly Omit<SweepRow, "fit">[]): SweepRow[] {
  const gaps = rows.flatMap((r) => r.gap === null ? [] : [r.gap]).sort((a, b) => a - b);
  const median = gaps.length ? gaps[Math.floor(gaps.length / 2)] : 0;
  const bestTrain = Math.min(...rows.flatMap((r) => r.train === null ? [] : [r.train]));
  return rows.map((r) => {
    let fit: Fit = null;
    if (r.gap !== null && r.train !== null) {
      if (r.gap > Math.max(0.05, 2 * median)) fit = "overfitting";
      else if (Math.abs(r.gap) < 0.02 && r.train > bestTrain + 0.05) fit = "underfitting";
    }
    return { ...r, fit };
  });
}

/** The sweep's table from the outcomes of its runs. */
export function summarize(params: readonly string[], outcomes: readonly RunOutcome[]): SweepResult {
  const rows = classify(outcomes.map(({ spec, status, report, error }) => {
    const losses = (report?.losses ?? {}) as Record<string, unknown>;
    const train = num(losses.train);
    const val = num(losses.val);
    return {
      name: spec.name,
      values: spec.values,
      status,
      train,
      val,
      test: num(losses.test),
      gap: train !== null && val !== null ? val - train : null,
      seconds: num(report?.train_seconds),
      steps: num(report?.steps),
      ...(error ? { error } : {}),
    };
  }));
  const ranked = rows.filter((r) => r.val !== null).sort((a, b) => a.val! - b.val!);
  return { params, rows, best: ranked[0]?.name ?? null };
}

/** Reads the runs of sweep directories (for --collect): every DIR/runs/NAME/run.json. */
export async function collect(dirs: readonly string[]): Promise<RunOutcome[]> {
  const out = new Map<string, RunOutcome>();
  for (const dir of dirs) {
    let entries: Deno.DirEntry[];
    try {
      entries = [...Deno.readDirSync(`${dir}/runs`)];
    } catch {
      continue;
    }
    for (const e of entries.filter((e) => e.isDirectory).sort((a, b) => a.name < b.name ? -1 : 1)) {
      const report = await readRunReport(`${dir}/runs/${e.name}`);
      const spec = {
        name: e.name,
        dir: `${dir}/runs/${e.name}`,
        args: [],
        steps: 0,
        values: valuesOfName(e.name),
      };
      if (report && !out.has(e.name)) out.set(e.name, { spec, status: "finished", report });
      else if (!report && !out.has(e.name)) {
        out.set(e.name, { spec, status: "interrupted", report: null });
      }
    }
  }
  return [...out.values()];
}

const fixed = (v: number | null, d = 4) => v === null ? "" : v.toFixed(d);

export function toCsv(r: SweepResult): string {
  const header = [...r.params, "status", "train", "val", "test", "gap", "fit", "seconds", "steps"];
  const quote = (s: string) => /[",\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  const rows = r.rows.map((row) =>
    [
      ...r.params.map((p) => row.values[p] ?? ""),
      row.status,
      fixed(row.train),
      fixed(row.val),
      fixed(row.test),
      fixed(row.gap),
      row.fit ?? "",
      fixed(row.seconds, 1),
      row.steps === null ? "" : String(row.steps),
    ].map(quote).join(",")
  );
  return [header.join(","), ...rows].join("\n") + "\n";
}

/** The figures of a sweep: val loss against each swept hyper-parameter. */
export function sweepFigures(r: SweepResult): Map<string, TopLevelSpec> {
  const figures = new Map<string, TopLevelSpec>();
  for (const p of r.params) {
    const points = r.rows.flatMap((row) => {
      const x = Number(row.values[p]);
      return row.val === null || !Number.isFinite(x) ? [] : [{ x, y: row.val, label: row.name }];
    });
    if (points.length === 0) continue;
    const xs = points.map((q) => q.x);
    const logX = Math.min(...xs) > 0 && Math.max(...xs) / Math.min(...xs) >= 10;
    figures.set(
      `val-vs-${p}`,
      scatter(`Val loss against --${p}`, { x: p, y: "val loss", logX }, points),
    );
  }
  return figures;
}

/** Writes sweep.json, sweep.csv, the figures and report.html into `dir`; returns their paths. */
export async function writeSweep(dir: string, r: SweepResult, title: string): Promise<string[]> {
  await writeFileAtomic(`${dir}/sweep.json`, JSON.stringify(r, null, 2) + "\n");
  await writeFileAtomic(`${dir}/sweep.csv`, toCsv(r));
  const svgs = await writeFigures(dir, sweepFigures(r));
  const order = [...r.rows].sort((a, b) => (a.val ?? Infinity) - (b.val ?? Infinity));
  const table = htmlTable(
    [
      ...r.params.map((p) => `--${p}`),
      "train",
      "val",
      "test",
      "val - train",
      "fit",
      "seconds",
      "status",
    ],
    order.map((row) => [
      ...r.params.map((p) => row.values[p] ?? ""),
      ...[row.train, row.val, row.test, row.gap].map((v) => v === null ? "" : Number(v.toFixed(4))),
      row.fit ?? "",
      row.seconds === null ? "" : Number(row.seconds.toFixed(1)),
      row.error ? `${row.status}: ${row.error}` : row.status,
    ]),
    (i) => order[i].name === r.best ? "best" : "",
  );
  const best = r.rows.find((row) => row.name === r.best);
  const body = `<p>${r.rows.length} runs; the best by val loss${
    best ? `: <b>${best.name}</b> (val ${best.val!.toFixed(4)})` : ": none finished"
  }. Sorted by val loss. <i>Fit</i> flags overfitting (val above train by more than 0.05 nats
and twice the sweep's median gap) and underfitting (val and train within 0.02, train 0.05 above
the sweep's best).</p>
${table}`;
  await writeFileAtomic(`${dir}/report.html`, htmlPage(title, body, svgs));
  const figures = [...svgs.keys()].map((name) => `${dir}/${name}.png`);
  return [`${dir}/sweep.json`, `${dir}/sweep.csv`, ...figures, `${dir}/report.html`];
}
