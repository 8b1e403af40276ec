// Conv2d, the part of every module of the op (twin of src/cpu/conv2d.rs; the host is
// src/gpu/conv2d/). Stride 1 and valid padding, except in the tiled kernels. Activations NCHW,
// weights OIHW (out channel, in channel, ky, kx), bias one per out channel. The passes:
//   forward:          y[n][co][oy][ox] = bias[co] + sum_(ci,ky,kx) x[n][ci][oy+ky][ox+kx]
//                       * w[co][ci][ky][kx], then max(., 0) when params.relu == 1
//   backward input:   dx[n][ci][iy][ix] = sum_(co,ky,kx) dy[n][co][iy-ky][ix-kx]
//                       * w[co][ci][ky][kx] over the dy positions that exist (a gather)
//   backward weights: dw[co][ci][ky][kx] = sum_(n,oy,ox) dy[n][co][oy][ox] * x[n][ci][oy+ky][ox+kx]
//                     db[co] = sum_(n,oy,ox) dy[n][co][oy][ox]
// Every output element is summed by one invocation in a fixed order (no atomics, no races), so
// results are bit-reproducible on one adapter. The weight gradient is summed in two passes:
// partial sums over fixed chunks of the batch's row segments (image, oy), then conv2d_reduce
// (reduce.wgsl) adds the chunks in chunk order.
//
// This file declares no bindings: constants and helpers only. A module is this file, then
//   reduce.wgsl, pack.wgsl              the chunk sums and the weight packing (every variant),
//                                       each with its own params and bindings; or
//   tiled.wgsl                          the tiled variant (real GPUs), with its own params
//                                       and bindings; or
//   products.wgsl (the register-blocked passes' uniforms and binding numbers), one of
//   reads_storage.wgsl / reads_texture.wgsl (how x, dy, dpooled, w, pooled_y and
//   pooled_argmax are read: x_at(i), ...), then
//   register_blocked*.wgsl, then share_per_lane.wgsl or subgroup.wgsl
//                                       the register-blocked variants (CPU adapters); the last
//                                       file says how lanes get the values that all of them
//                                       need (subgroup.wgsl: the *-subgroup variants), and
//                                       reads_texture.wgsl makes the *-texture ones
// Each host file lists its module's files (src/gpu/conv2d/<family>.rs, `*_MODULE`), uniform
// structs included (declared by the host, wgsl_struct!); no text is rewritten.
//
// Channels of a register-blocked block, and of a packed weight slot (conv2d_pack_*_weights);
// the host mirrors it (src/gpu/conv2d/register_blocked.rs).
const BLOCK_CHANNELS: u32 = 32u;

fn splat4(v: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(v, v, v, v);
}

// acc[p] += a * b[p]: the outer product of 4 channels and 4 positions.
fn outer_acc(acc: mat4x4<f32>, a: vec4<f32>, b: vec4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(fma(a, vec4<f32>(b.x), acc[0]), fma(a, vec4<f32>(b.y), acc[1]), fma(a, vec4<f32>(b.z), acc[2]), fma(a, vec4<f32>(b.w), acc[3]));
}
