// Random affine augmentation of a training batch (twin of src/cpu/augment.rs).
//
// augment_batch: one invocation per output pixel (n*784): image b's map has the parameters
//                random_unit(key.seed ^ params.stream, key.step, 4*b + k), k = 0..3 (rotation,
//                scale, shift x, shift y), each mapped to [-1, 1) and scaled by the maxima;
//                output pixel o reads src at zoom * R(angle) * (o - 13.5 - shift) + 13.5,
//                bilinearly, zero outside the 28x28 image. The arithmetic follows the CPU's
//                operation for operation; sin/cos come from the same polynomial (WGSL's
//                built-ins are accurate to 2^-11 only) and nothing divides.
// Images are n x 28 x 28 f32, row-major; dst must not alias src.
//
// @binding(0) params: uniform AugmentParams; (1) key: uniform StepKey; (2) src: read (n*784);
// (3) dst: read_write (n*784). 1-D launch (flat_index).

const SIDE: u32 = 28u;
const IMAGE_PIXELS: u32 = 784u;
const CENTRE: f32 = 13.5;

struct AugmentParams {
    n: u32,
    // Xored into key.seed: augmentation's own random stream.
    stream: u32,
    max_shift: f32,
    // Radians.
    max_rotation: f32,
    max_scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: AugmentParams;
@group(0) @binding(1) var<uniform> key: StepKey;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// (sin t, cos t) for |t| <= pi: half-angle Taylor polynomials, then the double-angle formulas.
fn sin_cos(t: f32) -> vec2<f32> {
    let h = 0.5 * t;
    let h2 = h * h;
    let sin_h = h
        * (1.0
            - h2 * (1.6666667e-1
                - h2 * (8.333334e-3
                    - h2 * (1.984127e-4 - h2 * (2.7557319e-6 - h2 * 2.5052108e-8)))));
    let cos_h = 1.0
        - h2 * (5e-1
            - h2 * (4.1666668e-2
                - h2 * (1.3888889e-3
                    - h2 * (2.4801588e-5 - h2 * (2.755732e-7 - h2 * 2.0876756e-9)))));
    return vec2<f32>(2.0 * sin_h * cos_h, 1.0 - 2.0 * sin_h * sin_h);
}

// A parameter of image b mapped to [-1, 1).
fn signed_unit(b: u32, k: u32) -> f32 {
    return 2.0 * random_unit(key.seed ^ params.stream, key.step, 4u * b + k) - 1.0;
}

fn source_pixel(base: u32, x: i32, y: i32) -> f32 {
    if x < 0 || x >= i32(SIDE) || y < 0 || y >= i32(SIDE) {
        return 0.0;
    }
    return src[base + u32(y) * SIDE + u32(x)];
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn augment_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * IMAGE_PIXELS {
        return;
    }
    let b = i / IMAGE_PIXELS;
    let p = i % IMAGE_PIXELS;
    let angle = signed_unit(b, 0u) * params.max_rotation;
    let zoom = 1.0 + signed_unit(b, 1u) * params.max_scale;
    let shift_x = signed_unit(b, 2u) * params.max_shift;
    let shift_y = signed_unit(b, 3u) * params.max_shift;
    let sc = sin_cos(angle);
    let a = sc.y * zoom;
    let s = sc.x * zoom;
    let dx = f32(p % SIDE) - CENTRE - shift_x;
    let dy = f32(p / SIDE) - CENTRE - shift_y;
    // Far outside, every neighbour is zero; clamping keeps the integer conversion in range.
    let x = clamp(a * dx - s * dy + CENTRE, -2.0, 30.0);
    let y = clamp(s * dx + a * dy + CENTRE, -2.0, 30.0);
    let x0 = floor(x);
    let y0 = floor(y);
    let fx = x - x0;
    let fy = y - y0;
    let ix = i32(x0);
    let iy = i32(y0);
    let base = b * IMAGE_PIXELS;
    let top = (1.0 - fx) * source_pixel(base, ix, iy) + fx * source_pixel(base, ix + 1, iy);
    let bottom = (1.0 - fx) * source_pixel(base, ix, iy + 1) + fx * source_pixel(base, ix + 1, iy + 1);
    dst[i] = (1.0 - fy) * top + fy * bottom;
}
