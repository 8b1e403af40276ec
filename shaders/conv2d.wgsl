// Conv2d, stride 1, valid padding (twin of src/cpu/conv2d.rs). Activations NCHW, weights OIHW
// (out channel, in channel, ky, kx), bias one per out channel. Every output element is one
// invocation that sums its terms in a fixed order: no atomics, bit-reproducible.
//
// conv2d_forward:          dst = y  [n][co][oy][ox] = bias[co] + sum_(ci,ky,kx) x[n][ci][oy+ky][ox+kx]
//                          * w[co][ci][ky][kx], then max(., 0) when params.relu == 1.
//                          src = x, factor = w.                               bindings 0..4
// conv2d_backward_input:   dst = dx [n][ci][iy][ix] = sum_(co,ky,kx) dy[n][co][iy-ky][ix-kx]
//                          * w[co][ci][ky][kx] over in-range output positions (a gather, never a
//                          scatter). src = dy, factor = w.                    bindings 0..3
// conv2d_backward_weights: dst = dw [co][ci][ky][kx] = sum_(n,oy,ox) dy[n][co][oy][ox]
//                          * x[n][ci][oy+ky][ox+kx]. src = dy, factor = x.    bindings 0..3
// conv2d_backward_bias:    dst = db [co] = sum_(n,oy,ox) dy[n][co][oy][ox]. src = dy.
//                                                                             bindings 0..2
//
// @binding(0) params: uniform Conv2dParams; (1) src: read; (2) dst: read_write;
// (3) factor: read; (4) bias: read. Every kernel is `dst = sum(src * factor)`, so the bindings
// are named by role; the table above says which tensor each role is.
// One invocation per dst element, 1-D launch (flat_index); params.len = dst elements.

struct Conv2dParams {
    batch: u32,
    in_channels: u32,
    in_height: u32,
    in_width: u32,
    out_channels: u32,
    out_height: u32,
    out_width: u32,
    kernel: u32,
    relu: u32,
    len: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Conv2dParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read> factor: array<f32>;
@group(0) @binding(4) var<storage, read> bias: array<f32>;

// A flat index split into four coordinates, outermost first, of a tensor whose three inner
// dimensions are `inner` (the outermost is implied).
fn unflatten4(i: u32, inner: vec3<u32>) -> vec4<u32> {
    let d3 = i % inner.z;
    let rest = i / inner.z;
    let d2 = rest % inner.y;
    let rest2 = rest / inner.y;
    return vec4<u32>(rest2 / inner.x, rest2 % inner.x, d2, d3);
}

fn input_plane() -> u32 {
    return params.in_height * params.in_width;
}

fn output_plane() -> u32 {
    return params.out_height * params.out_width;
}

fn kernel_plane() -> u32 {
    return params.kernel * params.kernel;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    // (image, out channel, oy, ox)
    let o = unflatten4(i, vec3<u32>(params.out_channels, params.out_height, params.out_width));
    let k = params.kernel;
    var sum = bias[o.y];
    for (var ci = 0u; ci < params.in_channels; ci++) {
        let x_window = ((o.x * params.in_channels + ci) * params.in_height + o.z) * params.in_width + o.w;
        let w_patch = (o.y * params.in_channels + ci) * kernel_plane();
        for (var ky = 0u; ky < k; ky++) {
            let x_row = x_window + ky * params.in_width;
            let w_row = w_patch + ky * k;
            for (var kx = 0u; kx < k; kx++) {
                sum += src[x_row + kx] * factor[w_row + kx];
            }
        }
    }
    dst[i] = select(sum, max(sum, 0.0), params.relu == 1u);
}

// The kernel offsets of a window that keep `input_pos - offset` inside `0..outputs`:
// `vec2(first, last + 1)`.
fn valid_offsets(input_pos: u32, outputs: u32) -> vec2<u32> {
    let first = select(0u, input_pos + 1u - outputs, input_pos + 1u > outputs);
    let end = min(params.kernel, input_pos + 1u);
    return vec2<u32>(first, end);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    // (image, in channel, iy, ix)
    let p = unflatten4(i, vec3<u32>(params.in_channels, params.in_height, params.in_width));
    let k = params.kernel;
    let ky_range = valid_offsets(p.z, params.out_height);
    let kx_range = valid_offsets(p.w, params.out_width);
    var sum = 0.0;
    for (var co = 0u; co < params.out_channels; co++) {
        // dy[n][co][iy][ix]: the window offsets (ky, kx) are subtracted from it below.
        let dy_origin = ((p.x * params.out_channels + co) * params.out_height + p.z) * params.out_width + p.w;
        let w_patch = (co * params.in_channels + p.y) * kernel_plane();
        for (var ky = ky_range.x; ky < ky_range.y; ky++) {
            let dy_row = dy_origin - ky * params.out_width;
            let w_row = w_patch + ky * k;
            for (var kx = kx_range.x; kx < kx_range.y; kx++) {
                sum += src[dy_row - kx] * factor[w_row + kx];
            }
        }
    }
    dst[i] = sum;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_weights(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    // (out channel, in channel, ky, kx)
    let wi = unflatten4(i, vec3<u32>(params.in_channels, params.kernel, params.kernel));
    var sum = 0.0;
    for (var n = 0u; n < params.batch; n++) {
        let dy_plane = (n * params.out_channels + wi.x) * output_plane();
        let x_window = ((n * params.in_channels + wi.y) * params.in_height + wi.z) * params.in_width + wi.w;
        for (var oy = 0u; oy < params.out_height; oy++) {
            let dy_row = dy_plane + oy * params.out_width;
            let x_row = x_window + oy * params.in_width;
            for (var ox = 0u; ox < params.out_width; ox++) {
                sum += src[dy_row + ox] * factor[x_row + ox];
            }
        }
    }
    dst[i] = sum;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn conv2d_backward_bias(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let co = flat_index(gid, nwg);
    if co >= params.len {
        return;
    }
    let plane = output_plane();
    var sum = 0.0;
    for (var n = 0u; n < params.batch; n++) {
        let dy_plane = (n * params.out_channels + co) * plane;
        for (var j = 0u; j < plane; j++) {
            sum += src[dy_plane + j];
        }
    }
    dst[co] = sum;
}
