/**
 * File helpers shared by the command-line tools (Deno only; the training core never touches
 * files). Every failure a user can cause or fix is a one-line UserError naming the path.
 */

import { type Checkpoint, decodeCheckpoint } from "./checkpoint.ts";
import { parseWords } from "./data.ts";
import { UserError } from "./errors.ts";

const MiB = 1024 * 1024;
/** The largest data file read: far more than any list of names (makemore's is 0.2 MiB). */
export const MAX_DATA_BYTES = 64 * MiB;
/** The largest checkpoint read: the biggest model the flags allow is ~270 MiB. */
export const MAX_CHECKPOINT_BYTES = 1024 * MiB;

/** Whether something (a file, a directory, anything) is at `path`; never throws. */
export const exists = (path: string): Promise<boolean> =>
  Deno.stat(path).then(() => true, () => false);

/** "No space left on device", from "No space left on device (os error 28): write 'x'". */
function reason(e: unknown): string {
  if (e instanceof Deno.errors.NotFound) return "no such file or directory";
  if (e instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (e instanceof Deno.errors.AlreadyExists) return "already exists";
  if (e instanceof Deno.errors.IsADirectory) return "is a directory";
  if (e instanceof Deno.errors.NotADirectory) return "a part of the path is not a directory";
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split("\n")[0].replace(/\s*\(os error \d+\).*$/, "").replace(/[:,]\s*$/, "");
}

/** An I/O failure as a UserError: `${path}: cannot ${doing}: ${reason}`. */
export function ioError(path: string, doing: string, e: unknown): UserError {
  return new UserError(`${path}: cannot ${doing}: ${reason(e)}`);
}

/**
 * Reads a file the user named, turning the usual mistakes into a one-line UserError: no such
 * file, a directory, a device or FIFO instead of a regular file (which could block or never
 * end), a file over `maxBytes`, no permission. At most maxBytes are ever read.
 */
export async function readUserFile(
  path: string,
  what = "file",
  maxBytes = MAX_DATA_BYTES,
): Promise<Uint8Array> {
  if (path === "") throw new UserError(`no ${what} given (an empty path)`);
  let file: Deno.FsFile;
  try {
    const info = await Deno.stat(path);
    if (info.isDirectory) throw new UserError(`${path}: is a directory, expected a ${what}`);
    if (!info.isFile) {
      throw new UserError(
        `${path}: not a regular file (a device, FIFO or socket), expected a ${what}`,
      );
    }
    if (info.size > maxBytes) {
      throw new UserError(
        `${path}: ${(info.size / MiB).toFixed(0)} MiB, more than the ${maxBytes / MiB} MiB ` +
          `a ${what} may have`,
      );
    }
    file = await Deno.open(path, { read: true });
  } catch (e) {
    if (e instanceof UserError) throw e;
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: no such ${what}`);
    throw ioError(path, "read it", e);
  }
  try {
    // Read with a bound even though the size was checked: the file may grow meanwhile.
    const chunks: Uint8Array[] = [];
    let total = 0;
    const buf = new Uint8Array(MiB);
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      total += n;
      if (total > maxBytes) {
        throw new UserError(`${path}: more than the ${maxBytes / MiB} MiB a ${what} may have`);
      }
      chunks.push(buf.slice(0, n));
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw ioError(path, "read it", e);
  } finally {
    file.close();
  }
}

/** The suffix of every temporary file: `${path}.${pid}.tmp`. */
export const TMP_SUFFIX = ".tmp";

/**
 * Writes a file so that a reader (or a crash) sees either the old contents or the new ones,
 * never a half-written file: write a temporary file beside it, then rename over it (rename is
 * atomic within a directory on POSIX file systems). Failures are one-line UserErrors.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${Deno.pid}${TMP_SUFFIX}`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw ioError(path, "write it", e);
  }
}

/**
 * Checks, before any work, that `path` can be written as a file: not a directory, in a
 * directory that exists, on a file system that takes a write (a probe file is written and
 * removed).
 */
export async function checkWritable(path: string): Promise<void> {
  if (path === "") throw new UserError("--out: no file given (an empty path)");
  const info = await Deno.stat(path).catch(() => null);
  if (info?.isDirectory) throw new UserError(`${path}: is a directory, expected a file`);
  const probe = `${path}.${Deno.pid}${TMP_SUFFIX}`;
  try {
    await Deno.writeFile(probe, new Uint8Array(1));
  } catch (e) {
    throw ioError(path, "write it", e);
  } finally {
    await Deno.remove(probe).catch(() => {});
  }
}

/** Reads and validates a words file (src/data.ts); every failure is a one-line UserError. */
export async function readWords(path: string): Promise<string[]> {
  return parseWords(await readUserFile(path), path);
}

/** Reads and validates a checkpoint (src/checkpoint.ts). */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  return decodeCheckpoint(await readUserFile(path, "checkpoint", MAX_CHECKPOINT_BYTES), path);
}

/** `path` made absolute against the working directory (no file system access). */
export function absolutePath(path: string): string {
  if (path.startsWith("/")) return path;
  const parts = `${Deno.cwd()}/${path}`.split("/");
  const out: string[] = [];
  for (const p of parts) {
    if (p === "" || p === ".") continue;
    if (p === "..") out.pop();
    else out.push(p);
  }
  return "/" + out.join("/");
}
