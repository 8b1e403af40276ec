// Dense: the bias gradient, which every variant runs (it is not a product). Entry point:
// dense_backward_bias: c[m] = sum_k A(m, k), one workgroup per row of A (folded into 2-D past
// 65535 workgroups; the extra ones return), split over k like dense_matmul_split.
// Bindings: 0 params, 1 a (dy, read through A's strides), 2 c (db).
// Module: common.wgsl, reads_storage.wgsl, tiled.wgsl, this file.

@compute @workgroup_size(WORKGROUP_SIZE)
fn dense_backward_bias(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let row = wid.x + wid.y * nwg.x;
    var sum = 0.0;
    if row < params.rows {
        for (var k = t; k < params.inner; k += WORKGROUP_SIZE) {
            sum += a_at(row, k);
        }
    }
    let total = workgroup_sum(t, sum);
    if row < params.rows && t == 0u {
        c[row] = total;
    }
}
