// Conv2d, register-blocked: each pass's uniform, and the binding numbers of every
// register-blocked kernel (tiled.wgsl, reduce.wgsl, pack.wgsl and the subgroup probe declare
// their own). Module: common.wgsl, this file, a reads file, then the family's files.
// Bindings (group 0). An entry point declares only what it reads or writes, so a number is
// shared by globals that no entry point uses together, and a kernel's numbers have gaps:
//   0 forward_params, input_grad_params or weight_grad_params: the pass's uniform (here)
//   1 x                  forward, weight gradients (read through x_at: the reads file)
//   2 dy                 input and weight gradients (dy_at); in the pooled weight gradient
//     dpooled            the gradient at the pooled output (dpooled_at)
//   3 w                  forward and input gradient whose weights do not fit the packed
//                        bindings (w_at)
//   4, 5 packed_lo, packed_hi: uniform   forward and input gradient: the weights packed by
//                        conv2d_pack_*_weights (register_blocked.wgsl)
//   6 b                  forward (register_blocked_forward.wgsl)
//   7 pool_y             the fused forward and pooling's output, written
//                        (register_blocked_forward.wgsl); pooled_y, the same read by the pooled
//                        weight gradient (pooled_y_at)
//   8 pool_argmax        its argmax, written (register_blocked_forward.wgsl); pooled_argmax, the
//                        same read by the pooled weight gradient (pooled_argmax_at)
//   9 dst                the pass's output: y (forward), dx (input gradient) or the partial
//                        sums (weight gradients), written through store_tile and
//                        store_channels (register_blocked.wgsl)
// Partial sums: chunk c holds its partial dw at [c * partial_stride, + W) (W = weight count,
// OIHW) and its partial db at [c * partial_stride + W, + out_channels), which conv2d_reduce
// (reduce.wgsl, with its own params and bindings) adds into dw and db.

// The most row (or column) runs of the register-blocked input gradient's position classes,
// and the most classes (register_blocked_backward_input.wgsl).
const MAX_RUNS: u32 = 16u;
const MAX_CLASSES: u32 = 256u;

// The uniforms, Conv2dForwardParams, Conv2dInputGradParams and Conv2dWeightGradParams (each
// starting with a Conv2dShape), are declared by the host with their fields' meaning
// (src/gpu/conv2d/products.rs, mod.rs) and listed before this file.

@group(0) @binding(0) var<uniform> forward_params: Conv2dForwardParams;
@group(0) @binding(0) var<uniform> input_grad_params: Conv2dInputGradParams;
@group(0) @binding(0) var<uniform> weight_grad_params: Conv2dWeightGradParams;

// The pass's output (binding 9 above). One name for the three, so that one set of store
// helpers serves them all (WGSL cannot pass a storage buffer to a function).
@group(0) @binding(9) var<storage, read_write> dst: array<f32>;
