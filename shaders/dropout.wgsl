// Dropout while training (twin of src/cpu/dropout.rs): inverted dropout with a mask recomputed
// from the counter-based RNG, never stored. Element j of the image at batch position b is kept
// when random_unit(mix32(mix32(seed ^ layer_stream) ^ b), step, j) >= rate, and then scaled by
// `scale` = 1 / (1 - rate) (computed on the host in f32, as the CPU does).
//
// dropout_apply: dst[i] = src[i] * scale if kept else 0. Dropout is linear, so the same entry
//                point is the forward (x -> y) and the backward (dy -> dx) with the same key.
//
// @binding(0) params: uniform DropoutParams; (1) key: uniform StepKey (seed and step, rewritten
// each step); (2) src: read; (3) dst: read_write. One invocation per element, 1-D launch.

struct DropoutParams {
    // Elements per image, and in the whole batch.
    image_len: u32,
    len: u32,
    layer_stream: u32,
    rate: f32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: DropoutParams;
@group(0) @binding(1) var<uniform> key: StepKey;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WORKGROUP_SIZE)
fn dropout_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.len {
        return;
    }
    let image_key = mix32(mix32(key.seed ^ params.layer_stream) ^ (i / params.image_len));
    let kept = random_unit(image_key, key.step, i % params.image_len) >= params.rate;
    dst[i] = select(0.0, src[i] * params.scale, kept);
}
