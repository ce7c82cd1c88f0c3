/**
 * A lint over every WGSL file: no store to a single component of a vector element of a storage
 * or workgroup array (`Out[i][c] = v`, `Out[i].x += v`). WGSL lets such a store access the whole
 * vector, and real compilers do: Metal writes the whole float4 back (gpuweb#2112, wgpu#6096,
 * MoltenVK#942), HLSL compilers do the same for workgroup memory (llvm-project#167729). Two
 * invocations storing different components of one vec4 then lose updates, at random, where
 * llvmpipe and SwiftShader (which run a workgroup's lanes in step) never show it. Every vec4 is
 * stored whole, by the one invocation that owns it (shaders/common.wgsl).
 *
 * And tanh: the builtin is called in one place only, tanh.wgsl's tanh_forward, which bounds its
 * argument (Metal's tanh overflows to NaN beyond |x| ~ 44; src/gpu/selftest.ts checks the bound).
 */

import { wgslPrelude } from "../src/gpu/abi.ts";
import { FAMILIES } from "../src/gpu/model.ts";
import { SHADERS } from "../src/gpu/shaders.ts";
import { assert, assertEquals } from "./util.ts";

/** WGSL without its comments, with line breaks kept so that positions map to lines. */
function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, " "))
    .replace(/\/\/[^\n]*/g, (c) => " ".repeat(c.length));
}

/** The index just past the bracket that closes the one at `open`. */
function closing(src: string, open: number): number {
  let depth = 0;
  for (let i = open; i < src.length; i++) {
    if (src[i] === "[") depth++;
    else if (src[i] === "]" && --depth === 0) return i + 1;
  }
  return src.length;
}

/** Names of the storage and workgroup arrays whose elements are vectors. */
function vectorArrays(declarations: string): Set<string> {
  const names = new Set<string>();
  const decl = /var<(?:storage[^>]*|workgroup)>\s*(\w+)\s*:\s*array<\s*vec/g;
  for (const m of stripComments(declarations).matchAll(decl)) names.add(m[1]);
  return names;
}

/** Each store to one component of an element of `arrays` in `src`: "line N: text". */
export function componentStores(src: string, arrays: Set<string>): string[] {
  const code = stripComments(src);
  const found: string[] = [];
  for (const m of code.matchAll(/\b(\w+)\s*\[/g)) {
    if (!arrays.has(m[1])) continue;
    // The element (one index), then a component: a second index or a swizzle.
    let at = closing(code, m.index! + m[0].length - 1);
    const rest = code.slice(at);
    const component = /^\s*(\[|\.\s*[xyzwrgba]{1,4}\b)/.exec(rest);
    if (!component) continue;
    at += component[0].length;
    if (component[1] === "[") at = closing(code, at - 1);
    // A store: an assignment (plain or compound) next, not a comparison.
    if (/^\s*([-+*/%&|^]|<<|>>)?=(?!=)/.test(code.slice(at))) {
      const line = code.slice(0, m.index).split("\n").length;
      found.push(`line ${line}: ${src.split("\n")[line - 1].trim()}`);
    }
  }
  return found;
}

const declarations = [
  ...Object.values(FAMILIES).map((f) => wgslPrelude(f.constants)),
  ...Object.values(SHADERS),
].join("\n");
const arrays = vectorArrays(declarations);

Deno.test("shaders: the lint sees the storage and workgroup vector arrays, and finds bad stores", () => {
  for (const name of ["P", "Pn", "Out", "Gout", "partials", "grads", "column_sums"]) {
    assert(arrays.has(name), `${name} is a vector array`);
  }
  assert(!arrays.has("Host") && !arrays.has("partial"), "Host and partial hold scalars");
  const bad = [
    "Out[i >> 2u][i & 3u] = x;",
    "Pn[at >> 2u][at & 3u] = updated; // a comment",
    "Gout[f(a[1])].x += 1.0;",
    "partials[li] . yz = v;",
  ];
  for (const line of bad) assertEquals(componentStores(line, arrays).length, 1, line);
  const good = [
    "Out[i] = x;",
    "let v = Out[i >> 2u][i & 3u];",
    "if (Out[i][0] == 1.0) {}",
    "x[c] = Out[i][c];",
    "// Out[i][c] = v;",
    "Host[m + 1u] = g;",
  ];
  for (const line of good) assertEquals(componentStores(line, arrays), [], line);
});

Deno.test("shaders: no store to a single component of a vec4 in storage or workgroup memory", () => {
  const found = Object.entries(SHADERS).flatMap(([file, src]) =>
    componentStores(src, arrays).map((s) => `shaders/${file} ${s}`)
  );
  assertEquals(found, [], `stores to one component of a shared vector:\n${found.join("\n")}`);
});

Deno.test("shaders: the tanh builtin is called only by tanh_forward, which bounds it", () => {
  const calls = Object.entries(SHADERS).flatMap(([file, src]) =>
    [...stripComments(src).matchAll(/(?<![\w.])tanh\s*\(/g)].map(() => file)
  );
  assertEquals(calls, ["tanh.wgsl"]);
  assert(
    /fn tanh_forward[^{]*\{\s*return tanh\(clamp\(/.test(stripComments(SHADERS["tanh.wgsl"])),
    "tanh_forward clamps its argument",
  );
});
