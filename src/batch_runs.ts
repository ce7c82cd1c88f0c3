/**
 * Many training runs, for the experiments and sweeps: each a `deno task train` of its own (a
 * subprocess, so runs in parallel do not share a device, and a crash takes one run down, not
 * the batch), in a run directory of its own. `jobs` run at a time under one progress line. A
 * run that finished before (its run.json is there) is skipped; one that was interrupted (a
 * checkpoint, no run.json) is resumed. Ctrl-C reaches every child, which saves a checkpoint:
 * running the batch again picks up where it stopped.
 */

import { UserError } from "./errors.ts";
import { exists } from "./files.ts";
import { CHECKPOINT_FILE, readRunReport, RUN_FILE } from "./run_dir.ts";

/** One run: the train flags (without --out), and where it goes. */
export interface RunSpec {
  readonly name: string;
  readonly dir: string;
  readonly args: readonly string[];
  /** Its number of steps, for the progress line. */
  readonly steps: number;
}

export type RunStatus = "finished" | "skipped" | "failed" | "interrupted";

export interface RunOutcome {
  readonly spec: RunSpec;
  readonly status: RunStatus;
  /** The run's run.json, when it finished (now or before). */
  readonly report: Record<string, unknown> | null;
  /** The one line the run failed with. */
  readonly error?: string;
}

/** The command line that runs one spec (for --print-commands, and for the children). */
export function trainArgs(spec: RunSpec, resume: boolean): string[] {
  return resume
    ? ["--out", spec.dir, "--resume", "--no-plots"]
    : [...spec.args, "--out", spec.dir, "--no-plots"];
}

/** Runs every spec, `jobs` at a time; `progress` gets a line to show now and then. */
export async function runAll(
  specs: readonly RunSpec[],
  opts: { jobs: number; signal: AbortSignal; progress: (line: string) => void },
): Promise<RunOutcome[]> {
  const script = new URL("./cli/train.ts", import.meta.url).pathname;
  const done = new Map<string, number>(); // steps done, by run name
  const total = specs.reduce((a, s) => a + s.steps, 0);
  const started = performance.now();
  let finishedRuns = 0;
  let lastLine = 0;
  let lastText = "";
  const report = (force = false) => {
    const now = performance.now();
    if (!force && now - lastLine < 1000) return;
    lastLine = now;
    const steps = [...done.values()].reduce((a, b) => a + b, 0);
    const pct = total ? (100 * steps) / total : 100;
    const seconds = (now - started) / 1000;
    const eta = steps > 0 ? (seconds * (total - steps)) / steps : NaN;
    const text = `${finishedRuns}/${specs.length} runs, step ${steps.toLocaleString("en-US")}/` +
      `${total.toLocaleString("en-US")} (${pct.toFixed(1)}%)`;
    if (text === lastText && !force) return;
    lastText = text;
    opts.progress(text + (Number.isFinite(eta) ? `, ETA ${Math.round(eta)} s` : ""));
  };
  const children = new Set<Deno.ChildProcess>();
  const onAbort = () => {
    for (const c of children) {
      try {
        c.kill("SIGINT");
      } catch { /* already gone */ }
    }
  };
  opts.signal.addEventListener("abort", onAbort);

  const one = async (spec: RunSpec): Promise<RunOutcome> => {
    if (await exists(`${spec.dir}/${RUN_FILE}`)) {
      done.set(spec.name, spec.steps);
      finishedRuns++;
      return { spec, status: "skipped", report: await readRunReport(spec.dir) };
    }
    if (opts.signal.aborted) return { spec, status: "interrupted", report: null };
    const resume = await exists(`${spec.dir}/${CHECKPOINT_FILE}`);
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-read",
        "--allow-write",
        script,
        ...trainArgs(spec, resume),
        "--json",
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    children.add(child);
    const stderr = new Response(child.stderr).text();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    for (;;) {
      const { value, done: end } = await lines.read();
      if (end) break;
      buffered += value;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      for (const line of parts) {
        try {
          const e = JSON.parse(line);
          if (e.event === "progress" && Number.isFinite(e.step)) done.set(spec.name, e.step);
        } catch { /* not ours */ }
      }
      report();
    }
    const status = await child.status;
    children.delete(child);
    const err = (await stderr).trim().split("\n").filter(Boolean);
    if (status.code === 0) {
      done.set(spec.name, spec.steps);
      finishedRuns++;
      report(true);
      return { spec, status: "finished", report: await readRunReport(spec.dir) };
    }
    const interrupted = opts.signal.aborted || status.code === 130 || status.code === 143;
    return {
      spec,
      status: interrupted ? "interrupted" : "failed",
      report: null,
      error: err.find((l) => l.startsWith("error: "))?.slice(7) ?? err.at(-1) ??
        `exit code ${status.code}`,
    };
  };

  try {
    const queue = [...specs];
    const outcomes = new Map<string, RunOutcome>();
    const workers = Array.from({ length: Math.max(1, opts.jobs) }, async () => {
      for (let spec = queue.shift(); spec; spec = queue.shift()) {
        outcomes.set(spec.name, await one(spec));
      }
    });
    await Promise.all(workers);
    report(true);
    return specs.map((s) => outcomes.get(s.name)!);
  } finally {
    opts.signal.removeEventListener("abort", onAbort);
  }
}

/** A directory name for a run from its settings: "lr=0.1,hidden=200". */
export function slug(values: Readonly<Record<string, string>>): string {
  const s = Object.entries(values).map(([k, v]) => `${k}=${v}`).join(",");
  if (!s) return "base";
  if (/[\/\0]/.test(s)) throw new UserError(`a value cannot contain '/': ${s}`);
  return s;
}
