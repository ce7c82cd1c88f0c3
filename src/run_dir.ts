/**
 * A run directory: every file a training run writes, and all of its file I/O (the training
 * core, src/training.ts, only sees the Sinks this module provides).
 *
 *   model.safetensors  the checkpoint (src/checkpoint.ts)
 *   log.jsonl          a line per logEvery steps (mean loss, learning rate), a line per eval
 *   diagnostics.json   src/diagnostics.ts
 *   run.json           config, data, adapter, timings, final losses, samples
 *   figures, report.html (src/plots.ts)
 *   .lock              held (flock) while a run writes here; names its process
 *
 * `check` finds what would stop a run from writing here before any work is done, without
 * creating anything: a file in the way, no permission, a read-only file system, a run already
 * there. `open` then creates the directory, takes the lock (a second run on the same directory
 * is refused; a lock left by a killed run is free again, since the OS drops it with the
 * process), removes temporary files a killed run left, and refuses a directory that holds a
 * run unless the run is resumed or --overwrite says to replace it.
 */

import type { Checkpoint } from "./checkpoint.ts";
import { encodeCheckpoint } from "./checkpoint.ts";
import { type Diagnostics, emptyDiagnostics } from "./diagnostics.ts";
import { UserError } from "./errors.ts";
import { ioError, loadCheckpoint, TMP_SUFFIX, writeFileAtomic } from "./files.ts";
import type { LogEntry, Sinks } from "./training.ts";

export const CHECKPOINT_FILE = "model.safetensors";
export const LOG_FILE = "log.jsonl";
export const RUN_FILE = "run.json";
export const DIAGNOSTICS_FILE = "diagnostics.json";
export const REPORT_FILE = "report.html";
const LOCK_FILE = ".lock";

/** The files that make a directory a run directory (what --overwrite replaces). */
const RUN_FILES = [CHECKPOINT_FILE, LOG_FILE, RUN_FILE, DIAGNOSTICS_FILE, REPORT_FILE];
const FIGURE = /\.(png|svg)$/;

/** A new run (refuses a directory with a run in it), a resumed one, or a replacement. */
export type OpenMode = "new" | "resume" | "overwrite";

export class RunDir {
  readonly path: string;
  readonly #lock: Deno.FsFile;
  #log: Deno.FsFile | null = null;

  private constructor(path: string, lock: Deno.FsFile) {
    this.path = path;
    this.#lock = lock;
  }

  file(name: string): string {
    return `${this.path}/${name}`;
  }

  /**
   * What would stop a run in `path`, found before any work and without creating anything: a
   * file in the way, a missing directory to resume, no permission or a read-only file system
   * (a probe file is written and removed where the directory is, or would be, created), or a
   * run already there for a new one.
   */
  static async check(path: string, mode: OpenMode): Promise<void> {
    path = normalize(path);
    const info = await Deno.stat(path).catch((e) => {
      if (e instanceof Deno.errors.NotFound) return null;
      throw ioError(path, "use it as a run directory", e);
    });
    if (info && !info.isDirectory) throw new UserError(`${path}: exists and is not a directory`);
    if (!info && mode === "resume") throw new UserError(`--resume: ${path} does not exist`);
    if (info) await checkLock(path);
    // The directory, or the nearest one above it that exists, must take a new file.
    let dir = path;
    for (;;) {
      const found = await Deno.stat(dir).catch(() => null);
      if (found) {
        if (!found.isDirectory) throw new UserError(`${path}: ${dir} is not a directory`);
        break;
      }
      const up = dir.includes("/") ? dir.slice(0, dir.lastIndexOf("/")) || "/" : ".";
      if (up === dir) break;
      dir = up;
    }
    const probe = `${dir}/.probe.${Deno.pid}${TMP_SUFFIX}`;
    try {
      await Deno.writeFile(probe, new Uint8Array(1));
    } catch (e) {
      throw ioError(path, dir === path ? "write in it" : `create it in ${dir}`, e);
    } finally {
      await Deno.remove(probe).catch(() => {});
    }
    if (info && mode === "new") {
      const present: string[] = [];
      for await (const entry of Deno.readDir(path)) {
        if (entry.name !== LOCK_FILE && !entry.name.endsWith(TMP_SUFFIX)) present.push(entry.name);
      }
      if (present.length) throw notEmpty(path, present);
    }
  }

  /** Opens (creating it if need be) and locks a run directory; see the module comment. */
  static async open(path: string, mode: OpenMode): Promise<RunDir> {
    path = normalize(path);
    try {
      const info = await Deno.stat(path);
      if (!info.isDirectory) throw new UserError(`${path}: exists and is not a directory`);
    } catch (e) {
      if (e instanceof UserError) throw e;
      if (!(e instanceof Deno.errors.NotFound)) throw ioError(path, "use it as a run directory", e);
      if (mode === "resume") throw new UserError(`--resume: ${path} does not exist`);
      try {
        await Deno.mkdir(path, { recursive: true });
      } catch (e) {
        throw ioError(path, "create the run directory", e);
      }
    }
    const dir = new RunDir(path, await lockDirectory(path, "run"));
    try {
      await dir.#claim(mode);
    } catch (e) {
      dir.close();
      throw e;
    }
    return dir;
  }

  async #claim(mode: OpenMode): Promise<void> {
    const present: string[] = [];
    for await (const entry of Deno.readDir(this.path)) {
      const name = entry.name;
      if (name.endsWith(TMP_SUFFIX)) {
        // Ours, left by a killed run: whoever wrote it is gone, since we hold the lock.
        await Deno.remove(this.file(name)).catch(() => {});
      } else if (name !== LOCK_FILE) present.push(name);
    }
    const runFiles = present.filter(isRunFile);
    if (mode === "new" && present.length > 0) throw notEmpty(this.path, present);
    if (mode === "overwrite") {
      for (const name of runFiles) {
        await Deno.remove(this.file(name)).catch((e) => {
          throw ioError(this.file(name), "remove it", e);
        });
      }
    }
  }

  loadCheckpoint(): Promise<Checkpoint> {
    return loadCheckpoint(this.file(CHECKPOINT_FILE)).catch((e) => {
      if (e instanceof UserError && /no such checkpoint/.test(e.message)) {
        throw new UserError(
          `--resume: no checkpoint in ${this.path}/ (start a run without --resume)`,
        );
      }
      throw e;
    });
  }

  /** The diagnostics of the run up to `step` (what a resumed run continues), or none. */
  async readDiagnostics(step: number): Promise<Diagnostics> {
    const d = await readDiagnostics(this.path);
    if (!d) return emptyDiagnostics();
    const keep = d.updateRatios.steps.filter((s) => s <= step).length;
    return {
      snapshots: d.snapshots.filter((s) => s.step <= step),
      updateRatios: {
        steps: d.updateRatios.steps.slice(0, keep),
        tensors: d.updateRatios.tensors.map((t) => ({
          name: t.name,
          log10: t.log10.slice(0, keep),
        })),
      },
    };
  }

  /**
   * The sinks of a run starting (or resuming) at `step`: log.jsonl keeps its lines up to that
   * step and is appended to; checkpoints and diagnostics are written atomically.
   */
  async sinks(step: number): Promise<Sinks> {
    const path = this.file(LOG_FILE);
    const kept = (await readLog(this.path)).filter((e) => e.step <= step);
    await writeFileAtomic(path, kept.map((e) => JSON.stringify(e) + "\n").join(""));
    try {
      this.#log = await Deno.open(path, { append: true });
    } catch (e) {
      throw ioError(path, "open it", e);
    }
    const log = this.#log;
    const enc = new TextEncoder();
    return {
      log: async (entry: LogEntry) => {
        try {
          await log.write(enc.encode(JSON.stringify(entry) + "\n"));
        } catch (e) {
          throw ioError(path, "write it", e);
        }
      },
      save: async (ck: Checkpoint, diagnostics: Diagnostics | null) => {
        if (diagnostics) {
          await writeFileAtomic(this.file(DIAGNOSTICS_FILE), JSON.stringify(diagnostics) + "\n");
        }
        await writeFileAtomic(this.file(CHECKPOINT_FILE), encodeCheckpoint(ck));
      },
    };
  }

  async writeRunReport(report: unknown): Promise<void> {
    await writeFileAtomic(this.file(RUN_FILE), JSON.stringify(report, null, 2) + "\n");
  }

  /** Closes the log and releases the lock. */
  close(): void {
    this.#log?.close();
    this.#log = null;
    try {
      this.#lock.close(); // closing drops the flock
    } catch { /* already closed */ }
  }
}

async function lockedError(path: string, what: string): Promise<UserError> {
  const holder = (await Deno.readTextFile(`${path}/${LOCK_FILE}`).catch(() => "")).trim();
  return new UserError(
    `${path}: another ${what} is writing there (${holder || "process unknown"}); wait for it ` +
      "to end, or use another --out",
  );
}

/**
 * Takes the lock of a directory that must exist (a run's, or a sweep's): refused in one line,
 * naming the process that holds it, when another does. Released by closing what it returns (or
 * by the process ending: the OS drops an flock with its holder). Writing the holder's name also
 * proves that the directory is writable, before any work.
 */
export async function lockDirectory(path: string, what: string): Promise<Deno.FsFile> {
  let lock: Deno.FsFile;
  try {
    lock = await Deno.open(`${path}/${LOCK_FILE}`, { read: true, write: true, create: true });
  } catch (e) {
    throw ioError(path, "write in it", e);
  }
  if (!(await lock.tryLock(true))) {
    lock.close();
    throw await lockedError(path, what);
  }
  const text = new TextEncoder().encode(`process ${Deno.pid}, since ${new Date().toISOString()}\n`);
  try {
    await lock.truncate(0);
    await lock.seek(0, Deno.SeekMode.Start);
    await lock.write(text);
    await lock.syncData();
  } catch (e) {
    lock.close();
    throw ioError(path, "write in it", e);
  }
  return lock;
}

/** Refuses a directory whose lock another process holds (without taking it). */
export async function checkLock(path: string): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(`${path}/${LOCK_FILE}`, { read: true });
  } catch {
    return; // no lock file: nobody has run here
  }
  try {
    if (!(await file.tryLock(true))) throw await lockedError(path, "run");
  } finally {
    file.close(); // which also releases the lock, if this process just took it
  }
}

function normalize(path: string): string {
  if (path.trim() === "") throw new UserError("--out: no directory given (an empty path)");
  return path.replace(/\/+$/, "") || "/";
}

const isRunFile = (name: string) => RUN_FILES.includes(name) || FIGURE.test(name);

/** The files of a run in `path` (none if it does not exist). */
export async function runFilesIn(path: string): Promise<string[]> {
  const found: string[] = [];
  try {
    for await (const entry of Deno.readDir(path)) if (isRunFile(entry.name)) found.push(entry.name);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw ioError(path, "read it", e);
  }
  return found;
}

function notEmpty(path: string, present: string[]): UserError {
  const runFiles = present.filter(isRunFile);
  const what = runFiles.length ? `a run (${runFiles.slice(0, 3).join(", ")})` : "other files";
  return new UserError(
    `${path} already holds ${what}: continue it with --resume, replace it with --overwrite, ` +
      "or choose another --out",
  );
}

/** Reads a JSON file of a run, or null if it is missing or not JSON (a run cut short). */
async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw ioError(path, "read it", e);
  }
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const isNumber = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);

/**
 * The lines of a run's log.jsonl: lines that are not a complete entry (one cut off by a
 * crash, say) and losses that are not finite numbers are left out.
 */
export async function readLog(dir: string): Promise<LogEntry[]> {
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/${LOG_FILE}`);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw ioError(`${dir}/${LOG_FILE}`, "read it", e);
  }
  const out: LogEntry[] = [];
  for (const line of text.split("\n")) {
    let e: unknown;
    try {
      e = JSON.parse(line);
    } catch {
      continue;
    }
    if (!isObject(e) || !Number.isSafeInteger(e.step)) continue;
    if (isNumber(e.loss) && isNumber(e.lr)) {
      out.push({ step: e.step as number, loss: e.loss, lr: e.lr });
    } else if (isNumber(e.val)) out.push({ step: e.step as number, val: e.val });
  }
  return out;
}

/** A run's diagnostics.json, or null when it is missing, empty or not of the right shape. */
export async function readDiagnostics(dir: string): Promise<Diagnostics | null> {
  const d = await readJsonFile(`${dir}/${DIAGNOSTICS_FILE}`);
  if (!isObject(d) || !Array.isArray(d.snapshots) || !isObject(d.updateRatios)) return null;
  const r = d.updateRatios;
  if (!Array.isArray(r.steps) || !Array.isArray(r.tensors)) return null;
  return d as unknown as Diagnostics;
}

/** A run's run.json, or null when it is missing or unreadable. */
export async function readRunReport(dir: string): Promise<Record<string, unknown> | null> {
  const r = await readJsonFile(`${dir}/${RUN_FILE}`);
  return isObject(r) ? r : null;
}
