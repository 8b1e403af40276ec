// Dense: A and B read from rgba32float textures, four consecutive floats a texel, for the
// register-blocked-texture variant: the same accessors as reads_storage.wgsl, which the host
// fills by copying the buffers before each pass (src/gpu/texture.rs says why: on lavapipe
// without AVX-512 a texture load costs much less than a storage load). Texel i lies at
// (i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), as texture::stage lays it out.
// Bindings: 1 a_texture, 3 b_texture.

// Texels per row: the host's texture::TEXTURE_WIDTH, a power of two (a mask and a shift).
const TEXTURE_WIDTH: u32 = 4096u;

@group(0) @binding(1) var a_texture: texture_2d<f32>;
@group(0) @binding(3) var b_texture: texture_2d<f32>;

fn a4_at(i: u32) -> vec4<f32> {
    return textureLoad(a_texture, vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), 0);
}

fn a_element(i: u32) -> f32 {
    return a4_at(i / 4u)[i % 4u];
}

fn b4_at(i: u32) -> vec4<f32> {
    return textureLoad(b_texture, vec2<u32>(i % TEXTURE_WIDTH, i / TEXTURE_WIDTH), 0);
}

fn b_element(i: u32) -> f32 {
    return b4_at(i / 4u)[i % 4u];
}
