/**
 * The exit abort of issue #10: wgpu's unused OpenGL backend (EGL) must not be loaded in the test
 * process, or a module's thread tearing its WebGPU instance down races the main thread's exit
 * (see WEBGPU_BACKENDS in tests/util.ts). Checked where it happened: in a `deno test` module,
 * with a device open, by the shared objects mapped into the process
 * (a child reads its /proc maps).
 */

import { assert, gpu, testWith } from "./util.ts";

// libEGL.so.1 (libglvnd), libEGL_mesa.so.0 and Mesa's swrast_dri.so: what the GL backend loads.
const GL_BACKEND = /\/(libEGL[^/]*\.so[^/]*|[^/]*_dri\.so)$/;

testWith(
  ["run", "env"],
  "teardown: the tests' WebGPU loads no OpenGL backend (the exit race of issue #10)",
  async () => {
    if (Deno.build.os !== "linux") return; // /proc is Linux's; so was the race
    await gpu();
    // Deno grants a process's own /proc files only with --allow-all: read them from a child.
    const out = await new Deno.Command("cat", { args: [`/proc/${Deno.pid}/maps`] }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    const maps = new TextDecoder().decode(out.stdout);
    const gl = [...new Set(maps.split("\n").map((l) => l.split(/\s+/)[5] ?? ""))]
      .filter((path) => GL_BACKEND.test(path));
    const env = Deno.env.get("DENO_WEBGPU_BACKEND");
    assert(gl.length === 0, `the OpenGL backend is loaded (DENO_WEBGPU_BACKEND=${env}): ${gl}`);
  },
);
