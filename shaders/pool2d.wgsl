// Pooling, max and average: 2x2 windows, stride 2, odd sizes floor (twin of src/cpu/pool2d.rs).
// Layout: NCHW; `argmax` holds, per output, the index of the winning input within its image
// (c*h*w space).
//
// maxpool2d_forward:  one invocation per output (n*c*out_h*out_w): y[o] = the window's maximum,
//                     argmax[o] = its index; the FIRST maximum in row-major window order wins
//                     ties (replace only on strictly greater), as on the CPU.
// maxpool2d_backward: one invocation per input element (n*c*in_h*in_w): dx = dy[o] if the
//                     element won its window o, else 0 (also for the dropped last row/column).
//                     A gather, not a scatter: windows do not overlap, so no atomics.
// avgpool2d_forward:  one invocation per output: y[o] = (top left + top right + bottom left +
//                     bottom right) * 0.25, summed in that order as on the CPU.
// avgpool2d_backward: one invocation per input element: dx = dy[o] * 0.25 for the window o it
//                     belongs to, 0 for the dropped last row/column. (argmax is unused.)
//
// @binding(0) params: uniform PoolParams; (1) src: read (x, or dy in the backward);
// (2) dst: read_write (y, or dx); (3) argmax: read_write (written by the forward, only read by
// the backward; one declaration serves both). 1-D launches (flat_index).

struct PoolParams {
    n: u32,
    channels: u32,
    in_height: u32,
    in_width: u32,
    out_height: u32,
    out_width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: PoolParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;

fn input_len() -> u32 {
    return params.channels * params.in_height * params.in_width;
}

fn output_len() -> u32 {
    return params.channels * params.out_height * params.out_width;
}

// The 2x2 window of output `o` (within its batch), as indices into its image, row-major.
fn window_of(o: u32) -> array<u32, 4> {
    let within = o % output_len();
    let ox = within % params.out_width;
    let oy = (within / params.out_width) % params.out_height;
    let c = within / (params.out_width * params.out_height);
    let corner = (c * params.in_height + 2u * oy) * params.in_width + 2u * ox;
    return array<u32, 4>(corner, corner + 1u, corner + params.in_width, corner + params.in_width + 1u);
}

// The output whose window holds input element `i` (within the batch), or none (the dropped
// last row/column) as the second component being false.
fn output_of(i: u32) -> vec2<u32> {
    let image = i / input_len();
    let within = i % input_len();
    let ix = within % params.in_width;
    let iy = (within / params.in_width) % params.in_height;
    let c = within / (params.in_width * params.in_height);
    let ox = ix / 2u;
    let oy = iy / 2u;
    let inside = ox < params.out_width && oy < params.out_height;
    let o = image * output_len() + (c * params.out_height + oy) * params.out_width + ox;
    return vec2<u32>(o, u32(inside));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn maxpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if o >= params.n * output_len() {
        return;
    }
    let window = window_of(o);
    let base = (o / output_len()) * input_len();
    var best = window[0];
    for (var k = 1u; k < 4u; k++) {
        if src[base + window[k]] > src[base + best] {
            best = window[k];
        }
    }
    dst[o] = src[base + best];
    argmax[o] = best;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn maxpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * input_len() {
        return;
    }
    let o = output_of(i);
    var grad = 0.0;
    if o.y != 0u {
        grad = select(0.0, src[o.x], argmax[o.x] == i % input_len());
    }
    dst[i] = grad;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn avgpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if o >= params.n * output_len() {
        return;
    }
    let w = window_of(o);
    let base = (o / output_len()) * input_len();
    dst[o] = (src[base + w[0]] + src[base + w[1]] + src[base + w[2]] + src[base + w[3]]) * 0.25;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn avgpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * input_len() {
        return;
    }
    let o = output_of(i);
    dst[i] = select(0.0, src[o.x] * 0.25, o.y != 0u);
}
