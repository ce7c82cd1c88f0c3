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

/** What to tell the user when there is no WebGPU, or no adapter (the lab says it its way). */
export interface GpuMessages {
  readonly noWebGpu: string;
  readonly noAdapter: string;
}

const DENO_MESSAGES: GpuMessages = {
  noWebGpu: "WebGPU is not available: run Deno with --unstable-webgpu",
  noAdapter: "no WebGPU adapter found: install a Vulkan driver (on Debian, " +
    "`apt-get install mesa-vulkan-drivers` runs WebGPU on the CPU) or use --backend cpu",
};

/** Opens the default adapter's device with WebGPU's default limits. */
export async function openGpu(messages: GpuMessages = DENO_MESSAGES): Promise<Gpu> {
  if (!("gpu" in navigator) || !navigator.gpu) throw new UserError(messages.noWebGpu);
  let adapter: GPUAdapter | null;
  try {
    adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  } catch {
    adapter = null;
  }
  if (!adapter) throw new UserError(messages.noAdapter);
  // Read the adapter's info before requesting the device (some implementations invalidate it).
  const info = adapter.info;
  // Where the flag lives moved between versions of the spec: on the adapter, then its info.
  const fallback = (info as GPUAdapterInfo & { isFallbackAdapter?: boolean }).isFallbackAdapter ??
    (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  const report: AdapterReport = {
    // llvmpipe describes itself; Chromium's SwiftShader leaves it empty.
    description: info.description || info.device ||
      [info.vendor, info.architecture].filter(Boolean).join(" ") || "unknown adapter",
    vendor: info.vendor,
    architecture: info.architecture,
    fallback,
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

/**
 * Whether the default adapter is a software fallback (llvmpipe, SwiftShader), without opening a
 * device; null when there is no WebGPU or no adapter.
 */
export async function adapterIsFallback(): Promise<boolean | null> {
  if (!("gpu" in navigator) || !navigator.gpu) return null;
  try {
    const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
    if (!adapter) return null;
    const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    return info.isFallbackAdapter ??
      (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
  } catch {
    return null;
  }
}
