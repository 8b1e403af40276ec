// Pooling, max and average: 2x2 windows, stride 2, odd sizes floor (twin of src/cpu/pool2d.rs).
// Layout: NCHW; `argmax` holds, per output, the index of the winning input within its image
// (c*h*w space).
//
// Every entry point runs one invocation per output o (n*c*out_h*out_w) and touches only o's
// window, so no atomics are needed. Loads are what costs on CPU adapters (lavapipe loops over
// the SIMD lanes for each one), so each pass loads every value once: the backward passes
// write their window's four gradients from one or two loads rather than gathering per input.
//
// maxpool2d_forward:  y[o] = the window's maximum, argmax[o] = its index; the FIRST maximum in
//                     row-major window order wins ties (replace only on strictly greater), as
//                     on the CPU.
// maxpool2d_backward: dx = dy[o] for the window's winner, 0 for the other three. With
//                     params.relu_mask = 1 it is also the backward of a ReLU right before the
//                     pooling (the network then skips that ReLU's own backward pass): the
//                     winner's ReLU output is y[o], so its gradient passes only where y[o] > 0,
//                     exactly as pooling backward followed by ReLU backward.
// avgpool2d_forward:  y[o] = (top left + top right + bottom left + bottom right) * 0.25, summed
//                     in that order as on the CPU.
// avgpool2d_backward: dx = dy[o] * 0.25 for each input of the window. (argmax is unused.)
// Both backward passes also zero the dropped last row/column of odd sizes, from the windows
// beside them, so every element of dx is written.
// maxpool2d_backward_even: maxpool2d_backward for even heights and widths (nothing dropped;
//                     every window row starts at an even index), storing each window row's
//                     two gradients as one vec2 (lavapipe pays per store instruction, not
//                     per float, and for the dropped-input stores even where none happen).
//
// @binding(0) params: uniform PoolParams; (1) src: read (x, or dy in the backward);
// (2) dst: read_write (y, or dx); (3) argmax: read_write (written by the forward, only read by
// the backward; one declaration serves both); (4) pooled: read, the forward's y (read by
// maxpool2d_backward when relu_mask = 1). 1-D launches (flat_index).

struct PoolParams {
    n: u32,
    channels: u32,
    in_height: u32,
    in_width: u32,
    out_height: u32,
    out_width: u32,
    relu_mask: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: PoolParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<storage, read_write> argmax: array<u32>;
@group(0) @binding(4) var<storage, read> pooled: array<f32>;
// dst two floats at a time (maxpool2d_backward_even only).
@group(0) @binding(2) var<storage, read_write> dst2: array<vec2<f32>>;

fn input_len() -> u32 {
    return params.channels * params.in_height * params.in_width;
}

fn output_len() -> u32 {
    return params.channels * params.out_height * params.out_width;
}

fn output_count() -> u32 {
    return params.n * output_len();
}

// Output o's window: its top-left input as an index within the image (`corner`), where that
// image starts in the batch (`image_start`), and o's column and row.
struct Window {
    corner: u32,
    image_start: u32,
    ox: u32,
    oy: u32,
}

fn window_of(o: u32) -> Window {
    let within = o % output_len();
    let ox = within % params.out_width;
    let oy = (within / params.out_width) % params.out_height;
    let c = within / (params.out_width * params.out_height);
    let corner = (c * params.in_height + 2u * oy) * params.in_width + 2u * ox;
    return Window(corner, (o / output_len()) * input_len(), ox, oy);
}

// The window's four inputs, row-major: top left, top right, bottom left, bottom right.
fn load_window(w: Window) -> vec4<f32> {
    let top = w.image_start + w.corner;
    let bottom = top + params.in_width;
    return vec4<f32>(src[top], src[top + 1u], src[bottom], src[bottom + 1u]);
}

// Writes the window's four input gradients, and zeros for the dropped inputs beside it (the
// last column when the width is odd, the last row when the height is odd, and their corner).
fn store_window_gradient(w: Window, g: vec4<f32>) {
    let width = params.in_width;
    let top = w.image_start + w.corner;
    dst[top] = g.x;
    dst[top + 1u] = g.y;
    dst[top + width] = g.z;
    dst[top + width + 1u] = g.w;
    let drops_column = (width & 1u) == 1u && w.ox + 1u == params.out_width;
    let drops_row = (params.in_height & 1u) == 1u && w.oy + 1u == params.out_height;
    if drops_column {
        dst[top + 2u] = 0.0;
        dst[top + width + 2u] = 0.0;
    }
    if drops_row {
        dst[top + 2u * width] = 0.0;
        dst[top + 2u * width + 1u] = 0.0;
        if drops_column {
            dst[top + 2u * width + 2u] = 0.0;
        }
    }
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn maxpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if o >= output_count() {
        return;
    }
    let w = window_of(o);
    let v = load_window(w);
    var best = v.x;
    var offset = 0u;
    if v.y > best {
        best = v.y;
        offset = 1u;
    }
    if v.z > best {
        best = v.z;
        offset = params.in_width;
    }
    if v.w > best {
        best = v.w;
        offset = params.in_width + 1u;
    }
    dst[o] = best;
    argmax[o] = w.corner + offset;
}

// The gradients of output o's window (row-major), for max pooling.
fn max_window_gradient(o: u32, w: Window) -> vec4<f32> {
    var g = src[o];
    if params.relu_mask == 1u {
        g = select(0.0, g, pooled[o] > 0.0);
    }
    let width = params.in_width;
    let winner = vec4<u32>(argmax[o] - w.corner) == vec4<u32>(0u, 1u, width, width + 1u);
    return select(vec4<f32>(0.0), vec4<f32>(g), winner);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn maxpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if o >= output_count() {
        return;
    }
    let w = window_of(o);
    store_window_gradient(w, max_window_gradient(o, w));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn maxpool2d_backward_even(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if o >= output_count() {
        return;
    }
    let w = window_of(o);
    let g = max_window_gradient(o, w);
    let top = (w.image_start + w.corner) / 2u;
    dst2[top] = g.xy;
    dst2[top + params.in_width / 2u] = g.zw;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn avgpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if o >= output_count() {
        return;
    }
    let v = load_window(window_of(o));
    dst[o] = (v.x + v.y + v.z + v.w) * 0.25;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn avgpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if o >= output_count() {
        return;
    }
    store_window_gradient(window_of(o), vec4<f32>(src[o] * 0.25));
}
