/// <reference lib="dom" />
/**
 * The lab in a real browser: headless Chromium (its WebGPU is Dawn, its WGSL compiler Tint, its
 * adapter SwiftShader on the CPU), driven by puppeteer-core. The page is the one
 * `deno task lab` serves, built and served by the same code.
 *
 * Chromium comes from the system (Debian: apt-get install chromium; .ci/run installs it), or
 * from $CHROMIUM.
 */

import type { Browser, Page } from "puppeteer-core";
import { chromiumPath, launchChromium } from "../bench/browser.ts";
import { buildLab, serveLab } from "../src/cli/lab.ts";
import { exists } from "../src/files.ts";
import { BROWSER_MESSAGES } from "../src/lab/session.ts";
import type {} from "../src/lab/hooks.ts";
import names from "../data/names.txt" with { type: "text" };
import { batchOf, drawBatches } from "../src/batches.ts";
import { makeDataset, parseWords } from "../src/data.ts";
import { FAMILIES } from "../src/gpu/model.ts";
import { initModel, learningRate, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import {
  assert,
  assertClose,
  assertEquals,
  conformantTolerances,
  runCli,
  testWith,
} from "./util.ts";

const launch = () => launchChromium(chromiumPath());

/**
 * How far two conformant implementations may drift apart over `steps` steps of the lecture
 * preset on data/names.txt, as the CLI and the page run it (seed 42): the logged losses, and the
 * val loss after them (standing in for the final losses, whose calibration over the training
 * split would cost the estimate a minute).
 */
function lectureTolerances(steps: number): Record<string, number> {
  const p = PRESETS.lecture;
  const ds = makeDataset(parseWords(new TextEncoder().encode(names), "names.txt"), 3, 42);
  const config = { ...p.model, vocabSize: ds.vocab.size };
  const init = initModel(config, new Rng(43));
  const B = p.train.batchSize;
  const batches = drawBatches(new Rng(44), ds.examples.train, steps, B);
  return conformantTolerances((make) => {
    const m = make(config, init.params, init.buffers);
    const losses: number[] = [];
    let sum = 0;
    for (let s = 0; s < steps; s++) {
      const { ctx, targets } = batchOf(batches, s, B, config.blockSize);
      sum += m.step(ctx, targets, learningRate(p.train, s));
      if ((s + 1) % 100 === 0) {
        losses.push(sum / 100);
        sum = 0;
      }
    }
    return { losses, val: [m.evaluate(ds.examples.val)] };
  });
}

/** A page of the lab, ready, with its errors collected. */
async function open(
  browser: Browser,
  url: string,
  before?: () => void,
): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1000 });
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(String((e as Error).message ?? e)));
  if (before) await page.evaluateOnNewDocument(before);
  await page.goto(url);
  await page.waitForFunction(() => globalThis.lab?.ready, { timeout: 30_000 });
  return { page, errors };
}

const message = (page: Page) =>
  page.$eval("#message", (e) => ((e as HTMLElement).hidden ? "" : e.textContent ?? ""));

/** Waits until the run that a click started is over: finished, paused, or an error shown. */
async function settle(page: Page, timeout = 300_000): Promise<string> {
  await page.waitForFunction(() => {
    const phase = globalThis.lab.session.phase;
    const m = document.getElementById("message")!;
    return phase === "finished" || phase === "paused" || (!m.hidden && m.className !== "note");
  }, { timeout });
  return await page.evaluate(() => globalThis.lab.session.phase);
}

async function setFields(page: Page, fields: Record<string, string>): Promise<void> {
  for (const [id, value] of Object.entries(fields)) {
    await page.$eval(`#${id}`, (e, v) => ((e as HTMLInputElement).value = v as string), value);
  }
}

testWith(["read", "write", "run", "env", "net"], "browser: the lab in Chromium", async (t) => {
  const path = chromiumPath();
  assert(
    await exists(path),
    `no Chromium at ${path}: apt-get install chromium, or set $CHROMIUM`,
  );
  const site = await Deno.makeTempDir({ prefix: "makemore-lab-" });
  const work = await Deno.makeTempDir({ prefix: "makemore-browser-" });
  const stop = new AbortController();
  let url = "";
  const listening = Promise.withResolvers<void>();
  await buildLab(site);
  const server = serveLab(site, {
    hostname: "127.0.0.1",
    port: 0,
    signal: stop.signal,
    onListen: (u) => {
      url = u;
      listening.resolve();
    },
  });
  await listening.promise;
  const browser = await launch();
  try {
    const { page, errors } = await open(browser, url);
    const adapter = await page.evaluate(async () => {
      const a = await navigator.gpu.requestAdapter();
      return a ? `${a.info.vendor} ${a.info.architecture}` : "none";
    });

    await t.step(
      "every kernel entry point and variant compiles and validates in Tint",
      async () => {
        const compiled = await page.evaluate(() => globalThis.lab.compileKernels());
        assert(compiled.length >= 12, `compiled ${compiled.join(", ")}`);
      },
    );

    await t.step(`the kernels match the CPU reference inside the page (${adapter})`, async () => {
      const results = await page.evaluate(() => globalThis.lab.checkKernels());
      assert(results.length > 100, `${results.length} comparisons`);
      const bad = results.filter((r) => !(r.error <= r.tolerance));
      assertEquals(bad, [], "every tensor within its bound");
      // Every kernel variant of both families also ran alone (src/gpu/kernel_check.ts).
      const alone = Object.values(FAMILIES).flatMap((f) =>
        Object.keys(f.entryPoints).map((k) => [f.name, k] as const)
      ).filter(([f, k]) =>
        !results.some((r) => r.name.startsWith(`${f} kernels`) && r.name.includes(`: ${k} alone (`))
      );
      assertEquals(alone, [], "kernels never checked alone in the page");
    });

    // The CLI's run of the same settings, to compare with.
    const cli = await runCli("train.ts", [
      "--preset",
      "lecture",
      "--steps",
      "500",
      "--out",
      `${work}/cli`,
      "--no-plots",
      "--samples",
      "0",
      "--eval-every",
      "0",
    ]);
    assertEquals(cli.code, 0, cli.stderr);
    const cliLog = (await Deno.readTextFile(`${work}/cli/log.jsonl`)).trim().split("\n")
      .map((l) => JSON.parse(l));

    await t.step(
      "500 lecture steps in the page give the CLI's losses; the figures show the finished run",
      async () => {
        await page.select("#preset", "lecture");
        await setFields(page, { steps: "500" });
        await page.click("#start");
        assertEquals(await settle(page), "finished", await message(page));
        // Every figure ends up drawn from the run's final log and snapshots (a redraw asked
        // for while another was drawing used to be dropped, leaving an earlier picture).
        await page.waitForFunction(() => {
          const s = globalThis.lab.session;
          const figures = [...document.querySelectorAll<HTMLElement>("#charts figure")];
          return figures.length === 6 &&
            figures.every((f) =>
              f.querySelector("svg") && f.dataset.entries === String(s.sinks.entries.length) &&
              f.dataset.snapshots === String(s.trainer!.diagnostics.snapshots.length)
            );
        });
        const entries = await page.evaluate(() => globalThis.lab.session.sinks.entries);
        const losses = (log: { step: number; loss?: number }[]) =>
          log.filter((e) => e.loss !== undefined).map((e) => [e.step, e.loss!]);
        const mine = losses(entries as { step: number; loss?: number }[]);
        const theirs = losses(cliLog);
        assertEquals(mine.map(([s]) => s), theirs.map(([s]) => s));
        // Two implementations, each within a conformant GPU's drift of the exact run.
        const tol = lectureTolerances(500);
        assertClose(
          "the logged losses, page against CLI",
          mine.map(([, l]) => l),
          theirs.map(([, l]) => l),
          tol.losses,
        );
        const cliRun = JSON.parse(await Deno.readTextFile(`${work}/cli/run.json`));
        const page1 = await page.evaluate(() => globalThis.lab.session.finished!.losses);
        for (const split of ["train", "val", "test"] as const) {
          const ref = cliRun.losses[split];
          assertClose(`${split} loss, page against CLI`, [page1[split]], [ref], tol.val);
        }
        assert(
          (await page.$eval("#progress", (e) => e.textContent))!.startsWith("finished 500 steps"),
        );
      },
    );

    await t.step(
      "samples appear, and the downloaded model samples the same names in the CLI",
      async () => {
        await setFields(page, { count: "15", sampleSeed: "7" });
        await page.click("#sample");
        await page.waitForSelector("#samples li");
        const names = await page.$$eval("#samples li", (l) => l.map((x) => x.textContent));
        assertEquals(names.length, 15);
        const cdp = await page.createCDPSession();
        await cdp.send("Browser.setDownloadBehavior", { behavior: "allow", downloadPath: work });
        await page.click("#download");
        const file = `${work}/model.safetensors`;
        for (let i = 0; i < 100 && !(await exists(file)); i++) {
          await new Promise((r) => setTimeout(r, 100));
        }
        const r = await runCli(
          "sample.ts",
          ["--checkpoint", file, "--count", "15", "--seed", "7"],
          {
            permissions: ["--allow-read"],
          },
        );
        assertEquals(r.code, 0, r.stderr);
        assertEquals(r.stdout.split("\n").slice(0, 15), names);
        // And the other way: the CLI's checkpoint loads in the page and samples the same.
        const input = await page.$("#ck-file");
        await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(
          `${work}/cli/model.safetensors`,
        );
        await page.waitForFunction(() => document.querySelector("#ck-info")!.textContent !== "");
        await page.click("#reset");
        await setFields(page, { count: "16" });
        await page.click("#sample");
        await page.waitForFunction(() => document.querySelectorAll("#samples li").length === 16);
        const fromCli = await runCli(
          "sample.ts",
          ["--checkpoint", `${work}/cli/model.safetensors`, "--count", "16", "--seed", "7"],
          { permissions: ["--allow-read"] },
        );
        assertEquals(
          await page.$$eval("#samples li", (l) => l.map((x) => x.textContent)),
          fromCli.stdout.split("\n").slice(0, 16),
        );
      },
    );

    await t.step(
      "bad data and bad checkpoints get their message, and the page goes on",
      async () => {
        const files: Record<string, [Uint8Array, RegExp]> = {
          "empty.txt": [new Uint8Array(), /empty\.txt: the file is empty/],
          "binary.txt": [new Uint8Array([0x61, 0, 0x62]), /binary\.txt:1: binary content/],
          "dots.txt": [
            new TextEncoder().encode("ann\nj.r.\n"),
            /dots\.txt:2: 'j\.r\.' contains '\.'/,
          ],
          "utf.txt": [new Uint8Array([0x61, 0xff, 0x0a]), /utf\.txt: not valid UTF-8/],
        };
        for (const [name, [bytes, pattern]] of Object.entries(files)) {
          await Deno.writeFile(`${work}/${name}`, bytes);
          const input = await page.$("#data-file");
          await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(
            `${work}/${name}`,
          );
          await page.waitForFunction(() => !document.getElementById("message")!.hidden);
          const m = await message(page);
          assert(pattern.test(m), `${name}: '${m}'`);
          assertEquals(
            await page.$eval("#data-info", (e) => e.textContent!.startsWith("names.txt")),
            true,
          );
        }
        // Fields are checked with the command line's rules, and marked in place.
        const fieldCases: [Record<string, string>, string, RegExp][] = [
          [{ topK: "2.5" }, "#sample", /^Top-k \(0: all\) must be a whole number, got '2\.5'$/],
          [{ count: "5000" }, "#sample", /^Names must be at most 1000, got 5000$/],
          [{ lrFinal: "" }, "#start", /^Final learning rate must be a number .*got ''$/],
          [{ seed: "-1" }, "#start", /^Seed must be at least 0, got -1$/],
        ];
        for (const [fields, button, pattern] of fieldCases) {
          const [id] = Object.keys(fields);
          const kept = await page.$eval(`#${id}`, (e) => (e as HTMLInputElement).value);
          await setFields(page, fields);
          await page.click(button);
          await page.waitForFunction(() => !document.getElementById("message")!.hidden);
          const m = await message(page);
          assert(pattern.test(m), `${id}: '${m}'`);
          assert(
            await page.$eval(`#${id}`, (e) => e.parentElement!.classList.contains("invalid")),
            `${id} is marked`,
          );
          assertEquals(await page.evaluate(() => globalThis.lab.session.busy), false, "no run");
          await setFields(page, { [id]: kept });
        }
        await Deno.writeFile(`${work}/corrupt.safetensors`, new Uint8Array(100).fill(0x7b));
        const ck = await page.$("#ck-file");
        await (ck as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(
          `${work}/corrupt.safetensors`,
        );
        await page.waitForFunction(() =>
          /not a valid checkpoint/.test(document.getElementById("message")!.textContent!)
        );
        // A checkpoint of other data cannot continue on these.
        await Deno.writeTextFile(`${work}/few.txt`, "anna\nbob\ncarla\ndave\nedith\n".repeat(20));
        const data = await page.$("#data-file");
        await (data as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(
          `${work}/few.txt`,
        );
        await page.waitForFunction(() =>
          /few\.txt/.test(document.getElementById("data-info")!.textContent!)
        );
        await (ck as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(
          `${work}/model.safetensors`,
        );
        await page.waitForFunction(() =>
          !(document.getElementById("continue") as HTMLButtonElement).disabled
        );
        await page.click("#continue");
        await page.waitForFunction(() =>
          /few\.txt is not the data the checkpoint was trained on/.test(
            document.getElementById("message")!.textContent!,
          )
        );
      },
    );

    await t.step(
      "a comparison from a link: the runs train together, a fresh page of the same link gives the same losses, each run is the run alone; One step shows what it changed",
      async () => {
        const link = `${url}?preset=lecture&steps=300&seed=7&compareAxis=lr&compareValues=0.05,0.3`;
        type Result = { losses: unknown; log: unknown }[];
        const compare = async (p: Page): Promise<Result> => {
          await p.click("#compare");
          await p.waitForFunction(
            () => document.getElementById("compare-runs")!.dataset.state === "finished",
            { timeout: 600_000 },
          );
          return await p.evaluate(() =>
            globalThis.lab.comparison()!.runs.map((r) => ({
              losses: r.finished?.losses ?? r.error,
              log: r.sinks.entries,
            }))
          );
        };
        const first = await open(browser, link);
        const a = await compare(first.page);
        assertEquals(a.length, 2);
        // The address is the page's settings: what it carries back is what it was given.
        const address = new URL(first.page.url());
        for (const [k, v] of [["seed", "7"], ["steps", "300"], ["compareValues", "0.05,0.3"]]) {
          assertEquals(address.searchParams.get(k), v, k);
        }
        // Each run in its colour, in the list and in the overlaid loss curves.
        const colours = await first.page.$$eval(
          "#compare-runs li",
          (l) => l.map((x) => (x as HTMLElement).style.getPropertyValue("--run")),
        );
        assertEquals(new Set(colours).size, 2);
        const svg = await first.page.$eval("#fig-compare-loss", (f) => f.innerHTML);
        for (const c of colours) assert(svg.includes(c), `the loss chart draws ${c}`);
        assertEquals(
          await first.page.$$eval("#compare-activations figure svg", (l) => l.length),
          2,
          "each run's histograms, side by side",
        );
        await first.page.close();
        const second = await open(browser, address.href);
        assertEquals(await compare(second.page), a, "the same link, the same losses");
        // The second run (lr 0.3) alone, with Train: exactly the run it was in the group.
        await setFields(second.page, { lr: "0.3" });
        await second.page.click("#start");
        assertEquals(await settle(second.page), "finished", await message(second.page));
        const alone = await second.page.evaluate(() => ({
          losses: globalThis.lab.session.finished!.losses,
          log: globalThis.lab.session.sinks.entries,
        }));
        assertEquals(alone, a[1], "a compared run is its run alone");
        // One step: a new run's first step, then its second, each with what it changed.
        await second.page.click("#reset");
        for (const step of ["1", "2"]) {
          await second.page.click("#one-step");
          await second.page.waitForFunction(
            (s) => document.getElementById("step-change")!.dataset.step === s,
            { timeout: 60_000 },
            step,
          );
        }
        const rows = await second.page.$$eval(
          "#step-change tr",
          (l) => l.map((r) => [...r.children].map((c) => c.textContent)),
        );
        assertEquals(rows.length, 1 + 6, "a row per parameter tensor of the lecture MLP");
        assert(rows.slice(1).every((r) => Number.isFinite(Number(r[1]))), JSON.stringify(rows));
        assertEquals(await second.page.evaluate(() => globalThis.lab.session.phase), "paused");
        assertEquals(first.errors.concat(second.errors), []);
        await second.page.close();
      },
    );

    // The run on the new device is paused, not finished: finishing (calibration and the losses
    // of every split, ~25 s in SwiftShader) is what the 500-step test checks already.
    await t.step("a lost device is reported; Reset and Train start again, and Pause", async () => {
      const training = () =>
        page.waitForFunction(
          () => globalThis.lab.session.trainer && globalThis.lab.session.trainer.step > 0,
          { timeout: 60_000 },
        );
      await page.click("#data-bundled");
      await setFields(page, { steps: "100000" });
      await page.click("#start");
      await training();
      await page.evaluate(() => globalThis.lab.loseDevice());
      await page.waitForFunction(
        () => /the GPU device was lost/.test(document.getElementById("message")!.textContent!),
        {
          timeout: 30_000,
        },
      );
      await page.click("#reset");
      await page.click("#start");
      await training();
      await page.click("#pause");
      assertEquals(await settle(page), "paused", await message(page));
      // An error after a checkpoint also ends in "paused": the bar must hold no error.
      const error = await page.$eval(
        "#message",
        (m) => !(m as HTMLElement).hidden && m.className !== "note",
      );
      assert(!error, await message(page));
    });

    await t.step(
      "a double click trains once; Reset while training shows no error; a checkpoint loaded after a run is the one used",
      async () => {
        // A fresh page that counts the devices it opens.
        const fresh = await open(browser, url, () => {
          const counted = GPUAdapter.prototype.requestDevice;
          (globalThis as unknown as { devices: number }).devices = 0;
          GPUAdapter.prototype.requestDevice = function (d) {
            (globalThis as unknown as { devices: number }).devices++;
            return counted.call(this, d);
          };
        });
        const p = fresh.page;
        const devices = () =>
          p.evaluate(() => (globalThis as unknown as { devices: number }).devices);
        await p.select("#preset", "lecture");
        await setFields(p, { steps: "100000" });
        // Two clicks in one go, as a double click lands.
        await p.$eval("#start", (b) => {
          (b as HTMLButtonElement).click();
          (b as HTMLButtonElement).click();
        });
        await p.waitForFunction(
          () => globalThis.lab.session.trainer && globalThis.lab.session.trainer.step > 0,
          { timeout: 60_000 },
        );
        assertEquals(await devices(), 1, "one device, one run");
        await p.click("#pause");
        assertEquals(await settle(p), "paused", await message(p));
        await p.click("#resume");
        await p.waitForFunction(() => globalThis.lab.session.phase === "training");
        // Reset while it trains: the chunk in flight ends before the device goes, silently.
        await p.click("#reset");
        await p.evaluate(() => globalThis.lab.session.settled());
        assertEquals(await p.evaluate(() => globalThis.lab.session.phase), "idle");
        const error = await p.$eval(
          "#message",
          (m) => !(m as HTMLElement).hidden && m.className !== "note" ? m.textContent : "",
        );
        assertEquals(error, "", "no error after Reset");
        // Train again, pause, then load the CLI's checkpoint: Sample uses the loaded model.
        await p.click("#start");
        await p.waitForFunction(
          () => globalThis.lab.session.trainer && globalThis.lab.session.trainer.step > 0,
          { timeout: 60_000 },
        );
        await p.click("#pause");
        assertEquals(await settle(p), "paused", await message(p));
        const input = await p.$("#ck-file");
        await (input as unknown as { uploadFile(p: string): Promise<void> }).uploadFile(
          `${work}/cli/model.safetensors`,
        );
        await p.waitForFunction(() => document.querySelector("#ck-info")!.textContent !== "");
        await setFields(p, { count: "12", sampleSeed: "5" });
        await p.click("#sample");
        await p.waitForFunction(() => document.querySelectorAll("#samples li").length === 12);
        const fromCli = await runCli(
          "sample.ts",
          ["--checkpoint", `${work}/cli/model.safetensors`, "--count", "12", "--seed", "5"],
          { permissions: ["--allow-read"] },
        );
        assertEquals(
          await p.$$eval("#samples li", (l) => l.map((x) => x.textContent)),
          fromCli.stdout.split("\n").slice(0, 12),
        );
        assertEquals(fresh.errors, [], "no uncaught errors in the page");
        await p.close();
      },
    );

    // The picture in the README: a fresh page after 3,000 steps of the lecture's network.
    const shot = Deno.env.get("LAB_SCREENSHOT");
    if (shot) {
      const fresh = await open(browser, url);
      await fresh.page.setViewport({ width: 2100, height: 1200 });
      await fresh.page.select("#preset", "lecture");
      await setFields(fresh.page, { steps: "3000" });
      await fresh.page.click("#start");
      await fresh.page.waitForFunction(() => globalThis.lab.session.phase === "training");
      await settle(fresh.page, 600_000);
      await fresh.page.click("#sample");
      await fresh.page.waitForSelector("#samples li");
      await new Promise((r) => setTimeout(r, 2000));
      await fresh.page.screenshot({ path: shot as `${string}.png`, fullPage: true });
      await fresh.page.close();
    }
    assertEquals(errors, [], "no uncaught errors in the page");

    await t.step("no WebGPU, or no adapter: the page says what to do", async () => {
      const none = await open(browser, url, () => {
        Object.defineProperty(Navigator.prototype, "gpu", { get: () => undefined });
      });
      assertEquals(await message(none.page), BROWSER_MESSAGES.noWebGpu);
      const noAdapter = await open(browser, url, () => {
        GPU.prototype.requestAdapter = () => Promise.resolve(null);
      });
      await noAdapter.page.select("#preset", "lecture");
      await setFields(noAdapter.page, { steps: "10" });
      await noAdapter.page.click("#start");
      await noAdapter.page.waitForFunction(() => !document.getElementById("message")!.hidden);
      assertEquals(await message(noAdapter.page), BROWSER_MESSAGES.noAdapter);
      assertEquals(none.errors.concat(noAdapter.errors), []);
    });
  } finally {
    await browser.close();
    stop.abort();
    await server.finished;
    await Deno.remove(site, { recursive: true });
    await Deno.remove(work, { recursive: true });
  }
});
