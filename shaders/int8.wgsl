// Int8 inference (twin of src/cpu/int8.rs; the arithmetic is docs/int8.md's): conv and dense
// sum int8 x int8 products with dot4I8Packed into an i32 (exact, so any order gives the same
// bits), then one f32 multiply: requantised to int8 (round half to even, clamp to +-127) or,
// for the last layer, the float logits. Pooling and ReLU work on int8 values.
//
// Activations stay packed: an image's values, in the float layout (channel, row, column), four
// to a u32 (value j in byte j % 4 of word j / 4, low byte first), the last word's unused lanes 0;
// images `in_words` (`out_words`) words apart. Weights: each output channel's row of taps (the
// conv's (channel, ky, kx), the dense's inputs) packed the same way, `w_words` words a row.
//
// int8_conv, int8_dense:                one invocation per output word (4 values), requantised.
// int8_conv_logits, int8_dense_logits:  one invocation per output value: f32 logits (as bits).
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
@group(0) @binding(3) var<storage, read> w: array<u32>;
@group(0) @binding(4) var<storage, read> bias: array<i32>;
@group(0) @binding(5) var<storage, read> multiplier: array<f32>;

// Value `i` of the image whose words start at `base`, sign-extended.
fn x_at(base: u32, i: u32) -> i32 {
    return extractBits(bitcast<i32>(x[base + i / 4u]), (i % 4u) * 8u, 8u);
}

fn out_len() -> u32 {
    return params.out_channels * params.out_height * params.out_width;
}

// The conv's i32 sum for output value j (channel-major) of image `img`: taps in groups of
// four, the input's four gathered (0 outside the image) and packed next to the weight word.
fn conv_acc(img: u32, j: u32) -> i32 {
    let plane = params.out_height * params.out_width;
    let o = j / plane;
    let oy = (j % plane) / params.out_width;
    let ox = j % params.out_width;
    let kk = params.kernel * params.kernel;
    let taps = params.in_channels * kk;
    let base = img * params.in_words;
    var acc = bias[o];
    for (var g = 0u; g < params.w_words; g++) {
        var lanes = vec4<i32>(0);
        for (var l = 0u; l < 4u; l++) {
            let t = 4u * g + l;
            if t < taps {
                let c = t / kk;
                let iy = i32(oy * params.stride + (t % kk) / params.kernel) - i32(params.pad);
                let ix = i32(ox * params.stride + t % params.kernel) - i32(params.pad);
                let inside = iy >= 0 && ix >= 0 && u32(iy) < params.in_height
                    && u32(ix) < params.in_width;
                if inside {
                    let at = (c * params.in_height + u32(iy)) * params.in_width + u32(ix);
                    lanes[l] = x_at(base, at);
                }
            }
        }
        acc += dot4I8Packed(pack4xI8(lanes), w[o * params.w_words + g]);
    }
    return acc;
}

// The dense layer's i32 sum for output o of image `img`: the packed input against the packed
// weight row, word by word (both rows end in zero lanes).
fn dense_acc(img: u32, o: u32) -> i32 {
    var acc = bias[o];
    for (var g = 0u; g < params.w_words; g++) {
        acc += dot4I8Packed(x[img * params.in_words + g], w[o * params.w_words + g]);
    }
    return acc;
}

// One f32 multiply, rounded half to even (WGSL's round), clamped to +-127.
fn requantize(acc: i32, o: u32) -> i32 {
    return i32(clamp(round(f32(acc) * multiplier[o]), -127.0, 127.0));
}

fn channel(j: u32) -> u32 {
    return j / (params.out_height * params.out_width);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_words {
        return;
    }
    let img = i / params.out_words;
    var q = vec4<i32>(0);
    for (var l = 0u; l < 4u; l++) {
        let j = 4u * (i % params.out_words) + l;
        if j < out_len() {
            q[l] = requantize(conv_acc(img, j), channel(j));
        }
    }
    y[i] = pack4xI8(q);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_conv_logits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * out_len() {
        return;
    }
    let j = i % out_len();
    y[i] = bitcast<u32>(f32(conv_acc(i / out_len(), j)) * multiplier[channel(j)]);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_dense(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_words {
        return;
    }
    let img = i / params.out_words;
    var q = vec4<i32>(0);
    for (var l = 0u; l < 4u; l++) {
        let o = 4u * (i % params.out_words) + l;
        if o < params.out_channels {
            q[l] = requantize(dense_acc(img, o), o);
        }
    }
    y[i] = pack4xI8(q);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_dense_logits(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_channels {
        return;
    }
    let o = i % params.out_channels;
    y[i] = bitcast<u32>(f32(dense_acc(i / params.out_channels, o)) * multiplier[o]);
}

// The four values of output j's 2x2 window.
fn window(img: u32, j: u32) -> vec4<i32> {
    let plane = params.out_height * params.out_width;
    let c = j / plane;
    let top = (c * params.in_height + 2u * ((j % plane) / params.out_width)) * params.in_width
        + 2u * (j % params.out_width);
    let base = img * params.in_words;
    return vec4<i32>(
        x_at(base, top),
        x_at(base, top + 1u),
        x_at(base, top + params.in_width),
        x_at(base, top + params.in_width + 1u),
    );
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_maxpool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_words {
        return;
    }
    var q = vec4<i32>(0);
    for (var l = 0u; l < 4u; l++) {
        let j = 4u * (i % params.out_words) + l;
        if j < out_len() {
            let v = window(i / params.out_words, j);
            q[l] = max(max(v.x, v.y), max(v.z, v.w));
        }
    }
    y[i] = pack4xI8(q);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_avgpool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.out_words {
        return;
    }
    var q = vec4<i32>(0);
    for (var l = 0u; l < 4u; l++) {
        let j = 4u * (i % params.out_words) + l;
        if j < out_len() {
            let v = window(i / params.out_words, j);
            // |sum| <= 508: the quarter is exact in f32, and round() ties to even.
            q[l] = i32(round(f32(v.x + v.y + v.z + v.w) * 0.25));
        }
    }
    y[i] = pack4xI8(q);
}

@compute @workgroup_size(WORKGROUP_SIZE)
fn int8_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if i >= params.n * params.in_words {
        return;
    }
    y[i] = pack4xI8(max(unpack4xI8(x[i]), vec4<i32>(0)));
}
