/**
 * Many runs at once from the command line (issue #22): `train --seeds K` and `--runs FILE`
 * train their runs as one group of replicas, each run exactly its `train` alone, with the mean
 * and spread of the seeds' losses; sweeps group their runs of one shape (`--replicas`), and a
 * group stopped by a signal saves every run's checkpoint and goes on when run again. Bad input
 * is one line, before any run.
 */

import { decodeCheckpoint } from "../src/checkpoint.ts";
import { exists } from "../src/files.ts";
import { assert, assertEquals, type CliResult, spawnHeld, testWith } from "./util.ts";
import { ALL, inTempDir, lectureOn, NEEDS, oneLineError, tool } from "./cli_batch.ts";

/** What a run left that does not depend on how it was trained (not its timings). */
async function outcome(dir: string) {
  const ck = decodeCheckpoint(await Deno.readFile(`${dir}/model.safetensors`), dir);
  const report = JSON.parse(await Deno.readTextFile(`${dir}/run.json`));
  return {
    params: ck.params,
    buffers: ck.buffers,
    log: await Deno.readTextFile(`${dir}/log.jsonl`),
    losses: report.losses,
    samples: report.samples,
  };
}

testWith(NEEDS, "many runs: train --seeds trains each seed as it trains alone", async () => {
  await inTempDir(async (dir) => {
    const base = lectureOn(
      dir,
      "--hidden",
      "16",
      "--steps",
      "300",
      "--samples",
      "3",
      "--no-plots",
    );
    const seeds = await tool("train.ts", [
      ...base,
      "--seeds",
      "3",
      "--seed",
      "7",
      "--out",
      `${dir}/s`,
    ]);
    assertEquals(seeds.code, 0, seeds.stderr);
    assert(
      /mean \+- std over 3 seeds: train \d\.\d{4} \+- \d\.\d{4}/.test(seeds.stdout),
      seeds.stdout,
    );
    const summary = JSON.parse(await Deno.readTextFile(`${dir}/s/seeds.json`));
    assertEquals(summary.seeds.map((s: { label: string }) => s.label), [
      "seed=7",
      "seed=8",
      "seed=9",
    ]);
    const vals = summary.seeds.map((s: { losses: { val: number } }) => s.losses.val);
    const mean = vals.reduce((a: number, b: number) => a + b, 0) / 3;
    assertEquals(summary.val.mean, mean);
    assert(summary.val.std > 0, "the seeds differ");
    const alone = await tool("train.ts", [...base, "--seed", "8", "--out", `${dir}/alone`]);
    assertEquals(alone.code, 0, alone.stderr);
    assertEquals(await outcome(`${dir}/s/seed=8`), await outcome(`${dir}/alone`));
    // Asked again with --resume, each finished seed says so, in its line.
    const again = await tool("train.ts", [
      ...base,
      "--seeds",
      "3",
      "--seed",
      "7",
      "--out",
      `${dir}/s`,
      "--resume",
    ]);
    assertEquals(again.code, 1, again.stderr);
    const lines = again.stderr.trim().split("\n");
    assertEquals(lines.length, 3, again.stderr);
    for (const [i, s] of ["seed=7", "seed=8", "seed=9"].entries()) {
      assert(
        lines[i].startsWith(`error: ${s}: the run in `) && /is finished/.test(lines[i]),
        lines[i],
      );
    }
  });
});

testWith(NEEDS, "many runs: bad --seeds and --runs input is one line, before any run", async () => {
  await inTempDir(async (dir) => {
    const data = lectureOn(dir, "--steps", "50");
    oneLineError(
      await tool("train.ts", [...data, "--seeds", "2", "--backend", "cpu", "--out", `${dir}/a`]),
      /^error: runs at once share a WebGPU device: not with --backend cpu/,
    );
    oneLineError(
      await tool("train.ts", ["--runs", `${dir}/missing.json`]),
      /^error: .*missing\.json/,
    );
    await Deno.writeTextFile(`${dir}/bad.json`, '[["--out", ');
    oneLineError(await tool("train.ts", ["--runs", `${dir}/bad.json`]), /bad\.json: not JSON/);
    await Deno.writeTextFile(`${dir}/no-out.json`, JSON.stringify([["--lr", "0.1"]]));
    oneLineError(
      await tool("train.ts", ["--runs", `${dir}/no-out.json`]),
      /no-out\.json, run 1: give it its own --out/,
    );
    await Deno.writeTextFile(
      `${dir}/nested.json`,
      JSON.stringify([[...data, "--out", `${dir}/n`, "--seeds", "2"]]),
    );
    oneLineError(
      await tool("train.ts", ["--runs", `${dir}/nested.json`]),
      /nested\.json, run 1: --seeds is the group's/,
    );
    await Deno.writeTextFile(
      `${dir}/flag.json`,
      JSON.stringify([[...data, "--out", `${dir}/f`, "--lr", "fast"]]),
    );
    oneLineError(
      await tool("train.ts", ["--runs", `${dir}/flag.json`]),
      /flag\.json, run 1: .*--lr/,
    );
    // A run may name the group's kernels only as they are.
    await Deno.writeTextFile(
      `${dir}/kernels.json`,
      JSON.stringify([[...data, "--out", `${dir}/k`, "--kernels", "software"]]),
    );
    oneLineError(
      await tool("train.ts", ["--runs", `${dir}/kernels.json`, "--kernels", "gpu"]),
      /kernels\.json, run 1: --kernels software is not the group's \(gpu\)/,
    );
    // Runs of two shapes cannot share dispatches: the second fails, the first trains.
    await Deno.writeTextFile(
      `${dir}/shapes.json`,
      JSON.stringify([
        [...data, "--out", `${dir}/x`, "--no-plots"],
        [...data, "--out", `${dir}/y`, "--hidden", "8", "--no-plots"],
      ]),
    );
    const shapes = await tool("train.ts", ["--runs", `${dir}/shapes.json`]);
    assertEquals(shapes.code, 1, shapes.stderr);
    assert(
      /y: run 2 of the group has another shape than the first/.test(shapes.stderr),
      shapes.stderr,
    );
    assert(await exists(`${dir}/x/run.json`), "the first run finished");
    assert(!(await exists(`${dir}/y/run.json`)), "the second did not run");
  });
});

testWith(
  NEEDS,
  "many runs: a sweep's runs of one shape train as a group, each as alone",
  async () => {
    await inTempDir(async (dir) => {
      const grid = (out: string, ...more: string[]) => [
        "--out",
        out,
        ...lectureOn(dir),
        "--hidden",
        "16",
        "--lr",
        "0.05,0.2",
        "--seed",
        "1,2",
        "--steps",
        "200",
        "--samples",
        "2",
        ...more,
      ];
      const grouped = await tool("sweep.ts", grid(`${dir}/g`, "--replicas", "4"));
      assertEquals(grouped.code, 0, grouped.stderr);
      const alone = await tool("sweep.ts", grid(`${dir}/a`, "--replicas", "1", "--jobs", "2"));
      assertEquals(alone.code, 0, alone.stderr);
      for (const run of ["lr=0.05,seed=1", "lr=0.2,seed=1", "lr=0.05,seed=2", "lr=0.2,seed=2"]) {
        assertEquals(
          await outcome(`${dir}/g/runs/${run}`),
          await outcome(`${dir}/a/runs/${run}`),
          run,
        );
      }
      oneLineError(
        await tool("sweep.ts", grid(`${dir}/b`, "--replicas", "0")),
        /--replicas: 'auto' or a whole number from 1 to 256, not '0'/,
      );
    });
  },
);

testWith(
  NEEDS,
  "many runs: a group stopped by SIGTERM saves every run's checkpoint; run again, it finishes",
  async () => {
    await inTempDir(async (dir) => {
      const args = [
        "--out",
        `${dir}/s`,
        ...lectureOn(dir),
        "--lr",
        "0.05,0.1,0.2",
        "--steps",
        "300",
        "--samples",
        "0",
        "--replicas",
        "3",
      ];
      const sweep = await spawnHeld("sweep.ts", args, {
        holdAt: 1,
        held: /holds at step \d+/,
        permissions: ALL,
      });
      const stopped = await sweep.stop("SIGTERM");
      assertEquals(stopped.code, 143, stopped.stderr);
      for (const lr of ["0.05", "0.1", "0.2"]) {
        const run = `${dir}/s/runs/lr=${lr}`;
        const ck = decodeCheckpoint(await Deno.readFile(`${run}/model.safetensors`), run);
        // The held run stops where it holds; the others may have trained all their steps
        // (their chunks were in flight), but none has finished: no calibration, no run.json.
        assert(ck.state.step >= 1 && ck.state.step <= 300, `lr ${lr}: step ${ck.state.step}`);
        assert(!(await exists(`${run}/run.json`)), "not finished");
      }
      const rerun = await tool("sweep.ts", args);
      assertEquals(rerun.code, 0, rerun.stderr);
      const rows = JSON.parse(await Deno.readTextFile(`${dir}/s/sweep.json`)).rows;
      assertEquals(rows.map((r: { status: string }) => r.status), [
        "finished",
        "finished",
        "finished",
      ]);
    });
  },
);

testWith(NEEDS, "many runs: lr-find --rates trains each rate as its own replica", async () => {
  await inTempDir(async (dir) => {
    const find = (rates: string, out: string) =>
      tool("lr_find.ts", [
        ...lectureOn(dir),
        "--hidden",
        "16",
        "--steps",
        "120",
        "--rates",
        rates,
        "--out",
        `${dir}/${out}`,
        "--json",
      ]);
    const a = await find("0.05,0.3,1e6", "a");
    assertEquals(a.code, 0, a.stderr);
    const b = await find("1e6,0.3,0.05", "b");
    assertEquals(b.code, 0, b.stderr);
    type Rate = { lr: number; finalLoss: number | null; ratio: number; diverged: number | null };
    const byRate = (r: CliResult) =>
      Object.fromEntries(
        (JSON.parse(r.stdout.trim().split("\n").at(-1)!).rates as Rate[]).map((q) => [q.lr, q]),
      );
    // The same rate in another slot of the group trains the same: its own replica.
    assertEquals(byRate(a), byRate(b));
    const best = JSON.parse(a.stdout.trim().split("\n").at(-1)!).best;
    assert(best === 0.05 || best === 0.3, `best ${best}`);
    const bad = await find("0.1", "c");
    oneLineError(bad, /--rates: 2 to 256 learning rates/);
  });
});
