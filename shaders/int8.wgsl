// Int8 inference (twin of src/cpu/int8.rs; the arithmetic is docs/int8.md's): conv and dense
// sum int8 x int8 products with dot4I8Packed into an i32 (exact, so any order gives the same
// bits), then one f32 multiply: requantised to int8 (round half to even, clamp to +-127) or,
// for the last layer, the float logits. Pooling and ReLU work on int8 values.
//
// Activations stay packed, pixel by pixel: an image of C channels is, for each pixel (row-major),
// ceil(C / 4) words, word g holding channels 4g..4g+3 (low byte first; missing channels 0);
// images `in_words` (`out_words`) words apart. So four channels of one pixel are one word, the
// unit of dot4I8Packed. Weights (`w`, vec4<u32>): for each group of four output channels, each
// tap (ky, kx) and each input word, the four channels' words side by side; a dense layer is a
// 1x1 convolution of a 1x1 image whose `in_channel_words` are the words of its stored input (the
// host orders its weights to match). Biases and multipliers are padded to whole groups (0).
//
// int8_conv, int8_dense:                one invocation per output word (4 channels), requantised.
// int8_conv_logits, int8_dense_logits:  one invocation per output value, in the float layout
//                                       (channel, row, column): f32 logits (as bits).
// int8_maxpool, int8_avgpool:           2x2 windows, stride 2, one invocation per output word.
// int8_relu:                            max(q, 0) per lane, one invocation per word.
//
// @binding(0) params: uniform Int8Params (declared by the host); (1) x: read, packed int8;
// (2) y: read_write, packed int8 (or f32 bits for the logits); (3) w: read, packed int8;
// (4) bias: read, i32 per output channel; (5) multiplier: read, f32 per output channel.
// Pooling and ReLU bind 0-2 only. 1-D launches.

@group(0) @binding(0) var<uniform> params: Int8Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<u32>;
@group(0) @binding(3) var<storage, read> w: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read> bias: array<i32>;
@group(0) @binding(5) var<storage, read> multiplier: array<f32>;

// One input word (four int8 channels) against the four output channels' weight words: four
// exact i32 sums.
fn dot4x4(xv: u32, wv: vec4<u32>) -> vec4<i32> {
    return vec4<i32>(dot4I8Packed(xv, wv.x), dot4I8Packed(xv, wv.y), dot4I8Packed(xv, wv.z), dot4I8Packed(xv, wv.w));
}

// The biases of output channels 4g..4g+3, where their sums start.
fn group_bias(g: u32) -> vec4<i32> {
    return vec4<i32>(bias[4u * g], bias[4u * g + 1u], bias[4u * g + 2u], bias[4u * g + 3u]);
}

// The sums of output channels 4g..4g+3 at output pixel `pixel` of image `img`: for each tap
// inside the image, each input word against the four channels' weight words.
fn conv_group(img: u32, pixel: u32, g: u32) -> vec4<i32> {
    let oy = i32(pixel / params.out_width);
    let ox = i32(pixel % params.out_width);
    var acc = group_bias(g);
    let cw = params.in_channel_words;
    for (var ky = 0u; ky < params.kernel; ky++) {
        let iy = oy * i32(params.stride) + i32(ky) - i32(params.pad);
        if iy < 0 || iy >= i32(params.in_height) {
            continue;
        }
        for (var kx = 0u; kx < params.kernel; kx++) {
            let ix = ox * i32(params.stride) + i32(kx) - i32(params.pad);
            if ix < 0 || ix >= i32(params.in_width) {
                continue;
            }
            let xs = img * params.in_words + (u32(iy) * params.in_width + u32(ix)) * cw;
            let ws = ((g * params.kernel + ky) * params.kernel + kx) * cw;
            for (var c = 0u; c < cw; c++) {
                acc += dot4x4(x[xs + c], w[ws + c]);
            }
        }
    }
    return acc;
}

// One f32 multiply per channel, rounded half to even (WGSL's round), clamped to +-127, packed.
fn requantize(acc: vec4<i32>, g: u32) -> u32 {
    let m = vec4<f32>(
        multiplier[4u * g],
        multiplier[4u * g + 1u],
        multiplier[4u * g + 2u],
        multiplier[4u * g + 3u],
    );
    return pack4xI8(vec4<i32>(clamp(round(vec4<f32>(acc) * m), vec4<f32>(-127.0), vec4<f32>(127.0))));
}

// Output word i of the batch: its image, pixel and channel group.
fn word_position(i: u32) -> vec3<u32> {
    let r = i % params.out_words;
    return vec3<u32>(i / params.out_words, r / params.out_channel_words, r % params.out_channel_words);
}

fn logit(acc: i32, o: u32) -> u32 {
    return bitcast<u32>(f32(acc) * multiplier[o]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_words {
        return;
    }
    let p = word_position(i);
    y[i] = requantize(conv_group(p.x, p.y, p.z), p.z);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_conv_logits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    let plane = params.out_height * params.out_width;
    let len = params.out_channels * plane;
    if i >= params.n * len {
        return;
    }
    let o = (i % len) / plane;
    y[i] = logit(conv_group(i / len, i % plane, o / 4u)[o % 4u], o);
}

// A dense layer's sums for output channels 4g..4g+3: its input words against the group's.
fn dense_group(img: u32, g: u32) -> vec4<i32> {
    var acc = group_bias(g);
    let cw = params.in_channel_words;
    for (var c = 0u; c < cw; c++) {
        acc += dot4x4(x[img * params.in_words + c], w[g * cw + c]);
    }
    return acc;
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_dense(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_words {
        return;
    }
    let g = i % params.out_words;
    y[i] = requantize(dense_group(i / params.out_words, g), g);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_dense_logits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_channels {
        return;
    }
    let o = i % params.out_channels;
    y[i] = logit(dense_group(i / params.out_channels, o / 4u)[o % 4u], o);
}

// The four words (same channel group) of output word i's 2x2 window, unpacked.
fn window(i: u32) -> array<vec4<i32>, 4> {
    let p = word_position(i);
    let cw = params.in_channel_words;
    let top = (2u * (p.y / params.out_width) * params.in_width + 2u * (p.y % params.out_width)) * cw;
    let at = p.x * params.in_words + top + p.z;
    let below = params.in_width * cw;
    return array<vec4<i32>, 4>(
        unpack4xI8(x[at]),
        unpack4xI8(x[at + cw]),
        unpack4xI8(x[at + below]),
        unpack4xI8(x[at + below + cw]),
    );
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_maxpool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_words {
        return;
    }
    let v = window(i);
    y[i] = pack4xI8(max(max(v[0], v[1]), max(v[2], v[3])));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_avgpool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_words {
        return;
    }
    let v = window(i);
    // |sum| <= 508: the quarter is exact in f32, and round() ties to even.
    y[i] = pack4xI8(vec4<i32>(round(vec4<f32>(v[0] + v[1] + v[2] + v[3]) * 0.25)));
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.in_words {
        return;
    }
    y[i] = pack4xI8(max(unpack4xI8(x[i]), vec4<i32>(0)));
}
