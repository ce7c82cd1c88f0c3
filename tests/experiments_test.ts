/**
 * The tools for studies and tuning: experiment, sweep and lr-find, on tiny data. What they write,
 * that a rerun skips finished runs, bad grids, and whether the learning-rate finder's
 * suggestion agrees with a sweep.
 */

import names from "../data/names.txt" with { type: "text" };
import { openBackend } from "../src/backend.ts";
import { makeDataset, parseWords } from "../src/data.ts";
import { exists } from "../src/files.ts";
import { findLr } from "../src/lr_find.ts";
import { initModel, type ModelConfig, PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { DEFAULT_SCHEDULE } from "../src/schedule.ts";
import { classify, grid, valuesOfName } from "../src/sweep.ts";
import { MemorySinks, SILENT, Trainer } from "../src/training.ts";
import { assert, assertEquals, type CliResult, runCli, testWith } from "./util.ts";

const NEEDS = ["read", "write", "run", "env"] as const;
const tiny = names.split("\n").slice(0, 600).join("\n") + "\n";

async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "makemore-exp-" });
  try {
    await Deno.writeTextFile(`${dir}/names.txt`, tiny);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const ALL = ["--allow-read", "--allow-write", "--allow-run", "--allow-env"];
const tool = (script: string, args: string[]) => runCli(script, args, { permissions: ALL });

function oneLineError(r: CliResult, pattern: RegExp): void {
  assert(r.code !== 0, `expected a failure:\n${r.stdout}`);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, r.stderr);
  assert(pattern.test(lines[0]), `'${lines[0]}' does not match ${pattern}`);
}

Deno.test("sweep: the grid, run names, and the fitting flags", () => {
  const g = grid([{ flag: "lr", values: ["0.1", "0.2"] }, { flag: "hidden", values: ["8", "16"] }]);
  assertEquals(g.length, 4);
  assertEquals(g[1], { lr: "0.1", hidden: "16" });
  assertEquals(valuesOfName("lr=0.1,hidden=16"), { lr: "0.1", hidden: "16" });
  const row = (train: number, val: number) => ({
    name: `${train}`,
    values: {},
    status: "finished",
    train,
    val,
    test: val,
    gap: val - train,
    seconds: 1,
    steps: 1,
  });
  const fits = classify([row(2.0, 2.02), row(2.0, 2.03), row(1.8, 2.1), row(2.3, 2.31)]);
  assertEquals(fits.map((r) => r.fit), [null, null, "overfitting", "underfitting"]);
});

testWith(
  NEEDS,
  "sweep: runs a grid, writes its report, skips finished runs when rerun",
  async () => {
    await inTempDir(async (dir) => {
      const args = [
        "--out",
        `${dir}/sweep`,
        "--data",
        `${dir}/names.txt`,
        "--preset",
        "lecture",
        "--hidden",
        "8,16",
        "--lr",
        "0.05,0.2",
        "--steps",
        "150",
        "--samples",
        "0",
      ];
      const first = await tool("sweep.ts", args);
      assertEquals(first.code, 0, first.stderr);
      assert(
        /best by val loss: hidden=\d+,lr=[\d.]+ \(val \d\.\d{4}\)/.test(first.stdout),
        first.stdout,
      );
      const csv = (await Deno.readTextFile(`${dir}/sweep/sweep.csv`)).trim().split("\n");
      assertEquals(csv[0], "hidden,lr,status,train,val,test,gap,fit,seconds,steps");
      assertEquals(csv.length, 5);
      const json = JSON.parse(await Deno.readTextFile(`${dir}/sweep/sweep.json`));
      assertEquals(json.rows.length, 4);
      assert(json.rows.every((r: { status: string }) => r.status === "finished"));
      const html = await Deno.readTextFile(`${dir}/sweep/report.html`);
      for (const f of ["val-vs-hidden", "val-vs-lr"]) {
        assert(html.includes(`<figure id="${f}"><svg`), f);
        assert((await Deno.stat(`${dir}/sweep/${f}.png`)).size > 1000, `${f}.png`);
      }
      const mtime = (await Deno.stat(`${dir}/sweep/runs/hidden=8,lr=0.05/run.json`)).mtime;
      const again = await tool("sweep.ts", args);
      assertEquals(again.code, 0, again.stderr);
      assertEquals(
        JSON.parse(await Deno.readTextFile(`${dir}/sweep/sweep.json`)).rows.map((
          r: { status: string },
        ) => r.status),
        ["skipped", "skipped", "skipped", "skipped"],
      );
      assertEquals((await Deno.stat(`${dir}/sweep/runs/hidden=8,lr=0.05/run.json`)).mtime, mtime);
      // The same grid as commands for other machines, and their results merged back.
      const printed = await tool("sweep.ts", [...args, "--print-commands"]);
      const commands = printed.stdout.trim().split("\n");
      assertEquals(commands.length, 4);
      assert(
        commands.every((c) => c.startsWith("deno task train ") && c.includes("--out ")),
        commands[0],
      );
      const merged = await tool("sweep.ts", [
        "--collect",
        "--out",
        `${dir}/merged`,
        `${dir}/sweep`,
      ]);
      assertEquals(merged.code, 0, merged.stderr);
      const m = JSON.parse(await Deno.readTextFile(`${dir}/merged/sweep.json`));
      assertEquals(m.best, json.best);
      assertEquals([...m.params].sort(), ["hidden", "lr"]);
    });
  },
);

testWith(NEEDS, "sweep: bad grid values get one line, before any run", async () => {
  await inTempDir(async (dir) => {
    const base = ["--out", `${dir}/bad`, "--data", `${dir}/names.txt`, "--steps", "10"];
    const cases: [string[], RegExp][] = [
      [["--lr", "0.1,fast"], /--lr must be a number \(or a ratio such as 5\/3\), got 'fast'/],
      [["--hidden", "8,,16"], /--hidden: an empty value in '8,,16'/],
      [["--hidden", "0,8"], /--hidden must be at least 1, got 0/],
      [
        ["--preset", "seed,huge"],
        new RegExp(`--preset must be one of ${Object.keys(PRESETS).join(", ")}, got 'huge'`),
      ],
      [["--lr", "0.1,0.1"], /--lr: 0.1 and 0.1 are the same value/],
      [["--lr", "0.1,0.10"], /--lr: 0.1 and 0.10 are the same value/],
      [["--init", "unit", "--gain", "1,2"], /--gain scales the Kaiming initialization/],
      [["--steps", "10,20", "stray"], /unexpected argument 'stray'/],
    ];
    for (const [args, pattern] of cases) {
      oneLineError(await tool("sweep.ts", [...base, ...args]), pattern);
      assert(!(await exists(`${dir}/bad/runs`)), args.join(" "));
    }
  });
});

testWith(NEEDS, "experiment: a study's runs and report; a rerun reuses them", async () => {
  await inTempDir(async (dir) => {
    const args = ["init", "--data", `${dir}/names.txt`, "--out", `${dir}/init`, "--steps", "30"];
    const r = await tool("experiment.ts", args);
    assertEquals(r.code, 0, r.stderr);
    const html = await Deno.readTextFile(`${dir}/init/report.html`);
    for (const label of ["gain 0.5", "gain 5/3", "gain 3", "unit (N(0,1))"]) {
      assert(html.includes(label), label);
    }
    for (const f of ["activations-1", "gradients-1", "update-ratio"]) {
      assert(html.includes(`<figure id="${f}"><svg`), f);
      assert((await Deno.stat(`${dir}/init/${f}.svg`)).size > 1000, f);
    }
    const before = (await Deno.stat(`${dir}/init/runs/unit/run.json`)).mtime;
    const again = await tool("experiment.ts", args);
    assertEquals(again.code, 0, again.stderr);
    assertEquals((await Deno.stat(`${dir}/init/runs/unit/run.json`)).mtime, before);
    oneLineError(
      await tool("experiment.ts", ["nope"]),
      /no study 'nope': one of init, batchnorm, lr/,
    );
  });
});

Deno.test("lr-find: the suggestion is within a factor of 3 of the best learning rate of a sweep", async () => {
  const words = parseWords(new TextEncoder().encode(names), "names.txt").slice(0, 4000);
  const dataset = makeDataset(words, 3, 42);
  const config: ModelConfig = {
    ...PRESETS.lecture.model,
    vocabSize: dataset.vocab.size,
    nHidden: 64,
  };
  const batchSize = 32;
  const init = initModel(config, new Rng(1));
  const fresh = async () => {
    const b = await openBackend({ kind: "webgpu", config, batchSize });
    b.setParams(init.params, init.buffers);
    return b;
  };
  const finder = await fresh();
  let suggested: number;
  try {
    const r = await findLr(finder, dataset.examples.train, new Rng(2), {
      lrMin: 1e-3,
      lrMax: 3,
      steps: 600,
      batchSize,
    });
    assert(r.suggestion.lr !== null && r.suggestion.why.includes("reaches 1e-3"), r.suggestion.why);
    suggested = r.suggestion.lr;
  } finally {
    finder.destroy();
  }
  const lrs = [0.01, 0.03, 0.1, 0.3, 1, 3];
  const val: number[] = [];
  for (const lr of lrs) {
    const backend = await fresh();
    try {
      const t = new Trainer({
        config,
        train: { steps: 1500, batchSize, lr, lrFinal: lr, decayAt: 10 ** 9 },
        seed: 42,
        dataset,
        data: { path: "names", sha256: "0".repeat(64) },
        backend,
        schedule: { ...DEFAULT_SCHEDULE, diagnostics: false, samples: 0, evalEvery: 0 },
        sinks: new MemorySinks(),
        reporter: SILENT,
      });
      await t.train();
      val.push((await t.finish())!.losses.val);
    } catch {
      val.push(Infinity); // diverged
    } finally {
      backend.destroy();
    }
  }
  const best = lrs[val.indexOf(Math.min(...val))];
  const factor = Math.max(best / suggested, suggested / best);
  assert(
    factor <= 3,
    `suggested ${suggested.toPrecision(2)}, best ${best} (val ${val.map((v) => v.toFixed(3))})`,
  );
});
