/**
 * The lab's session (src/lab/session.ts) in Deno, with a backend of the test's own: the CPU
 * reference behind a gate, so that each chunk of training ends when the test says, and a
 * destroyed backend fails its chunks as a destroyed GPU device does. Every verb, re-entered and
 * in any order, must leave one training loop at most, destroy a backend only after its last
 * chunk, and report nothing stale. (tests/browser_test.ts drives the same verbs in the page.)
 */

import names from "../data/names.txt" with { type: "text" };
import type { Backend, BackendOptions } from "../src/backend.ts";
import { openCpuBackend } from "../src/cpu/backend.ts";
import { decodeCheckpoint } from "../src/checkpoint.ts";
import { Vocab } from "../src/data.ts";
import { PRESETS } from "../src/model.ts";
import { Rng } from "../src/rng.ts";
import { sampleNames } from "../src/sample.ts";
import { type Phase, Session, type Settings } from "../src/lab/session.ts";
import { assert, assertEquals, assertRejects } from "./util.ts";

const bytes = new TextEncoder().encode(names.split("\n").slice(0, 1500).join("\n") + "\n");

const settings = (steps = 5000): Settings => ({
  model: { ...PRESETS.lecture.model, nHidden: 16 },
  train: { ...PRESETS.lecture.train, steps, decayAt: 100_000 },
  seed: 42,
});

/** Backends that train only when let through, and count what happens to them. */
class Gated {
  opened = 0;
  destroyed = 0;
  /** Chunks started and not yet let through. */
  readonly waiting: (() => void)[] = [];
  /** The most backends that ever had chunks running at once: one run at a time. */
  concurrent = 0;
  /** Chunks trained. */
  chunks = 0;
  /** Chunks that failed because their backend was destroyed under them. */
  failed = 0;
  /** Make the chunks let through next fail, as on a device lost. */
  failNext = false;
  /** Chunks running, per backend (a run submits its next chunk before reading the last). */
  #running = new Map<number, number>();
  #arrived: (() => void)[] = [];

  open = (opts: BackendOptions): Promise<Backend> => {
    const id = this.opened++;
    const inner = openCpuBackend(opts.config);
    let gone = false;
    // As a GPU's work fails once its device is destroyed under it.
    const alive = () => {
      if (gone) throw new Error("Buffer was unmapped before mapping was resolved");
    };
    const backend: Backend = {
      kind: inner.kind,
      adapter: inner.adapter,
      kernels: inner.kernels,
      chunkSteps: inner.chunkSteps,
      chunksInFlight: inner.chunksInFlight,
      diagSlots: inner.diagSlots,
      setParams: (p, b) => inner.setParams(p, b),
      getParams: () => (alive(), inner.getParams()),
      snapshot: (step) => (alive(), inner.snapshot(step)),
      evaluate: (ex) => (alive(), inner.evaluate(ex)),
      calibrate: (ex, signal, progress) => (alive(), inner.calibrate(ex, signal, progress)),
      trainChunk: async (...args: Parameters<Backend["trainChunk"]>) => {
        this.#running.set(id, (this.#running.get(id) ?? 0) + 1);
        const busy = [...this.#running.values()].filter((n) => n > 0).length;
        this.concurrent = Math.max(this.concurrent, busy);
        await new Promise<void>((r) => {
          this.waiting.push(r);
          this.#arrived.splice(0).forEach((f) => f());
        });
        this.#running.set(id, this.#running.get(id)! - 1);
        if (gone) this.failed++;
        if (this.failNext) throw new Error("the device was lost");
        alive();
        this.chunks++;
        return inner.trainChunk(...args);
      },
      destroy: () => {
        gone = true;
        this.destroyed++;
        inner.destroy();
      },
    };
    return Promise.resolve(backend);
  };

  /** Resolves when a chunk waits at the gate. */
  async chunk(): Promise<void> {
    while (!this.waiting.length) await new Promise<void>((r) => this.#arrived.push(r));
  }

  /** Lets every waiting chunk through. */
  release(): void {
    this.waiting.splice(0).forEach((r) => r());
  }
}

function session(gated: Gated) {
  const phases: Phase[] = [];
  const errors: string[] = [];
  const reported = { progress: 0 };
  const s = new Session({
    progress: () => void reported.progress++,
    note() {},
    phase(p, error) {
      phases.push(p);
      if (error) errors.push(error);
    },
  }, gated.open);
  return { s, phases, errors, reported };
}

async function withData(gated: Gated) {
  const r = session(gated);
  await r.s.setData(bytes, "names.txt");
  return r;
}

Deno.test("session: a second Train while the first starts trains once", async () => {
  const g = new Gated();
  const { s, errors } = await withData(g);
  const first = s.start(settings());
  assertEquals(s.phase, "starting", "the phase changes before anything is awaited");
  await assertRejects(s.start(settings()));
  await first;
  await g.chunk();
  assertEquals(g.opened, 1);
  s.pause();
  g.release();
  await waitFor(s, "paused");
  await s.reset();
  assertEquals([g.opened, g.destroyed], [1, 1]);
  assertEquals(errors, []);
});

/** Runs what is queued (microtasks, and what they queue) without waiting for anything else. */
const drain = () => new Promise((r) => setTimeout(r, 0));

Deno.test("session: Reset while a chunk is in flight destroys the backend after it, silently", async () => {
  const g = new Gated();
  const { s: counted, errors, reported } = await withData(g);
  await counted.start(settings());
  await g.chunk();
  const before = reported.progress;
  const reset = counted.reset();
  assertEquals(counted.phase, "idle");
  await drain();
  assertEquals(g.destroyed, 0, "not while its chunk runs");
  g.release();
  await reset;
  assertEquals([g.destroyed, g.failed], [1, 0], "destroyed after its chunk, which ended well");
  assertEquals(reported.progress, before, "nothing reported by the run that was reset");
  assertEquals(errors, []);
  // A run that fails after its Reset (its device lost, say) reports nothing either.
  await counted.start(settings());
  await g.chunk();
  const gone = counted.reset();
  g.failNext = true;
  g.release();
  await gone;
  g.failNext = false;
  assertEquals(errors, []);
  // Resume and Reset in one go: the Reset wins, and nothing trains.
  await counted.start(settings());
  await drive(counted, g, "paused", () => counted.pause());
  const resumed = counted.resume();
  const last = counted.reset();
  await Promise.all([resumed, last]);
  await counted.settled();
  assertEquals(counted.phase, "idle");
  assertEquals(g.waiting.length, 0, "no chunk started after the Reset");
  assertEquals(errors, []);
  // And a new run starts cleanly after it.
  await counted.start(settings());
  await g.chunk();
  assertEquals(g.opened, 4);
  await stopAll(counted, g);
  assertEquals(errors, []);
});

Deno.test("session: a checkpoint loaded after a run is what Sample and Download use", async () => {
  const g = new Gated();
  const { s } = await withData(g);
  await s.start(settings(300));
  await drive(s, g, "paused", () => s.pause());
  const mine = s.checkpointBytes();
  // Another model, trained elsewhere on other data: loading it makes it the current one.
  const otherGate = new Gated();
  const o = new Session({ progress() {}, note() {}, phase() {} }, otherGate.open);
  await o.setData(new TextEncoder().encode("ann\nbob\ncarla\ndave\n".repeat(30)), "few.txt");
  await o.start({ ...settings(150), train: { ...settings(150).train, batchSize: 8 } });
  await drive(o, otherGate, "paused", () => o.pause());
  const theirs = o.checkpointBytes();
  const ck = s.loadCheckpoint(theirs, "few.safetensors");
  const opts = { count: 10, seed: 3, temperature: 1, topK: 0, prefix: "" };
  const got = (await s.sample(opts)).map((n) => n.name);
  assertEquals(got, sampleNames(ck.config, ck.params, ck.buffers, new Vocab(ck.vocab), opts));
  const downloaded = decodeCheckpoint(s.checkpointBytes(), "download");
  assertEquals([downloaded.params, downloaded.vocab], [ck.params, ck.vocab]);
  assert(decodeCheckpoint(mine, "mine").vocab.length !== ck.vocab.length, "the models differ");
  await stopAll(s, g);
  await stopAll(o, otherGate);
});

Deno.test("session: Continue is refused when the form changes the run, or its statistics were recalibrated", async () => {
  const g = new Gated();
  const { s } = await withData(g);
  await s.start(settings(200));
  await drive(s, g, "paused", () => s.pause());
  const paused = s.checkpointBytes();
  await s.reset();
  s.loadCheckpoint(paused, "paused.safetensors");
  const wider = { ...settings(400), model: { ...settings().model, nHidden: 32 } };
  const err = await assertRejects(s.start(wider, true));
  assert(/--hidden 32 \(the run has 16\)/.test(err.message), err.message);
  assertEquals(s.phase, "idle");
  // Finished runs were recalibrated: continuing one would not continue it.
  await s.start(settings(200), true);
  await drive(s, g, "finished");
  s.loadCheckpoint(s.checkpointBytes(), "finished.safetensors");
  const recal = await assertRejects(s.start(settings(400), true));
  assert(/recalibrated/.test(recal.message), recal.message);
  await stopAll(s, g);
});

Deno.test("session: the verbs in any order, re-entered, keep one loop and report nothing stale", async () => {
  let chunks = 0;
  for (let seed = 11; seed < 21; seed++) {
    const g = new Gated();
    const { s, errors } = await withData(g);
    const rng = new Rng(seed);
    const verbs = [
      () => s.start(settings()).catch(() => {}),
      () => s.pause(),
      () => s.resume().catch(() => {}),
      () => s.reset(),
      () => s.sample({ count: 3, seed: 1, temperature: 1, topK: 0, prefix: "" }).catch(() => {}),
      () => g.release(),
      () => g.release(),
    ];
    const pending: unknown[] = [];
    for (let i = 0; i < 200; i++) {
      pending.push(verbs[rng.randint(verbs.length)]());
      if (rng.randint(3) === 0) await new Promise((r) => setTimeout(r, 0));
    }
    // Let everything end: stop and let chunks through until every verb called has settled.
    let all = false;
    Promise.all(pending).then(() => (all = true));
    while (!all) {
      s.pause();
      g.release();
      await new Promise((r) => setTimeout(r, 0));
    }
    await stopAll(s, g);
    assert(g.concurrent <= 1, `seed ${seed}: ${g.concurrent} runs trained at once`);
    assertEquals(g.opened, g.destroyed, `seed ${seed}: every backend released`);
    assertEquals(errors, [], `seed ${seed}`);
    chunks += g.chunks;
  }
  assert(chunks > 100, `the sequences trained (${chunks} chunks)`);
});

/** Lets chunks through until the session reaches `phase` (after `then`, at the first chunk). */
async function drive(s: Session, g: Gated, phase: Phase, then?: () => void): Promise<void> {
  let first = true;
  while (s.phase !== phase) {
    if (g.waiting.length) {
      if (first && then) then();
      first = false;
      g.release();
    }
    await new Promise((r) => setTimeout(r, 0));
  }
}

async function waitFor(s: Session, phase: Phase): Promise<void> {
  while (s.phase !== phase) await new Promise((r) => setTimeout(r, 0));
}

/** Stops a session's run and releases everything. */
async function stopAll(s: Session, g: Gated): Promise<void> {
  s.pause();
  const done = s.reset();
  while (g.waiting.length || s.busy) {
    g.release();
    await new Promise((r) => setTimeout(r, 0));
  }
  g.release();
  await done;
}

Deno.test("session: One step twice, then Resume, ends as the run does without stopping", async () => {
  const open = (o: BackendOptions) => Promise.resolve(openCpuBackend(o.config));
  const finished = (s: Session) =>
    new Promise<void>((resolve, reject) => {
      const phase = s.phase;
      if (phase === "finished") resolve();
      const poll = setInterval(() => {
        if (s.phase === "finished") {
          clearInterval(poll);
          resolve();
        } else if (s.phase === "idle") {
          clearInterval(poll);
          reject(new Error("the run ended without finishing"));
        }
      }, 10);
    });
  const quiet = { progress() {}, note() {}, phase() {} };
  const plain = new Session(quiet, open);
  await plain.setData(bytes, "names.txt");
  await plain.start(settings(300));
  await finished(plain);
  const stepped = new Session(quiet, open);
  await stepped.setData(bytes, "names.txt");
  const first = await stepped.oneStep(settings(300));
  assertEquals(first.step, 1);
  assertEquals(stepped.phase, "paused");
  const before = (await stepped.backend!.getParams()).params;
  const second = await stepped.oneStep(settings(300));
  assertEquals(second.step, 2);
  // What it reports is what changed: the largest change of each tensor, recomputed.
  const after = (await stepped.backend!.getParams()).params;
  const { modelLayout, view } = await import("../src/model.ts");
  for (const [i, t] of modelLayout(stepped.config!).params.entries()) {
    const a = view(before, t);
    const most = view(after, t).reduce((m, x, j) => Math.max(m, Math.abs(x - a[j])), 0);
    assertEquals(second.tensors[i].name, t.name);
    assertEquals(second.tensors[i].maxChange, most, t.name);
    assert(Number.isFinite(second.tensors[i].ratio), t.name);
  }
  assert(Number.isFinite(second.loss) && second.lr === settings().train.lr);
  await stepped.resume();
  await finished(stepped);
  assertEquals(stepped.sinks.entries, plain.sinks.entries);
  assertEquals(stepped.finished!.losses, plain.finished!.losses);
  assertEquals(stepped.finished!.params, plain.finished!.params);
  await plain.reset();
  await stepped.reset();
});
