/**
 * The host and the kernels agree on every uniform: a probe kernel, compiled with the same
 * generated declarations as the real kernels, copies each field of the Step and Op uniforms
 * and of one replica's entry in the replicas' array it received into a buffer, and the host
 * finds exactly the values it packed.
 */

import {
  C,
  CONSTANTS,
  OP,
  REPLICA,
  REPLICAS_BYTES,
  STEP,
  type Struct,
  wgslPrelude,
} from "../src/gpu/abi.ts";
import { compileModule } from "../src/gpu/kernels.ts";
import { kernelSource } from "../src/gpu/shaders.ts";
import { software } from "../src/gpu/software.ts";
import { assert, assertEquals, gpu } from "./util.ts";
import type { Field } from "../src/gpu/abi.ts";

/** WGSL that copies every field of `name` (a struct variable) into Host, as raw bits. */
function copyFields(variable: string, s: Struct<readonly Field[]>, at: number): string {
  return s.fields.map(([name, type], i) =>
    `  Host[${at + i}] = ${type === "f32" ? "" : "bitcast<f32>"}(${variable}.${name});`
  ).join("\n");
}

/** Distinct values for every field: integers for u32 fields, fractions for f32 ones. */
function sample<F extends readonly Field[]>(s: Struct<F>, salt: number): Record<string, number> {
  return Object.fromEntries(
    s.fields.map(([name, type], i) => [name, type === "f32" ? salt + i + 0.25 : salt * 1000 + i]),
  );
}

Deno.test("abi: the kernels read every Step, Op and Replica field the host packed", async () => {
  const { device } = await gpu();
  const REP = 5; // a replica past the first: its entry is REP array strides in
  const code = wgslPrelude(software.constants) + `
@compute @workgroup_size(1)
fn probe() {
${copyFields("step", STEP, 0)}
${copyFields("op", OP, STEP.fields.length)}
${copyFields(`replicas[${REP}]`, REPLICA, STEP.fields.length + OP.fields.length)}
}`;
  const module = await compileModule(device, "probe", code);
  const pipeline = device.createComputePipeline({
    layout: "auto",
    compute: { module, entryPoint: "probe" },
  });
  const fields = STEP.fields.length + OP.fields.length + REPLICA.fields.length;
  const uniform = (bytes: ArrayBuffer) => {
    const b = device.createBuffer({
      size: bytes.byteLength,
      usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    });
    device.queue.writeBuffer(b, 0, bytes);
    return b;
  };
  const stepValues = sample(STEP, 3);
  const opValues = sample(OP, 7);
  const stepBuf = uniform(STEP.pack(stepValues as never));
  const opBuf = uniform(OP.pack(opValues as never));
  const replicaValues = sample(REPLICA, 11);
  const replicaBytes = new Uint8Array(REPLICAS_BYTES);
  replicaBytes.set(new Uint8Array(REPLICA.pack(replicaValues as never)), REP * REPLICA.bytes);
  const replicaBuf = uniform(replicaBytes.buffer);
  const host = device.createBuffer({
    size: fields * 4,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC,
  });
  const read = device.createBuffer({
    size: fields * 4,
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
  const group = (i: number, entries: GPUBindGroupEntry[]) =>
    device.createBindGroup({ layout: pipeline.getBindGroupLayout(i), entries });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(
    0,
    group(0, [
      { binding: 0, resource: { buffer: stepBuf } },
      { binding: 1, resource: { buffer: replicaBuf } },
    ]),
  );
  pass.setBindGroup(
    1,
    group(1, [
      { binding: 0, resource: { buffer: opBuf } },
      { binding: 9, resource: { buffer: host } }, // BINDINGS: Host
    ]),
  );
  pass.dispatchWorkgroups(1);
  pass.end();
  enc.copyBufferToBuffer(host, 0, read, 0, fields * 4);
  device.queue.submit([enc.finish()]);
  await read.mapAsync(GPUMapMode.READ);
  const bits = read.getMappedRange().slice(0);
  read.unmap();
  for (const b of [stepBuf, opBuf, replicaBuf, host, read]) b.destroy();
  const got = new DataView(bits);
  const check = (s: Struct<readonly Field[]>, values: Record<string, number>, at: number) =>
    s.fields.forEach(([name, type], i) => {
      const v = type === "f32"
        ? got.getFloat32(4 * (at + i), true)
        : got.getUint32(4 * (at + i), true);
      assertEquals(v, values[name], `${s.name}.${name}`);
    });
  check(STEP, stepValues, 0);
  check(OP, opValues, STEP.fields.length);
  check(REPLICA, replicaValues, STEP.fields.length + OP.fields.length);
});

Deno.test("abi: sizes, unpacking and the generated declarations", () => {
  // WGSL rounds a struct of scalars up to 16 bytes; an element of a uniform array takes 16.
  assertEquals(STEP.bytes, Math.ceil((4 * STEP.fields.length) / 16) * 16);
  assertEquals(REPLICA.bytes, 16);
  assertEquals(REPLICAS_BYTES % 256, 0); // a slot of the replicas' array is a dynamic offset
  assertEquals(OP.bytes, Math.ceil((4 * OP.fields.length) / 16) * 16);
  const values = sample(OP, 2);
  assertEquals(OP.unpack(OP.pack(values as never)), values);
  const wgsl = wgslPrelude(software.constants);
  for (const [name, type] of OP.fields) assert(wgsl.includes(`${name}: ${type},`), name);
  for (const [name, c] of Object.entries(CONSTANTS)) {
    assert(wgsl.includes(`const ${name} = ${c.value >>> 0}u;`), name);
  }
  assertEquals(C.NONE, 0xffffffff);
  // Every kernel file compiles against these declarations (checked on a device elsewhere);
  // none declares them again by hand.
  for (const file of software.files) {
    const source = kernelSource(software, file).slice(wgsl.length);
    assert(!/\bstruct (Step|Op)\b|\bconst (NONE|MODE_TRAIN|WINDOW|RB|WX)\b/.test(source), file);
  }
});
