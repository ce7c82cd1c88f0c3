/**
 * `deno task lab`: builds the lab page (src/lab/) into a static folder and serves it on
 * 127.0.0.1. The folder is the whole site (index.html, lab.css, and lab.js: the page's code and
 * the training core bundled by `deno bundle`, with the kernels and the names inside), so any
 * web server, or GitHub Pages, can host it as it is: `--build DIR` only writes it.
 */

import { UserError } from "../errors.ts";
import { ioError } from "../files.ts";
import { runCommand } from "./common.ts";
import { defineCommand, type Values } from "./flags.ts";

const LAB = new URL("../lab/", import.meta.url);
const STATIC = ["index.html", "lab.css"];

const command = defineCommand({
  summary: "Serve the lab: train in a web page, on this computer's GPU, and watch it learn.",
  usage: "deno task lab [options]",
  groups: {
    Options: {
      port: {
        kind: "int",
        arg: "N",
        min: 0,
        max: 65535,
        help: "the port; 0 picks a free one",
        default: 8000,
      },
      host: { kind: "string", arg: "ADDR", help: "the address to listen on", default: "127.0.0.1" },
      build: {
        kind: "string",
        arg: "DIR",
        help: "only write the static site into DIR (for any web server, e.g. GitHub Pages)",
      },
    },
  },
  notes: "Open the printed URL in a browser with WebGPU (Chrome or Edge 113+, Safari 26+, " +
    "Firefox 141+ on Windows; on Linux, Chrome with --enable-unsafe-webgpu). Ctrl-C stops it.",
});

/** Writes the static site into `dir`: the bundle of src/lab/main.ts and the static files. */
export async function buildLab(dir: string): Promise<string[]> {
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    throw ioError(dir, "create it", e);
  }
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "bundle",
      "--quiet",
      "--platform",
      "browser",
      "--minify",
      "-o",
      `${dir}/lab.js`,
      new URL("main.ts", LAB).pathname,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`deno bundle failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  for (const f of STATIC) {
    try {
      await Deno.copyFile(new URL(f, LAB), `${dir}/${f}`);
    } catch (e) {
      throw ioError(`${dir}/${f}`, "write it", e);
    }
  }
  return ["lab.js", ...STATIC];
}

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  css: "text/css; charset=utf-8",
  js: "text/javascript; charset=utf-8",
};

/** Serves the files of `dir` (and nothing else) until the signal aborts. */
export function serveLab(
  dir: string,
  opts: { hostname: string; port: number; signal?: AbortSignal; onListen?: (url: string) => void },
): Deno.HttpServer<Deno.NetAddr> {
  return Deno.serve({
    hostname: opts.hostname,
    port: opts.port,
    signal: opts.signal,
    onListen: ({ hostname, port }) => opts.onListen?.(`http://${hostname}:${port}/`),
  }, async (req) => {
    const path = new URL(req.url).pathname;
    const name = path === "/" ? "index.html" : path.slice(1);
    if (!/^[\w.-]+$/.test(name)) return new Response("not found", { status: 404 });
    try {
      const body = await Deno.readFile(`${dir}/${name}`);
      const type = TYPES[name.split(".").pop()!] ?? "application/octet-stream";
      return new Response(body, { headers: { "content-type": type, "cache-control": "no-store" } });
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
}

async function main(values: Values<typeof command.groups>): Promise<void> {
  if (values.build !== undefined) {
    if (values.build === "") throw new UserError("--build: no directory given");
    const files = await buildLab(values.build);
    console.log(`wrote ${files.map((f) => `${values.build}/${f}`).join(", ")}`);
    return;
  }
  // Listening for the signals before anything exists: one that comes while the site is built,
  // or right as the URL is printed, still ends in the cleanup below.
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  const stopped = new AbortController();
  const stop = () => stopped.abort();
  for (const s of signals) Deno.addSignalListener(s, stop);
  const dir = await Deno.makeTempDir({ prefix: "makemore-lab-" });
  try {
    await buildLab(dir);
    if (stopped.signal.aborted) return;
    let server: Deno.HttpServer<Deno.NetAddr>;
    try {
      server = serveLab(dir, {
        hostname: values.host,
        port: values.port,
        signal: stopped.signal,
        onListen: (url) => console.log(`the lab is at ${url} (Ctrl-C stops it)`),
      });
    } catch (e) {
      if (e instanceof Deno.errors.AddrInUse) {
        throw new UserError(`port ${values.port} is in use: choose another with --port`);
      }
      const why = (e instanceof Error ? e.message : String(e)).split("\n")[0];
      throw new UserError(`cannot listen on ${values.host}:${values.port}: ${why}`);
    }
    await server.finished;
  } finally {
    for (const s of signals) Deno.removeSignalListener(s, stop);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) runCommand(command, main);
