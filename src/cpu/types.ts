/**
 * Storage for the CPU reference: Float32Array when it mirrors the GPU, Float64Array when a test
 * checks gradients by finite differences and needs the extra precision.
 */
export type Floats = Float32Array | Float64Array;
