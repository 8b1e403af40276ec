// Conv2d's inputs read from storage buffers: the bindings, and the accessors every
// register-blocked kernel reads them through (reads_texture.wgsl has the same accessors over
// textures). Only the register-blocked modules take a reads file: the tiled kernels, the chunk
// sums and the weight packing declare and index their own bindings.
// Bindings: 1 src, 3 factor, 4 pooled_y, 7 pooled_argmax (see products.wgsl).

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read> factor: array<f32>;
@group(0) @binding(4) var<storage, read> pooled_y: array<f32>;
@group(0) @binding(7) var<storage, read> pooled_argmax: array<u32>;

fn src_at(i: u32) -> f32 {
    return src[i];
}

fn factor_at(i: u32) -> f32 {
    return factor[i];
}

fn pooled_y_at(i: u32) -> f32 {
    return pooled_y[i];
}

fn pooled_argmax_at(i: u32) -> u32 {
    return pooled_argmax[i];
}
