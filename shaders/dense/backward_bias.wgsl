// Dense: the bias gradient, which every variant runs (it is not a product), a module of its own
// (this file after the preamble). Entry point:
// dense_backward_bias: db[o] = sum_n dy(n, o) over the rows n < batch of dy, read through
//   dy_strides, one workgroup per output o (folded into 2-D past 65535 workgroups; the extra
//   ones return), invocation t summing n = t, t + WORKGROUP_SIZE, ... in order, then
//   workgroup_sum adding those in a fixed tree (as dense_matmul_split).
// Bindings: 0 bias_params, 1 dy, 2 db.

// BiasGradParams: the uniform, declared by the host (src/gpu/dense/kernels.rs) with the
// fields' meaning, and listed before this file.

@group(0) @binding(0) var<uniform> bias_params: BiasGradParams;
@group(0) @binding(1) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read_write> db: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let o = wid.x + wid.y * nwg.x;
    let total = workgroup_sum(t, column_part(o, t));
    if o < bias_params.outputs && t == 0u {
        db[o] = total;
    }
}

// Invocation t's part of output o's sum: dy(n, o) for n = t, t + WORKGROUP_SIZE, ... in order
// (0 for the extra workgroups past the last output).
fn column_part(o: u32, t: u32) -> f32 {
    var sum = 0.0;
    if o < bias_params.outputs {
        for (var n = t; n < bias_params.batch; n += WORKGROUP_SIZE) {
            sum += dy[o * bias_params.dy_strides.x + n * bias_params.dy_strides.y];
        }
    }
    return sum;
}
