/**
 * Many runs on one device, in the same dispatches: a group of replicas (src/gpu/plan.ts), each
 * member of which is a Backend for one run's training loop (src/training.ts), unchanged. The
 * loops run side by side; what a member asks of the device (a chunk of steps, an evaluation, a
 * calibration) waits until every member still in the group has asked for something, and then
 * the oldest request runs for every member whose request is of its kind, in one pass over the
 * device; the others sit it out (an idle replica does not move, GpuModel.trainReplicas) and go
 * in a later one. Members of one configuration therefore meet at every chunk, while a member
 * that stops (it went NaN, or it finished sooner) just leaves: the rest go on without it.
 *
 * Everything a member reads or writes of its own (parameters, snapshots) goes straight to its
 * replica. Destroying a member leaves the group; the last one out destroys the device.
 */

import type { Backend, BackendOptions, ChunkDiagnostics, ChunkResult } from "../backend.ts";
import type { Examples } from "../data.ts";
import { UserError } from "../errors.ts";
import type { ModelConfig } from "../model.ts";
import { CHUNK_STEPS, CHUNKS_IN_FLIGHT } from "./backend.ts";
import { describeAdapter, type Gpu, openGpu } from "./device.ts";
import { GpuModel } from "./model.ts";
import { DIAG_SLOTS } from "./plan.ts";

type Request =
  | {
    readonly kind: "train";
    readonly batches: Int32Array<ArrayBuffer>;
    readonly lrs: ArrayLike<number>;
    readonly diag: ChunkDiagnostics;
  }
  | { readonly kind: "evaluate"; readonly ex: Examples }
  | {
    readonly kind: "calibrate";
    readonly ex: Examples;
    readonly signal?: AbortSignal;
    readonly progress?: (fraction: number) => void;
  };

interface Pending {
  readonly request: Request;
  readonly order: number;
  resolve(value: ChunkResult | number): void;
  reject(reason: unknown): void;
}

/** Requests that can share a pass: the same kind, and for training the same chunk shape. */
function kindOf(r: Request): string {
  if (r.kind !== "train") return r.kind;
  return `train ${r.lrs.length} ${r.diag.moments?.join(",") ?? ""} ${r.diag.snapshot ?? false}`;
}

/**
 * What must be equal for runs to share a group's dispatches: the model but for what only sets
 * its first parameters (the initialization) or is a replica's own uniform (the BatchNorm
 * momentum), and the batch.
 */
export function shapeKey(config: ModelConfig, batchSize: number): string {
  const { bnMomentum: _m, init: _i, outputInit: _o, outputGamma: _g, tanhGain: _t, ...shape } =
    config;
  return JSON.stringify({ shape, batchSize });
}

export class ReplicaGroup {
  readonly replicas: number;
  readonly #open: (config: ModelConfig, batchSize: number) => Promise<GpuModel>;
  #model: Promise<GpuModel> | null = null;
  #gpu: Gpu | null = null;
  #key: string | null = null;
  /** Members that may still ask: not yet joined, or joined and not left. */
  readonly #present: boolean[];
  readonly #queues: Pending[][];
  #order = 0;
  /** The pass running now (and what follows it): passes never overlap. */
  #chain: Promise<void> = Promise.resolve();
  /** Resolved when member r has joined or left: members join in order, so "first" is run 0. */
  readonly #settled: PromiseWithResolvers<void>[];

  private constructor(
    replicas: number,
    open: (config: ModelConfig, batchSize: number) => Promise<GpuModel>,
  ) {
    this.replicas = replicas;
    this.#open = open;
    this.#present = Array(replicas).fill(true);
    this.#queues = Array.from({ length: replicas }, () => []);
    this.#settled = Array.from({ length: replicas }, () => Promise.withResolvers<void>());
  }

  /**
   * A group of `replicas` members, on a device opened when the first joins; its kernels are
   * `opts.kernels` (the adapter's choice for "auto").
   */
  static create(
    replicas: number,
    opts: Pick<BackendOptions, "kernels" | "messages">,
  ): ReplicaGroup {
    const group: ReplicaGroup = new ReplicaGroup(replicas, async (config, batchSize) => {
      const gpu = await openGpu(opts.messages);
      group.#gpu = gpu;
      try {
        return await GpuModel.create(gpu, config, {
          batchSize,
          chunkSteps: CHUNK_STEPS,
          family: opts.kernels === "auto" || opts.kernels === undefined ? undefined : opts.kernels,
          replicas,
        });
      } catch (e) {
        gpu.device.destroy();
        throw e;
      }
    });
    return group;
  }

  /**
   * Member r's backend, for a model of the group's shape (run 0's, or the first that did not leave
   * before joining: members join in order). Its own
   * BatchNorm momentum comes from its config.
   */
  async join(r: number, opts: BackendOptions): Promise<Backend> {
    if (opts.kind !== "webgpu") throw new Error("a group of replicas trains on WebGPU");
    // The group's shape is its first run's, whichever is ready first.
    if (r > 0) await this.#settled[r - 1].promise;
    const key = shapeKey(opts.config, opts.batchSize);
    this.#key ??= key;
    if (key !== this.#key) {
      this.leave(r);
      throw new UserError(`run ${r + 1} of the group has another shape than the first`);
    }
    this.#model ??= this.#open(opts.config, opts.batchSize);
    let model: GpuModel;
    try {
      model = await this.#model;
    } catch (e) {
      this.leave(r);
      throw e;
    }
    model.setMomentum(r, opts.config.bnMomentum);
    this.#settled[r].resolve();
    return new Member(this, r, model, describeAdapter(this.#gpu!.adapter));
  }

  /** Member r will ask nothing more (it stopped, failed, or never started). */
  leave(r: number): void {
    if (!this.#present[r]) return;
    this.#present[r] = false;
    this.#settled[r].resolve();
    for (const p of this.#queues[r].splice(0)) p.reject(new Error("left the group"));
    if (this.#present.some(Boolean)) {
      this.#dispatch();
      return;
    }
    // The last one out: once the passes in flight end, the device goes.
    const model = this.#model;
    this.#chain = this.#chain.then(async () => {
      const m = await model?.catch(() => null);
      m?.destroy();
      this.#gpu?.device.destroy();
    });
  }

  ask(r: number, request: Request): Promise<ChunkResult | number> {
    return new Promise((resolve, reject) => {
      this.#queues[r].push({ request, order: this.#order++, resolve, reject });
      this.#dispatch();
    });
  }

  /** Runs passes while every present member has a request waiting. */
  #dispatch(): void {
    const present = this.#present.flatMap((p, r) => p ? [r] : []);
    while (present.length > 0 && present.every((r) => this.#queues[r].length > 0)) {
      const heads = present.map((r) => this.#queues[r][0]);
      const oldest = heads.reduce((a, b) => a.order <= b.order ? a : b);
      const kind = kindOf(oldest.request);
      const taken = new Map<number, Pending>();
      for (const r of present) {
        if (kindOf(this.#queues[r][0].request) === kind) taken.set(r, this.#queues[r].shift()!);
      }
      const pass = this.#chain.then(() => this.#run(taken));
      this.#chain = pass.catch(() => {});
    }
  }

  /** One pass over the device for the members in `taken`, each of the others idle. */
  async #run(taken: Map<number, Pending>): Promise<void> {
    const all = [...taken.values()];
    try {
      const model = await this.#model!;
      const first = all[0].request;
      const mine = <T>(f: (q: Request) => T, other: T): T[] =>
        Array.from({ length: this.replicas }, (_, r) => {
          const p = taken.get(r);
          return p ? f(p.request) : other;
        });
      const empty: Examples = { x: new Int32Array(0), y: new Int32Array(0), n: 0, blockSize: 0 };
      const exOf = (q: Request) => q.kind === "train" ? empty : q.ex;
      if (first.kind === "train") {
        const results = model.trainReplicas(
          mine((q) => q.kind === "train" ? q.batches : null, null),
          mine((q) => q.kind === "train" ? q.lrs : null, null),
          first.diag,
        );
        // Submitted: the next pass may go in behind it, while this one's losses come back.
        results.then((res) => taken.forEach((p, r) => p.resolve(res[r])), (e) => {
          all.forEach((p) => p.reject(e));
        });
        return;
      }
      const exs = mine(exOf, { ...empty, blockSize: model.config.blockSize });
      const losses = first.kind === "evaluate"
        ? await model.evaluateReplicas(exs)
        : await model.calibrateReplicas(exs, first.signal, (f) => {
          for (const p of all) if (p.request.kind === "calibrate") p.request.progress?.(f);
        });
      taken.forEach((p, r) => p.resolve(losses[r]));
    } catch (e) {
      all.forEach((p) => p.reject(e));
    }
  }
}

/** One member of a group, as the training loop sees its backend. */
class Member implements Backend {
  readonly kind = "webgpu";
  readonly diagSlots = DIAG_SLOTS;
  readonly chunksInFlight = CHUNKS_IN_FLIGHT;
  readonly lost: Promise<string>;
  #left = false;

  constructor(
    readonly group: ReplicaGroup,
    readonly replica: number,
    readonly model: GpuModel,
    readonly adapter: string,
  ) {
    this.lost = new Promise((resolve) => {
      model.device.lost.then((info) => {
        if (!this.#left) resolve(info.message || `the device was lost (${info.reason})`);
      });
    });
  }
  get kernels() {
    return this.model.family.name;
  }
  get chunkSteps() {
    return this.model.chunkSteps;
  }
  setParams(params: Float32Array, buffers: Float32Array) {
    this.model.setParams(params, buffers, this.replica);
  }
  getParams() {
    return this.model.getParams(this.replica);
  }
  trainChunk(batches: Int32Array<ArrayBuffer>, lrs: ArrayLike<number>, diag?: ChunkDiagnostics) {
    return this.group.ask(this.replica, {
      kind: "train",
      batches,
      lrs,
      diag: diag ?? {},
    }) as Promise<
      ChunkResult
    >;
  }
  snapshot(step: number) {
    return this.model.snapshot(step, this.replica);
  }
  evaluate(ex: Examples) {
    return this.group.ask(this.replica, { kind: "evaluate", ex }) as Promise<number>;
  }
  calibrate(ex: Examples, signal?: AbortSignal, progress?: (fraction: number) => void) {
    return this.group.ask(this.replica, { kind: "calibrate", ex, signal, progress }) as Promise<
      number
    >;
  }
  destroy() {
    this.#left = true;
    this.group.leave(this.replica);
  }
}
