// Dense: A and B read from storage buffers, the bindings and the accessors every kernel reads
// them through (reads_texture.wgsl has the same accessors over textures): a_element(i) is
// a[i], a4_at(i) the vec4 a4[i] = a[4i..4i+3]; likewise for B.
// Bindings: 1 a (and a4), 3 b (and b4). Every vec4 the dot and axpy kernels read lies inside
// the matrix, so a binding that is not a multiple of 16 bytes is fine.

@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;
@group(0) @binding(1) var<storage, read> a4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> b4: array<vec4<f32>>;

fn a_element(i: u32) -> f32 {
    return a[i];
}

fn a4_at(i: u32) -> vec4<f32> {
    return a4[i];
}

fn b_element(i: u32) -> f32 {
    return b[i];
}

fn b4_at(i: u32) -> vec4<f32> {
    return b4[i];
}
