/**
 * The command-line tools end to end, on a small slice of the names data: training, sampling,
 * Ctrl-C and --resume, determinism, and one clear line for every kind of bad input.
 */

import { decodeCheckpoint, encodeCheckpoint } from "../src/checkpoint.ts";
import { PRESETS } from "../src/model.ts";
import { assert, assertEquals, type CliResult, runCli } from "./util.ts";

const names = (await Deno.readTextFile(new URL("../data/names.txt", import.meta.url)))
  .split("\n").slice(0, 400).join("\n") + "\n";

/** A fresh directory holding the small data file; removed after `fn`. */
async function inTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "makemore-cli-" });
  try {
    await Deno.writeTextFile(`${dir}/names.txt`, names);
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const SMALL = ["--hidden", "16", "--layers", "2", "--embd", "4"];
const train = (dir: string, out: string, ...args: string[]) =>
  runCli("train.ts", ["--data", `${dir}/names.txt`, "--out", `${dir}/${out}`, ...SMALL, ...args]);
const sample = (...args: string[]) => runCli("sample.ts", args, ["--allow-read"]);

function assertOneLineError(r: CliResult, pattern: RegExp): void {
  assert(r.code !== 0, `expected a failure, got exit 0:\n${r.stdout}`);
  const lines = r.stderr.trim().split("\n");
  assertEquals(lines.length, 1, `expected one line on stderr, got:\n${r.stderr}`);
  assert(lines[0].startsWith("error: "), lines[0]);
  assert(pattern.test(lines[0]), `'${lines[0]}' does not match ${pattern}`);
  assert(!/\bat (file|async|ext):/.test(r.stderr), "no stack trace");
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("cli: train writes a checkpoint, run.json and log.jsonl; sample reads them", async () => {
  await inTempDir(async (dir) => {
    const r = await train(dir, "run", "--steps", "400", "--eval-every", "200", "--samples", "5");
    assertEquals(r.code, 0, r.stderr);
    assert(/backend: webgpu \(.+\)/.test(r.stdout), r.stdout);
    assert(/loss: train \d\.\d{4} {2}val \d\.\d{4} {2}test \d\.\d{4}/.test(r.stdout), r.stdout);
    const report = JSON.parse(await Deno.readTextFile(`${dir}/run/run.json`));
    assertEquals(report.steps, 400);
    assertEquals(report.backend, "webgpu");
    assert(report.losses.val > 1 && report.losses.val < 3.3, `val ${report.losses.val}`);
    assertEquals(report.samples.length, 5);
    const log = (await Deno.readTextFile(`${dir}/run/log.jsonl`)).trim().split("\n").map((l) =>
      JSON.parse(l)
    );
    assertEquals(log.filter((e) => "loss" in e).map((e) => e.step), [100, 200, 300, 400]);
    assertEquals(log.filter((e) => "val" in e).map((e) => e.step), [200]);
    const ck = decodeCheckpoint(await Deno.readFile(`${dir}/run/model.safetensors`), "ck");
    assertEquals(ck.state.step, 400);
    assertEquals(ck.config.nHidden, 16);

    const s = await sample("--out", `${dir}/run`, "--count", "7", "--mark");
    assertEquals(s.code, 0, s.stderr);
    const lines = s.stdout.trim().split("\n");
    assertEquals(lines.length, 7);
    assert(lines.every((l) => /\((new|in the training set)\)$/.test(l)), s.stdout);
    const again = await sample("--out", `${dir}/run`, "--count", "7", "--mark");
    assertEquals(again.stdout, s.stdout, "the same seed gives the same names");
    const other = await sample("--out", `${dir}/run`, "--count", "7", "--seed", "7", "--mark");
    assert(other.stdout !== s.stdout, "another seed gives other names");
    const prefixed = await sample("--out", `${dir}/run`, "--count", "5", "--prefix", "ma");
    assert(prefixed.stdout.trim().split("\n").every((n) => n.startsWith("ma")), prefixed.stdout);
  });
});

Deno.test("cli: Ctrl-C saves a checkpoint, and --resume ends exactly like an uninterrupted run", async () => {
  await inTempDir(async (dir) => {
    // A learning-rate decay mid-way, so the resumed schedule is checked too.
    const args = ["--steps", "2000", "--decay-at", "1300", "--eval-every", "0", "--samples", "3"];
    const whole = await train(dir, "whole", ...args);
    assertEquals(whole.code, 0, whole.stderr);

    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        "--allow-read",
        "--allow-write",
        new URL("../src/cli/train.ts", import.meta.url).pathname,
        "--data",
        `${dir}/names.txt`,
        "--out",
        `${dir}/cut`,
        ...SMALL,
        ...args,
        "--json",
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).spawn();
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    while (!seen.includes('"event":"progress"')) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += value;
    }
    child.kill("SIGINT");
    while (!(await reader.read()).done) { /* drain */ }
    const status = await child.status;
    const stderr = await new Response(child.stderr).text();
    assertEquals(status.code, 130, stderr);
    const stopped = Number(stderr.match(/interrupted at step (\d+)/)?.[1]);
    assert(stopped > 0 && stopped < 2000, `stopped at ${stopped}: ${stderr}`);
    const ck = decodeCheckpoint(await Deno.readFile(`${dir}/cut/model.safetensors`), "ck");
    assertEquals(ck.state.step, stopped);

    const resumed = await runCli("train.ts", ["--out", `${dir}/cut`, "--resume", "--samples", "3"]);
    assertEquals(resumed.code, 0, resumed.stderr);
    assert(resumed.stdout.includes(`resuming from step ${stopped}`), resumed.stdout);
    const read = (run: string) => Deno.readTextFile(`${dir}/${run}/log.jsonl`);
    assertEquals(await read("cut"), await read("whole"));
    const report = async (run: string) => {
      const r = JSON.parse(await Deno.readTextFile(`${dir}/${run}/run.json`));
      return { losses: r.losses, samples: r.samples };
    };
    assertEquals(await report("cut"), await report("whole"));
    const params = async (run: string) =>
      decodeCheckpoint(await Deno.readFile(`${dir}/${run}/model.safetensors`), run).params;
    assertEquals(await params("cut"), await params("whole"));
  });
});

Deno.test("cli: two runs with the same seed write identical losses; another seed does not", async () => {
  await inTempDir(async (dir) => {
    const args = ["--steps", "300", "--eval-every", "0", "--samples", "0"];
    for (const [out, seed] of [["a", "5"], ["b", "5"], ["c", "6"]]) {
      const r = await train(dir, out, ...args, "--seed", seed);
      assertEquals(r.code, 0, r.stderr);
    }
    const log = (run: string) => Deno.readTextFile(`${dir}/${run}/log.jsonl`);
    assertEquals(await log("a"), await log("b"));
    assert(await log("a") !== await log("c"));
  });
});

Deno.test("cli: the CPU backend trains the same model, and --help lists the flags", async () => {
  await inTempDir(async (dir) => {
    const r = await train(dir, "cpu", "--steps", "50", "--backend", "cpu", "--samples", "0");
    assertEquals(r.code, 0, r.stderr);
    assert(r.stdout.includes("backend: cpu"), r.stdout);
    const help = await runCli("train.ts", ["--help"]);
    assertEquals(help.code, 0);
    for (
      const flag of [
        "--data",
        "--out",
        "--preset",
        "--steps",
        "--batch-size",
        "--block-size",
        "--embd",
        "--hidden",
        "--layers",
        "--lr",
        "--lr-final",
        "--decay-at",
        "--seed",
        "--backend",
        "--resume",
        "--eval-every",
        "--json",
        "--quiet",
      ]
    ) {
      assert(help.stdout.includes(flag), `--help mentions ${flag}`);
    }
  });
});

Deno.test("cli: bad input gets one line on stderr, a non-zero exit and no output files", async () => {
  await inTempDir(async (dir) => {
    await Deno.writeTextFile(`${dir}/empty.txt`, "");
    await Deno.writeTextFile(`${dir}/few.txt`, names.split("\n").slice(0, 20).join("\n"));
    await Deno.writeFile(`${dir}/binary.txt`, new Uint8Array([0x61, 0, 0x62, 10]));
    const cases: [string[], RegExp][] = [
      [["--data", `${dir}/missing.txt`], /missing\.txt: no such file/],
      [["--data", `${dir}/empty.txt`], /empty\.txt: the file is empty/],
      [["--data", `${dir}/binary.txt`], /binary\.txt:1: binary content/],
      [["--frobnicate"], /Unknown option '--frobnicate'/],
      [["--steps", "many"], /--steps must be a whole number, got 'many'/],
      [["--hidden", "0"], /--hidden must be at least 1, got 0/],
      [
        ["--layers", "-2"],
        /--layers needs a value \(a value starting with '-' is written --layers=-1\)/,
      ],
      [["--layers=-2"], /--layers must be at least 1, got -2/],
      [["--batch-size", "1"], /--batch-size must be at least 2/],
      [["--lr", "fast"], /--lr must be a number, got 'fast'/],
      [["--block-size", "1000"], /--block-size must be at most 32/],
      [
        ["--data", `${dir}/few.txt`, "--batch-size", "500"],
        /--batch-size 500 is larger than the training split \(\d+ examples\)/,
      ],
      [
        ["--batch-size", "100", "--hidden", "2048"],
        /--batch-size 100 is too large for layers of this width/,
      ],
      [["--preset", "huge"], /--preset must be one of seed, lecture, got 'huge'/],
      [["--backend", "tpu"], /--backend must be webgpu or cpu/],
      [["--resume"], /--resume: no checkpoint in/],
    ];
    for (const [args, pattern] of cases) {
      const r = await runCli("train.ts", [
        "--data",
        `${dir}/names.txt`,
        "--out",
        `${dir}/bad`,
        ...args,
      ]);
      assertOneLineError(r, pattern);
      assert(!(await exists(`${dir}/bad`)), `${args.join(" ")}: wrote ${dir}/bad`);
    }

    // No adapter: the backend list excludes every driver on this machine.
    const none = await runCli(
      "train.ts",
      ["--data", `${dir}/names.txt`, "--out", `${dir}/bad`, "--steps", "5"],
      ["--allow-read", "--allow-write"],
      { DENO_WEBGPU_BACKEND: "dx12" },
    );
    assertOneLineError(none, /no WebGPU adapter found: .*--backend cpu/);
    assert(!(await exists(`${dir}/bad`)));

    // A diverging run stops with the reason and writes no checkpoint.
    const nan = await train(dir, "nan", "--steps", "500", "--lr", "1e30");
    assertOneLineError(
      nan,
      /the loss became (NaN|Infinity) at step \d+ .*no checkpoint was written/,
    );
    assert(!(await exists(`${dir}/nan/model.safetensors`)));

    // Checkpoints: a good one, then broken copies of it.
    const ok = await train(dir, "good", "--steps", "100", "--no-calibrate", "--samples", "0");
    assertEquals(ok.code, 0, ok.stderr);
    const good = await Deno.readFile(`${dir}/good/model.safetensors`);
    const resume = (out: string, ...args: string[]) =>
      runCli("train.ts", ["--out", `${dir}/${out}`, "--resume", "--steps", "200", ...args]);
    await Deno.mkdir(`${dir}/trunc`);
    await Deno.writeFile(`${dir}/trunc/model.safetensors`, good.subarray(0, good.length - 100));
    assertOneLineError(
      await resume("trunc"),
      /not a valid checkpoint \(.*outside the file \(truncated\?\)\)/,
    );
    await Deno.mkdir(`${dir}/corrupt`);
    const corrupt = good.slice();
    corrupt.fill(0x7b, 20, 40); // '{' over the header
    await Deno.writeFile(`${dir}/corrupt/model.safetensors`, corrupt);
    assertOneLineError(await resume("corrupt"), /not a valid checkpoint \(corrupt header\)/);
    assertOneLineError(
      await resume("good", "--hidden", "99"),
      /model has nHidden = 16, but this run asks for 99/,
    );
    await Deno.writeTextFile(`${dir}/other.txt`, "anna\nbob\nzed\n".repeat(50));
    assertOneLineError(
      await resume("good", "--data", `${dir}/other.txt`),
      /other\.txt is not the data the checkpoint was trained on/,
    );
    const before = await Deno.readFile(`${dir}/good/model.safetensors`);
    assertEquals(before, good, "failed resumes leave the checkpoint untouched");

    // Sampling.
    assertOneLineError(
      await sample("--out", `${dir}/good`, "--prefix", "Zq"),
      /--prefix: 'Z' is not in the model's vocabulary/,
    );
    assertOneLineError(
      await sample("--out", `${dir}/nowhere`),
      /nowhere\/model\.safetensors: no such checkpoint/,
    );
    assertOneLineError(
      await sample("--checkpoint", `${dir}/trunc/model.safetensors`),
      /not a valid checkpoint/,
    );
    assertOneLineError(
      await sample("--out", `${dir}/good`, "--temperature", "0"),
      /--temperature must be at least/,
    );
    assertOneLineError(
      await sample("--out", `${dir}/good`, "--mark", "--data", `${dir}/other.txt`),
      /--mark: .*other\.txt is not the data this model was trained on/,
    );
  });
});

Deno.test("checkpoint: encode -> decode is exact, and the header is valid safetensors", () => {
  const bytes = encodeCheckpoint({
    config: { ...PRESETS.lecture.model, vocabSize: 4, blockSize: 2, nEmbd: 3, nHidden: 5 },
    vocab: [".", "a", "b", "c"],
    params: Float32Array.from({ length: 12 + 30 + 10 + 20 + 4 }, (_, i) => i / 7 - 3),
    buffers: Float32Array.from({ length: 10 }, (_, i) => i * 1.5),
    state: {
      step: 3,
      rng: [1, 2, 3, 4],
      train: { steps: 10, batchSize: 4, lr: 0.1, lrFinal: 0.01, decayAt: 5 },
      seed: 9,
      seconds: 1.5,
      data: { path: "x", sha256: "y" },
      calibrated: false,
      pendingLog: { sum: 0, count: 0 },
    },
  });
  // The format: u64 little-endian header size, a JSON header of tensors whose byte ranges tile
  // the data section in order, string metadata, the data 8-byte aligned.
  const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  assertEquals((8 + n) % 8, 0);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  let end = 0;
  for (const [name, t] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const { dtype, shape, data_offsets: [b, e] } = t as {
      dtype: string;
      shape: number[];
      data_offsets: number[];
    };
    assertEquals(dtype, "F32");
    assertEquals(b, end, `${name} starts where the previous tensor ended`);
    assertEquals(e - b, 4 * shape.reduce((x, y) => x * y, 1));
    end = e;
  }
  assertEquals(8 + n + end, bytes.length);
  const meta = header.__metadata__ as Record<string, unknown>;
  assert(Object.values(meta).every((v) => typeof v === "string"), "metadata values are strings");
  assertEquals(JSON.parse(meta.vocab as string), [".", "a", "b", "c"]);
  const ck = decodeCheckpoint(bytes, "ck");
  assertEquals(ck.params[0], -3);
  assertEquals(ck.params.length, 76);
  assertEquals(Array.from(ck.buffers), Array.from({ length: 10 }, (_, i) => i * 1.5));
  assertEquals(ck.state.rng, [1, 2, 3, 4]);
});
