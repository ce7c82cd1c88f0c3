/**
 * `deno task bench --browser`: the training loop of the bench, timed inside headless Chromium
 * (Dawn, on its software adapter, SwiftShader) through the lab page's own benchmark, for the
 * figure beside Deno's.
 */

import type { Browser } from "puppeteer-core";
import { buildLab, serveLab } from "../src/cli/lab.ts";
import { exists } from "../src/files.ts";
import type { PresetName } from "../src/model.ts";
import type {} from "../src/lab/hooks.ts";

/**
 * Headless Chromium with WebGPU (on SwiftShader without a GPU), as root if need be, with no
 * background traffic. `protocolTimeout`: the longest one call into the page may take.
 */
export async function launchChromium(
  executablePath: string,
  protocolTimeout?: number,
): Promise<Browser> {
  // Imported here, not at the top: puppeteer's dependencies read the environment as they load,
  // which would fail a plain `deno test` (no --allow-env) before the browser test could say it
  // is skipped.
  const { default: puppeteer } = await import("puppeteer-core");
  return await puppeteer.launch({
    executablePath,
    headless: true,
    protocolTimeout,
    args: [
      "--no-sandbox",
      "--enable-unsafe-webgpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** The Chromium to drive: $CHROMIUM, else Debian's. Read when needed (it takes --allow-env). */
export const chromiumPath = (): string => Deno.env.get("CHROMIUM") ?? "/usr/bin/chromium";

export async function benchInBrowser(
  preset: PresetName,
  o: { rounds: number; chunks: number; "chunk-steps": number },
): Promise<{ usPerStep: number; adapter: string } | { error: string }> {
  const chromium = chromiumPath();
  if (!(await exists(chromium))) {
    return { error: `no Chromium at ${chromium}` };
  }
  const site = await Deno.makeTempDir({ prefix: "makemore-lab-" });
  const stop = new AbortController();
  const listening = Promise.withResolvers<string>();
  try {
    await buildLab(site);
    const server = serveLab(site, {
      hostname: "127.0.0.1",
      port: 0,
      signal: stop.signal,
      onListen: listening.resolve,
    });
    // One evaluate holds the whole timed loop: ~3,000 seed steps at SwiftShader's ~50 ms
    // each overrun puppeteer's default 180 s protocol timeout.
    const browser = await launchChromium(chromium, 30 * 60_000);
    try {
      const page = await browser.newPage();
      await page.goto(await listening.promise);
      await page.waitForFunction(() => globalThis.lab?.ready, { timeout: 30_000 });
      return await page.evaluate(
        (p, rounds, chunks, chunkSteps) =>
          globalThis.lab.bench(
            p as "seed",
            rounds as number,
            chunks as number,
            chunkSteps as number,
          ),
        preset,
        o.rounds,
        o.chunks,
        o["chunk-steps"],
      );
    } finally {
      await browser.close();
      stop.abort();
      await server.finished;
    }
  } catch (e) {
    return { error: e instanceof Error ? e.message.split("\n")[0] : String(e) };
  } finally {
    await Deno.remove(site, { recursive: true });
  }
}
