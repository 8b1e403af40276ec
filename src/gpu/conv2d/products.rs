//! How the register-blocked conv2d kernels cut a pass into blocks: their block shapes (as the
//! shaders fix them), each pass's uniform (mirroring `shaders/conv2d/products.wgsl`), the
//! kernels' binding numbers, and which kernels run at a geometry. The kernels themselves are in `register_blocked.rs`
//! and `subgroup.rs`. Twin: `cpu/conv2d.rs`.

use bytemuck::{Pod, Zeroable};

use super::{u, Conv2dShape};
use crate::cpu::conv2d::Conv2dGeometry;
use crate::gpu::kernel::Access;
use crate::gpu::texture::Texel;
use crate::wgsl_struct;

/// Invocations per workgroup of the blocked kernels (`BLOCK_WORKGROUP` in the shader).
pub(super) const BLOCK_WORKGROUP: usize = 16;
/// Channels of a block (one `Tile`; `BLOCK_CHANNELS` in the shader).
pub(super) const BLOCK_CHANNELS: usize = 32;
/// Row segments (forward) or (in channel, ky) pairs (weight gradient) of a block (`BLOCK_ROWS`).
pub(super) const BLOCK_ROWS: usize = 8;
/// Columns (forward) or kx (weight gradient) of a block (`BLOCK_COLS`).
pub(super) const BLOCK_COLS: usize = 4;
/// Positions of an input-gradient block (`BLOCK_POSITIONS`).
pub(super) const BLOCK_POSITIONS: usize = 32;
/// Input channels of a block of the 3x3 weight gradient (`conv2d_backward_weights_k3`).
pub(super) const K3_BLOCK_CHANNELS: usize = 4;
/// The register-blocked weight gradient splits the batch into chunks until about this many
/// invocations run: more chunks keep more threads busy but make the final sum longer. 192 is 12
/// workgroups, an even share for lavapipe's threads on 2, 3, 4 or 6 cores.
pub(super) const WEIGHT_GRAD_INVOCATIONS: usize = 192;
/// Packed weight slots of one uniform binding (`PACKED_SLOTS`), each the 32 weights of one step
/// of a channel block; the register-blocked forward and backward input have two bindings.
pub(super) const PACKED_SLOTS: usize = 512;
pub(super) const PACKED_SLOT_BYTES: u64 = 4 * BLOCK_CHANNELS as u64;
pub(super) const PACKED_BINDING_BYTES: u64 = PACKED_SLOTS as u64 * PACKED_SLOT_BYTES;

/// The most row (or column) runs of the register-blocked input gradient's position classes
/// (`MAX_RUNS` in `products.wgsl`; its `MAX_CLASSES` is the square), which size the uniform.
pub(super) const MAX_RUNS: usize = 16;

/// The binding numbers of the register-blocked kernels (`products.wgsl`). A kernel declares only
/// what it reads or writes, so a number is shared by bindings that no kernel uses together.
pub(super) mod binding {
    /// The pass's uniform.
    pub(crate) const PARAMS: u32 = 0;
    pub(crate) const X: u32 = 1;
    /// dy, or in the pooled weight gradient dpooled.
    pub(crate) const DY: u32 = 2;
    pub(crate) const W: u32 = 3;
    pub(crate) const PACKED_LO: u32 = 4;
    pub(crate) const PACKED_HI: u32 = 5;
    pub(crate) const B: u32 = 6;
    /// The fused pooling's output: written by the forward (`pool_y`), read by the pooled
    /// weight gradient (`pooled_y`); the same for its argmax.
    pub(crate) const POOLED_Y: u32 = 7;
    pub(crate) const POOLED_ARGMAX: u32 = 8;
    /// The output: y, dx or the partial sums.
    pub(crate) const OUT: u32 = 9;
}

/// The bindings that the texture variant reads from textures: binding and texel, by the name
/// the shaders' accessors read them by (`x_at`, ...): x, dy and w wherever a kernel reads them
/// (w where it is not packed), and in the pooled weight gradient
/// (`conv2d_backward_weights_pooled`) dpooled, the pooled value and its argmax.
pub(super) const TEXTURE_BINDINGS: [(&str, u32, Texel); 6] = [
    ("x", binding::X, Texel::F32),
    ("dy", binding::DY, Texel::F32),
    ("dpooled", binding::DY, Texel::F32),
    ("w", binding::W, Texel::F32),
    ("pooled_y", binding::POOLED_Y, Texel::F32),
    ("pooled_argmax", binding::POOLED_ARGMAX, Texel::U32),
];

/// The bindings of the register-blocked entry point `name` (or of its subgroup form, `name`
/// with `_shared`), exactly those it declares (`kernels.rs` checks them against naga): the
/// params, its inputs (x, dy and w from textures where `textures`; w, or in the kernels named
/// `_packed` the two packed-weight bindings) and its outputs.
pub(super) fn kernel_bindings(name: &str, textures: bool) -> Vec<(u32, Access)> {
    use binding::*;
    use Access::*;
    let s = if textures { Texture } else { Read };
    let argmax = if textures { UintTexture } else { Read };
    let base = name.trim_end_matches("_shared");
    let (base, weights) = match base.strip_suffix("_packed") {
        Some(base) => (base, vec![(PACKED_LO, Uniform), (PACKED_HI, Uniform)]),
        None => (base, vec![(W, s)]),
    };
    let (inputs, outputs) = match base {
        "conv2d_forward" => (vec![(X, s), (B, Read)], vec![(OUT, ReadWrite)]),
        "conv2d_forward_pool" => (
            vec![(X, s), (B, Read)],
            vec![(POOLED_Y, ReadWrite), (POOLED_ARGMAX, ReadWrite)],
        ),
        "conv2d_backward_input" => (vec![(DY, s)], vec![(OUT, ReadWrite)]),
        "conv2d_backward_weights"
        | "conv2d_backward_weights_narrow"
        | "conv2d_backward_weights_k3" => {
            return vec![(PARAMS, Uniform), (X, s), (DY, s), (OUT, ReadWrite)];
        }
        "conv2d_backward_weights_pooled" => {
            let pooling = [(DY, s), (POOLED_Y, s), (POOLED_ARGMAX, argmax)];
            return [
                &[(PARAMS, Uniform), (X, s)][..],
                &pooling,
                &[(OUT, ReadWrite)],
            ]
            .concat();
        }
        _ => panic!("conv2d: no register-blocked entry point {name}"),
    };
    [vec![(PARAMS, Uniform)], inputs, weights, outputs].concat()
}

wgsl_struct! {
    /// The forward's uniform (`forward_params`), with or without the fused pooling.
    pub(super) struct Conv2dForwardParams {
        pub(super) shape: Conv2dShape,
        /// 1: rectify y (the fused pooling always does).
        pub(super) relu: u32,
        /// Workgroups that do work; the rest return at once.
        pub(super) len: u32,
        /// Blocks of `BLOCK_COLS` columns per row (1 where pooling: a block is 8 windows).
        pub(super) col_blocks: u32,
        /// Workgroups per block of `BLOCK_CHANNELS` channels, and the steps (packed weight
        /// slots) of a block: (ci, ky, kx).
        pub(super) block_groups: u32,
        pub(super) block_steps: u32,
        /// The first packed slot of the second binding ([`packed_split`]).
        pub(super) packed_split: u32,
        pub(super) _pad0: u32,
        pub(super) _pad1: u32,
    }
}

wgsl_struct! {
    /// The input gradient's uniform (`input_grad_params`).
    pub(super) struct Conv2dInputGradParams {
        pub(super) shape: Conv2dShape,
        /// Workgroups that do work; the rest return at once.
        pub(super) len: u32,
        /// Workgroups per block of `BLOCK_CHANNELS` input channels, and the steps (packed
        /// weight slots) of a block: (co, ky, kx).
        pub(super) block_groups: u32,
        pub(super) block_steps: u32,
        /// The first packed slot of the second binding ([`packed_split`]).
        pub(super) packed_split: u32,
        /// Row and column runs of the position classes.
        pub(super) row_runs: u32,
        pub(super) col_runs: u32,
        /// The arrays start on 16 bytes.
        pub(super) _pad0: u32,
        pub(super) _pad1: u32,
        /// Row run r is (first iy, rows, first ky, ky count), column run c (first ix, columns,
        /// first kx, kx count); class i (of row_runs * col_runs) is (its first lane within the
        /// channel block, r, c, unused) ([`Conv2dInputGradParams::new`]).
        pub(super) row_run: [[u32; 4]; MAX_RUNS] = "array<vec4<u32>, MAX_RUNS>",
        pub(super) col_run: [[u32; 4]; MAX_RUNS] = "array<vec4<u32>, MAX_RUNS>",
        pub(super) classes: [[u32; 4]; MAX_RUNS * MAX_RUNS] = "array<vec4<u32>, MAX_CLASSES>",
    }
}

wgsl_struct! {
    /// The weight gradients' uniform (`weight_grad_params`).
    pub(super) struct Conv2dWeightGradParams {
        pub(super) shape: Conv2dShape,
        /// Invocations that do work; the rest return at once.
        pub(super) len: u32,
        /// Blocks of `BLOCK_COLS` kx, and of (ci, ky) pairs (the 3x3 kernel: of
        /// `K3_BLOCK_CHANNELS` input channels, with one kx block).
        pub(super) kx_blocks: u32,
        pub(super) pair_blocks: u32,
        /// Row segments (image, output row; pooled: image, pooled row) per chunk of partial
        /// sums, and the elements per chunk.
        pub(super) chunk_rows: u32,
        pub(super) partial_stride: u32,
        pub(super) _pad0: u32,
        pub(super) _pad1: u32,
        pub(super) _pad2: u32,
    }
}

/// What a forward or input-gradient pass tells the host that packs its weights
/// (`RegisterBlockedKernels::pass`).
pub(super) trait PacksWeights: Pod {
    fn shape(&self) -> Conv2dShape;
    /// (workgroups, workgroups per block of channels, steps per block).
    fn blocks(&self) -> (u32, u32, u32);
    fn with_packed_split(self, split: u32) -> Self;
}

impl PacksWeights for Conv2dForwardParams {
    fn shape(&self) -> Conv2dShape {
        self.shape
    }
    fn blocks(&self) -> (u32, u32, u32) {
        (self.len, self.block_groups, self.block_steps)
    }
    fn with_packed_split(self, packed_split: u32) -> Self {
        Conv2dForwardParams {
            packed_split,
            ..self
        }
    }
}

impl PacksWeights for Conv2dInputGradParams {
    fn shape(&self) -> Conv2dShape {
        self.shape
    }
    fn blocks(&self) -> (u32, u32, u32) {
        (self.len, self.block_groups, self.block_steps)
    }
    fn with_packed_split(self, packed_split: u32) -> Self {
        Conv2dInputGradParams {
            packed_split,
            ..self
        }
    }
}

/// Lanes that share one load of dy in the k3 weight gradient with shared dy.
pub(super) const SHARED_DY_LANES: usize = 8;

/// Whether the 3x3 weight gradient of `g` runs with shared dy: where it runs the k3 kernel and
/// its blocks of input channels come in whole groups of 8, so that the 8 lanes of a group are
/// one (chunk, channel block).
pub(super) fn shares_dy(g: Conv2dGeometry) -> bool {
    let ci_blocks = g.input.channels.div_ceil(K3_BLOCK_CHANNELS);
    runs_k3(g) && ci_blocks.is_multiple_of(SHARED_DY_LANES)
}

/// Whether the register-blocked weight gradient of `g` runs the 3x3 kernel: k = 3, with more
/// (in channel, ky) pairs than the narrow kernel takes.
pub(super) fn runs_k3(g: Conv2dGeometry) -> bool {
    g.kernel == 3 && g.input.channels * g.kernel > BLOCK_ROWS / 2
}

/// Whether the register-blocked forward of `g` reads its weights packed into the two uniform
/// bindings (`RegisterBlockedKernels::pass`), where the adapter binds them.
pub(super) fn packs_weights(g: Conv2dGeometry) -> bool {
    let slots = g.out_channels.div_ceil(BLOCK_CHANNELS) * g.input.channels * g.kernel * g.kernel;
    slots <= packed_split(g.kernel) + PACKED_SLOTS
}

/// Whether the weight gradient from a fused ReLU and max pooling runs in one register-blocked
/// pass for `g` (`conv2d_backward_weights_pooled`): at most 4 (ci, ky) pairs and k <= 4, as in
/// a first layer, and an output that pools.
pub(super) fn pools_weight_grad(g: Conv2dGeometry) -> bool {
    let out = g.output();
    let narrow = g.input.channels * g.kernel <= BLOCK_ROWS / 2 && g.kernel <= BLOCK_COLS;
    narrow && out.height >= 2 && out.width >= 2
}

impl Conv2dForwardParams {
    /// The uniform of a register-blocked forward pass of `(g, n)` whose output has `channels`
    /// channels of `height x width` per image (blocks of 8 windows: `windows x 1`), each step
    /// of which multiplies `steps` weights: `col_blocks`, `block_groups`, `block_steps` and
    /// `len` (the workgroups: `block_groups` per block of channels).
    pub(super) fn new(
        (g, n): (Conv2dGeometry, usize),
        relu: bool,
        (channels, height, width): (usize, usize, usize),
        steps: usize,
    ) -> Conv2dForwardParams {
        let col_blocks = width.div_ceil(BLOCK_COLS);
        let row_blocks = (n * height).div_ceil(BLOCK_ROWS);
        let block_groups = (col_blocks * row_blocks).div_ceil(BLOCK_WORKGROUP);
        let blocks = channels.div_ceil(BLOCK_CHANNELS);
        Conv2dForwardParams {
            shape: Conv2dShape::new(g, n),
            relu: u32::from(relu),
            len: u(blocks * block_groups),
            col_blocks: u(col_blocks),
            block_groups: u(block_groups),
            block_steps: u(steps),
            packed_split: 0,
            _pad0: 0,
            _pad1: 0,
        }
    }
}

impl Conv2dInputGradParams {
    /// The uniform of a register-blocked input-gradient pass of `(g, n)` (see `input_class`
    /// in the shader), each step of which multiplies `steps` weights: the position classes, in
    /// decreasing order of their taps, with `block_groups` (workgroups per block of channels),
    /// `block_steps` and `len`. None where the input has more runs than the uniform holds
    /// (kernels wider than 8).
    pub(super) fn new((g, n): (Conv2dGeometry, usize), steps: usize) -> Option<Self> {
        let out = g.output();
        let row_runs = input_runs(g.input.height, out.height, g.kernel);
        let col_runs = input_runs(g.input.width, out.width, g.kernel);
        if row_runs.len() > MAX_RUNS || col_runs.len() > MAX_RUNS {
            return None;
        }
        let mut p = Conv2dInputGradParams {
            shape: Conv2dShape::new(g, n),
            ..Zeroable::zeroed()
        };
        let mut classes: Vec<(usize, usize)> = (0..row_runs.len())
            .flat_map(|r| (0..col_runs.len()).map(move |c| (r, c)))
            .collect();
        // Stable, so that the order is fixed for a geometry.
        classes.sort_by_key(|&(r, c)| std::cmp::Reverse(row_runs[r][3] * col_runs[c][3]));
        let mut lanes = 0;
        for (i, &(r, c)) in classes.iter().enumerate() {
            p.classes[i] = [u(lanes), u(r), u(c), 0];
            let positions = n * (row_runs[r][1] * col_runs[c][1]) as usize;
            lanes += positions.div_ceil(BLOCK_POSITIONS);
        }
        p.row_run[..row_runs.len()].copy_from_slice(&row_runs);
        p.col_run[..col_runs.len()].copy_from_slice(&col_runs);
        (p.row_runs, p.col_runs) = (u(row_runs.len()), u(col_runs.len()));
        let block_groups = lanes.div_ceil(BLOCK_WORKGROUP);
        (p.block_groups, p.block_steps) = (u(block_groups), u(steps));
        p.len = u(g.input.channels.div_ceil(BLOCK_CHANNELS) * block_groups);
        Some(p)
    }
}

/// The runs of input rows (or columns) `0..len` whose kernel taps meet the output in the same
/// range, for a stride-1 valid convolution with `out` outputs along that axis: (first, count,
/// first tap, taps). Row `i` meets output rows `i - t` for taps `t` with `0 <= i - t < out`.
pub(super) fn input_runs(len: usize, out: usize, k: usize) -> Vec<[u32; 4]> {
    let mut runs: Vec<[u32; 4]> = Vec::new();
    for i in 0..len {
        let (lo, hi) = ((i + 1).saturating_sub(out), (i + 1).min(k));
        match runs.last_mut() {
            Some(run) if (run[2], run[3]) == (u(lo), u(hi - lo)) => run[1] += 1,
            _ => runs.push([u(i), 1, u(lo), u(hi - lo)]),
        }
    }
    runs
}

/// Where the second uniform binding of packed weights starts, in slots: the most slots that
/// fill no more than the first binding, are a multiple of `k * k` (so that a block of the input
/// gradient switches bindings between two output channels) and are even (so that the binding's
/// offset, 128 bytes a slot, is a multiple of 256, the largest uniform offset alignment).
pub(super) fn packed_split(k: usize) -> usize {
    let step = if (k * k).is_multiple_of(2) {
        k * k
    } else {
        2 * k * k
    };
    PACKED_SLOTS / step * step
}

/// Whether the input gradient's position classes of `g` fit the uniform (kernels up to 8 wide;
/// [`Conv2dInputGradParams::new`]).
pub(super) fn input_classes_fit(g: Conv2dGeometry) -> bool {
    let out = g.output();
    let rows = input_runs(g.input.height, out.height, g.kernel);
    let cols = input_runs(g.input.width, out.width, g.kernel);
    rows.len() <= MAX_RUNS && cols.len() <= MAX_RUNS
}

#[cfg(test)]
mod tests {
    use super::super::{
        COMMON, PRODUCTS, RB_BACKWARD_INPUT, RB_BACKWARD_WEIGHTS, RB_FORWARD, READS_TEXTURE,
        REGISTER_BLOCKED,
    };
    use super::*;
    use crate::gpu::kernel::{assert_struct_size, shader_const, WgslModule};
    use crate::gpu::texture;

    #[test]
    fn the_uniform_mirrors_match_the_shader() {
        use std::mem::size_of;
        let module = WgslModule::new(
            "products",
            &[
                COMMON,
                Conv2dShape::WGSL,
                Conv2dForwardParams::WGSL,
                Conv2dInputGradParams::WGSL,
                Conv2dWeightGradParams::WGSL,
                PRODUCTS,
            ],
        );
        assert_struct_size(module, "Conv2dShape", size_of::<Conv2dShape>());
        let forward = size_of::<Conv2dForwardParams>();
        assert_struct_size(module, "Conv2dForwardParams", forward);
        let input_grad = size_of::<Conv2dInputGradParams>();
        assert_struct_size(module, "Conv2dInputGradParams", input_grad);
        let weight_grad = size_of::<Conv2dWeightGradParams>();
        assert_struct_size(module, "Conv2dWeightGradParams", weight_grad);
    }

    #[test]
    fn host_block_sizes_match_the_shaders() {
        let files = [
            COMMON,
            PRODUCTS,
            REGISTER_BLOCKED,
            RB_FORWARD,
            RB_BACKWARD_INPUT,
        ];
        let texts: Vec<&str> = files
            .iter()
            .chain([&RB_BACKWARD_WEIGHTS])
            .map(|f| f.text)
            .collect();
        let source = texts.join("\n");
        for (name, host) in [
            ("BLOCK_WORKGROUP", BLOCK_WORKGROUP),
            ("BLOCK_CHANNELS", BLOCK_CHANNELS),
            ("BLOCK_ROWS", BLOCK_ROWS),
            ("BLOCK_COLS", BLOCK_COLS),
            ("K3_BLOCK_CHANNELS", K3_BLOCK_CHANNELS),
            ("BLOCK_POSITIONS", BLOCK_POSITIONS),
            ("MAX_RUNS", MAX_RUNS),
            ("MAX_CLASSES", MAX_RUNS * MAX_RUNS),
            ("PACKED_SLOTS", PACKED_SLOTS),
        ] {
            assert_eq!(shader_const(&source, name), host, "{name}");
        }
        let width = shader_const(READS_TEXTURE.text, "TEXTURE_WIDTH");
        assert_eq!(width, texture::TEXTURE_WIDTH);
    }

    #[test]
    fn input_runs_group_the_rows_that_meet_the_same_taps() {
        // 13 rows from 11 with k = 3: rows 0 and 1 meet taps 0 and 0..1, 2..10 all three,
        // 11 and 12 taps 1..2 and 2.
        let runs = input_runs(13, 11, 3);
        let expected = [
            [0, 1, 0, 1],
            [1, 1, 0, 2],
            [2, 9, 0, 3],
            [11, 1, 1, 2],
            [12, 1, 2, 1],
        ];
        assert_eq!(runs, expected);
        // An output narrower than the kernel: no row meets all k taps.
        assert_eq!(
            input_runs(4, 2, 3),
            [[0, 1, 0, 1], [1, 1, 0, 2], [2, 1, 1, 2], [3, 1, 2, 1]]
        );
        // Every row's taps: the runs cover 0..len in order.
        for (len, out, k) in [(28, 26, 3), (7, 3, 5), (9, 1, 9)] {
            let runs = input_runs(len, out, k);
            assert_eq!(runs.iter().map(|r| r[1] as usize).sum::<usize>(), len);
            assert!(runs.windows(2).all(|w| w[1][0] == w[0][0] + w[0][1]));
        }
    }

    /// `packs_weights`, which says where the subgroup variants change the forward, agrees with
    /// the forward's own choice (`RegisterBlockedKernels::pass`).
    #[test]
    fn packs_weights_agrees_with_the_forward_pass() {
        use crate::model::Shape;
        for (input, out_channels, kernel, packs) in [
            (Shape::new(1, 28, 28), 32, 3, true),
            (Shape::new(32, 13, 13), 64, 3, true),
            (Shape::new(35, 11, 14), 37, 6, false),
            (Shape::new(56, 9, 9), 64, 3, true),
            (Shape::new(57, 9, 9), 64, 3, false),
        ] {
            let g = Conv2dGeometry::new(input, out_channels, kernel);
            let out = g.output();
            let steps = g.input.channels * g.kernel * g.kernel;
            let blocks = (g.out_channels, out.height, out.width);
            let p = Conv2dForwardParams::new((g, 7), true, blocks, steps);
            let slots = (p.len / p.block_groups) as usize * p.block_steps as usize;
            let pass_packs = slots <= packed_split(g.kernel) + PACKED_SLOTS;
            assert_eq!((packs_weights(g), pass_packs), (packs, packs), "{input:?}");
        }
    }

    #[test]
    fn packed_split_is_a_whole_number_of_channels_at_an_aligned_offset() {
        assert_eq!(packed_split(3), 504);
        assert_eq!(packed_split(1), 512);
        assert_eq!(packed_split(5), 500);
        for k in 1..=16 {
            let split = packed_split(k);
            // The largest: the next candidate (at most 2 k^2 further) would not fit.
            assert!(split <= PACKED_SLOTS && split + 2 * k * k > PACKED_SLOTS);
            assert_eq!(split % (k * k), 0);
            assert_eq!((split as u64 * PACKED_SLOT_BYTES) % 256, 0);
        }
    }
}
