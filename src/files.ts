/** Small file helpers shared by the tools. */

import { UserError } from "./errors.ts";

/**
 * Reads a file the user named, turning the usual mistakes into a one-line UserError:
 * `${path}: no such ${what}`, a directory instead of a file, no permission.
 */
export async function readUserFile(path: string, what = "file"): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) throw new UserError(`${path}: no such ${what}`);
    if (e instanceof Deno.errors.IsADirectory) {
      throw new UserError(`${path}: is a directory, expected a ${what}`);
    }
    if (e instanceof Deno.errors.PermissionDenied) {
      throw new UserError(`${path}: permission denied`);
    }
    throw e;
  }
}

/**
 * Writes a file so that a reader (or a crash) sees either the old contents or the new ones,
 * never a half-written file: write a temporary file beside it, then rename over it (rename is
 * atomic within a directory on POSIX file systems).
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  try {
    if (typeof data === "string") await Deno.writeTextFile(tmp, data);
    else await Deno.writeFile(tmp, data);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}

export async function sha256Hex(data: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", data as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}
