/**
 * The exit abort of issue #10 (README, "Tests"): the test process must start wgpu without its
 * OpenGL backend. Checked by the variable that says so, and on Linux by what is mapped into this
 * process with a device open: none of Mesa's GL libraries.
 */

import { assert, gpu, testWith } from "./util.ts";

// What wgpu's GL backend loads from Mesa: its EGL driver and a DRI driver (swrast_dri.so here).
// Not libEGL.so.1 or NVIDIA's libraries: a Vulkan driver may load those for itself.
const MESA_GL = /\/(libEGL_mesa\.so[^/]*|[^/]*_dri\.so)$/;
const GL_NAMES = new Set(["gl", "gles", "opengl"]);

testWith(
  ["run", "env"],
  "teardown: the tests' WebGPU loads no OpenGL backend (the exit race of issue #10)",
  async () => {
    const env = Deno.env.get("DENO_WEBGPU_BACKEND");
    assert(env, "DENO_WEBGPU_BACKEND is not set: run `deno task test`");
    const gles = env.split(",").filter((b) => GL_NAMES.has(b.trim().toLowerCase()));
    assert(gles.length === 0, `DENO_WEBGPU_BACKEND=${env} starts the OpenGL backend`);
    if (Deno.build.os !== "linux") return; // /proc is Linux's
    await gpu();
    // Deno grants a process's own /proc files only with --allow-all: read them from a child.
    const out = await new Deno.Command("cat", { args: [`/proc/${Deno.pid}/maps`] }).output();
    assert(out.success, new TextDecoder().decode(out.stderr));
    const maps = new TextDecoder().decode(out.stdout);
    const gl = [...new Set(maps.split("\n").map((l) => l.split(/\s+/)[5] ?? ""))]
      .filter((path) => MESA_GL.test(path));
    assert(gl.length === 0, `the OpenGL backend is loaded (DENO_WEBGPU_BACKEND=${env}): ${gl}`);
  },
);
