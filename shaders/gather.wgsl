// Training-batch gather from the dataset uploaded once (twin of Split::gather in src/data.rs).
//
// gather_batch: one invocation per 4 output pixels (n*196 packed words; 784 = 4 * 196, so
//               every image starts on a word): x[b*784 + 4w .. + 3] = the 4 bytes of word w of
//               image indices[b], each f32(byte) / 255.0 like data::pixel_value, stored as one
//               vec4; invocations with w == 0 also write labels_out[b] = the label byte of
//               example indices[b]. (Per word, not per pixel: a CPU adapter pays per load and
//               per store instruction, not per byte.)
// Images and labels are bytes packed into little-endian u32 words: byte j is
// (words[j / 4] >> (8 * (j % 4))) & 0xff; image i starts at byte i*784.
//
// @binding(0) params: uniform GatherParams; (1) images: read; (2) labels: read;
// (3) indices: read (n u32); (4) x: read_write (n*784 f32, as vec4s); (5) labels_out:
// read_write (n u32). 1-D launch (flat_index).

const IMAGE_PIXELS: u32 = 784u;
const IMAGE_WORDS: u32 = 196u;

struct GatherParams {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: GatherParams;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> indices: array<u32>;
@group(0) @binding(4) var<storage, read_write> x: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> labels_out: array<u32>;

fn packed_byte(j: u32, word: u32) -> u32 {
    return (word >> (8u * (j % 4u))) & 0xffu;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn gather_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * IMAGE_WORDS {
        return;
    }
    let b = i / IMAGE_WORDS;
    let w = i % IMAGE_WORDS;
    let example = indices[b];
    let word = images[example * IMAGE_WORDS + w];
    let bytes = (vec4<u32>(word) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
    x[i] = vec4<f32>(bytes) / 255.0;
    if w == 0u {
        labels_out[b] = packed_byte(example, labels[example / 4u]);
    }
}
