// Conv2d's inputs read from textures, for the register-blocked-texture variants: the same
// accessors as reads_storage.wgsl over r32float (r32uint for the argmax) textures, which the
// host fills by copying the buffers before each pass (src/gpu/texture.rs says why: on lavapipe
// without AVX-512 a texture load costs a quarter of a storage load). Element i lies at texel
// (i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), as texture::stage lays it out.
// Bindings (see products.wgsl): 1 x_texture, 2 dy_texture or dpooled_texture, 3 w_texture,
// 7 pooled_y_texture, 8 pooled_argmax_texture.

// Texels per row: the host's texture::TEXTURE_WIDTH, a power of two (a mask and a shift).
const TEXTURE_WIDTH: u32 = 4096u;

@group(0) @binding(1) var x_texture: texture_2d<f32>;
@group(0) @binding(2) var dy_texture: texture_2d<f32>;
@group(0) @binding(2) var dpooled_texture: texture_2d<f32>;
@group(0) @binding(3) var w_texture: texture_2d<f32>;
@group(0) @binding(7) var pooled_y_texture: texture_2d<f32>;
@group(0) @binding(8) var pooled_argmax_texture: texture_2d<u32>;

// The texel of element i.
fn texel(i: u32) -> vec2<u32> {
    return vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH);
}

// The accessors, one a binding (a table: each is one load).
fn x_at(i: u32) -> f32 { return textureLoad(x_texture, texel(i), 0).x; }
fn dy_at(i: u32) -> f32 { return textureLoad(dy_texture, texel(i), 0).x; }
fn dpooled_at(i: u32) -> f32 { return textureLoad(dpooled_texture, texel(i), 0).x; }
fn w_at(i: u32) -> f32 { return textureLoad(w_texture, texel(i), 0).x; }
fn pooled_y_at(i: u32) -> f32 { return textureLoad(pooled_y_texture, texel(i), 0).x; }
fn pooled_argmax_at(i: u32) -> u32 { return textureLoad(pooled_argmax_texture, texel(i), 0).x; }
