// Conv2d's inputs read from storage buffers: the bindings, and the accessors every
// register-blocked kernel reads them through (reads_texture.wgsl has the same accessors over
// textures). Only the register-blocked modules take a reads file: the tiled kernels, the chunk
// sums and the weight packing declare and index their own bindings.
// Bindings (see products.wgsl): 1 x, 2 dy or dpooled, 3 w, 7 pooled_y, 8 pooled_argmax.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(2) var<storage, read> dpooled: array<f32>;
@group(0) @binding(3) var<storage, read> w: array<f32>;
@group(0) @binding(7) var<storage, read> pooled_y: array<f32>;
@group(0) @binding(8) var<storage, read> pooled_argmax: array<u32>;

// The accessors, one a binding (a table: each is one load).
fn x_at(i: u32) -> f32 { return x[i]; }
fn dy_at(i: u32) -> f32 { return dy[i]; }
fn dpooled_at(i: u32) -> f32 { return dpooled[i]; }
fn w_at(i: u32) -> f32 { return w[i]; }
fn pooled_y_at(i: u32) -> f32 { return pooled_y[i]; }
fn pooled_argmax_at(i: u32) -> u32 { return pooled_argmax[i]; }
