/**
 * Reading results back to the host. Each read copies into a fresh staging buffer in the same
 * submit as the work it follows, maps it, copies the floats out and destroys the buffer: a
 * mapped buffer must be unmapped before the next submit that touches it (Deno panics
 * otherwise), and a fresh one per read can never be. On llvmpipe a map costs ~12 ms whatever
 * its size, so callers read once per chunk of work, never per step.
 */

/** A staging buffer for `bytes` bytes, to copy into and then `mapFloats`. */
export function staging(device: GPUDevice, bytes: number): GPUBuffer {
  return device.createBuffer({
    label: "staging",
    size: Math.max(16, Math.ceil(bytes / 16) * 16),
    usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST,
  });
}

/** Maps a staging buffer (after its copy was submitted), copies it out, destroys it. */
export async function mapFloats(buffer: GPUBuffer): Promise<Float32Array> {
  try {
    await buffer.mapAsync(GPUMapMode.READ);
    const out = new Float32Array(buffer.getMappedRange().slice(0));
    buffer.unmap();
    return out;
  } finally {
    buffer.destroy();
  }
}

/** `floats` floats of `source` from float `offset`, in their own submit. */
export function readFloats(
  device: GPUDevice,
  source: GPUBuffer,
  offset: number,
  floats: number,
): Promise<Float32Array> {
  const buf = staging(device, floats * 4);
  const enc = device.createCommandEncoder();
  if (floats > 0) enc.copyBufferToBuffer(source, offset * 4, buf, 0, floats * 4);
  device.queue.submit([enc.finish()]);
  return mapFloats(buf).then((all) => all.subarray(0, floats));
}

/** rows x cols values out of a padded [rows][roundUp4(cols)] matrix starting at float `at`. */
export function unpad(all: Float32Array, at: number, rows: number, cols: number): Float32Array {
  const stride = Math.ceil(cols / 4) * 4;
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    out.set(all.subarray(at + r * stride, at + r * stride + cols), r * cols);
  }
  return out;
}

/** unpad's inverse: rows x cols values into a padded [rows][roundUp4(cols)] matrix at float `at`. */
export function pad(
  all: Float32Array,
  at: number,
  values: ArrayLike<number>,
  rows: number,
  cols: number,
): void {
  const stride = Math.ceil(cols / 4) * 4;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) all[at + r * stride + j] = values[r * cols + j];
  }
}
