// Conv2d's inputs read from textures, for the register-blocked-texture variants: the same
// accessors as reads_storage.wgsl over r32float (r32uint for the argmax) textures, which the
// host fills by copying the buffers before each pass (src/gpu/texture.rs says why: on lavapipe
// without AVX-512 a texture load costs a quarter of a storage load). Element i lies at texel
// (i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), as texture::stage lays it out.
// Bindings: 1 src_texture, 3 factor_texture, 4 pooled_y_texture, 7 pooled_argmax_texture.

// Texels per row: the host's texture::TEXTURE_WIDTH, a power of two (a mask and a shift).
const TEXTURE_WIDTH: u32 = 4096u;

@group(0) @binding(1) var src_texture: texture_2d<f32>;
@group(0) @binding(3) var factor_texture: texture_2d<f32>;
@group(0) @binding(4) var pooled_y_texture: texture_2d<f32>;
@group(0) @binding(7) var pooled_argmax_texture: texture_2d<u32>;

fn src_at(i: u32) -> f32 {
    return textureLoad(src_texture, vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), 0).x;
}

fn factor_at(i: u32) -> f32 {
    return textureLoad(factor_texture, vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), 0).x;
}

fn pooled_y_at(i: u32) -> f32 {
    return textureLoad(pooled_y_texture, vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), 0).x;
}

fn pooled_argmax_at(i: u32) -> u32 {
    return textureLoad(pooled_argmax_texture, vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), 0).x;
}
