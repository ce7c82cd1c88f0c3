/** Acquiring a WebGPU device, with one-line errors a user can act on. */

import { UserError } from "../errors.ts";

export interface AdapterReport {
  /** What the adapter calls itself, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
  readonly description: string;
  readonly vendor: string;
  readonly architecture: string;
  /** True for a software fallback (Mesa's llvmpipe): correct, but a CPU in disguise. */
  readonly fallback: boolean;
}

export interface Gpu {
  readonly device: GPUDevice;
  readonly adapter: AdapterReport;
}

const NO_ADAPTER = "no WebGPU adapter found: install a Vulkan driver (on Debian, " +
  "`apt-get install mesa-vulkan-drivers` runs WebGPU on the CPU) or use --backend cpu";

/** Opens the default adapter's device with WebGPU's default limits. */
export async function openGpu(): Promise<Gpu> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new UserError("WebGPU is not available: run Deno with --unstable-webgpu");
  }
  let adapter: GPUAdapter | null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch {
    adapter = null;
  }
  if (!adapter) throw new UserError(NO_ADAPTER);
  // Read the adapter's info before requesting the device (some implementations invalidate it).
  const info = adapter.info;
  const report: AdapterReport = {
    description: info.description || info.device || "unknown adapter",
    vendor: info.vendor,
    architecture: info.architecture,
    fallback: (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
      false,
  };
  let device: GPUDevice;
  try {
    device = await adapter.requestDevice();
  } catch (e) {
    throw new UserError(`the WebGPU adapter '${report.description}' refused a device: ${e}`);
  }
  return { device, adapter: report };
}

/** "llvmpipe (LLVM 15.0.6, 256 bits) [software fallback]" */
export function describeAdapter(a: AdapterReport): string {
  return a.description + (a.fallback ? " [software fallback]" : "");
}
