//! The register-blocked matrix multiply (`shaders/gemm.wgsl`), twin of `cpu/gemm.rs`: `bench`'s
//! calibration yardstick on CPU-like adapters. The shader's entry point repeats per row and
//! per column of its block, so `expand` writes it out for a given number of rows.

use std::fmt::Write;

use anyhow::{bail, Result};
use bytemuck::{Pod, Zeroable};

use super::buffer::View;
use super::buffer::{read_buffer, storage, storage_init, uniform};
use super::check::{compare, Comparison, CrossCheck};
use super::context::GpuContext;
use super::kernel::{compile_register_blocked, run};
use super::kernel::{Access, Dispatch, Kernel};
use crate::cpu::gemm::{gemm, pack_column_blocks, BLOCK_COLS};
use crate::rng::random_vec;

pub const SOURCE: &str = include_str!("../../shaders/gemm.wgsl");

/// Rows of C per invocation in the variants `bench` tries (more rows: each B value is used
/// more often, but fewer invocations share the work).
pub const ROW_CHOICES: [usize; 3] = [8, 16, 32];

/// The kernel reads one column block of B (`inner x 64`) through a 64 KiB uniform binding.
const B_BINDING_BYTES: u64 = 64 * 1024;
pub const MAX_INNER: usize = B_BINDING_BYTES as usize / 4 / BLOCK_COLS;
const WORKGROUP: usize = 64;

#[repr(C)]
#[derive(Clone, Copy, Pod, Zeroable)]
struct GemmParams {
    rows: u32,
    inner4: u32,
    cols4: u32,
    block: u32,
}

/// The entry point's body for `rows` rows of C per invocation: named accumulators, the k loop
/// written out over the rows and the 16 vec4 columns of a block, and the stores.
fn expand(rows: usize) -> String {
    let cols4 = BLOCK_COLS / 4;
    let mut body = format!("    let first_row = gid.x * {rows}u;\n");
    for r in 0..rows {
        let _ = writeln!(
            body,
            "    let a_start_{r} = gemm_a_start(first_row + {r}u);"
        );
        for j in 0..cols4 {
            let _ = writeln!(body, "    var acc_{r}_{j} = vec4<f32>(0.0);");
        }
    }
    body += "    for (var k4 = 0u; k4 < params.inner4; k4++) {\n";
    for r in 0..rows {
        let _ = writeln!(body, "        let a_{r} = a[a_start_{r} + k4];");
    }
    for (q, component) in ["x", "y", "z", "w"].iter().enumerate() {
        for j in 0..cols4 {
            let _ = writeln!(
                body,
                "        let b_{q}_{j} = gemm_b(4u * k4 + {q}u, {j}u);"
            );
        }
        for r in 0..rows {
            for j in 0..cols4 {
                let _ = writeln!(
                    body,
                    "        acc_{r}_{j} = fma(vec4<f32>(a_{r}.{component}), b_{q}_{j}, acc_{r}_{j});"
                );
            }
        }
    }
    body += "    }\n";
    for r in 0..rows {
        for j in 0..cols4 {
            let _ = writeln!(body, "    gemm_store(first_row + {r}u, {j}u, acc_{r}_{j});");
        }
    }
    SOURCE.replace("    // @block\n", &body)
}

/// The multiply with a given number of rows per invocation, compiled.
pub struct GemmKernel {
    pub rows_per_invocation: usize,
    kernel: Kernel,
}

impl GemmKernel {
    /// None where uniform bindings cannot hold a 64 KiB block of B.
    pub fn new(ctx: &GpuContext, rows_per_invocation: usize) -> Option<GemmKernel> {
        if ctx.limits.max_uniform_buffer_binding_size < B_BINDING_BYTES {
            return None;
        }
        let module = compile_register_blocked(ctx, "gemm.wgsl", &expand(rows_per_invocation));
        use Access::*;
        let bindings = [Uniform, Read, Uniform, ReadWrite];
        let kernel = Kernel::new(ctx, &module, "gemm_register_blocked", &bindings);
        Some(GemmKernel {
            rows_per_invocation,
            kernel,
        })
    }

    /// `c = a b`, one dispatch per column block, with `b` from [`packed_b`].
    pub fn multiply(
        &self,
        ctx: &GpuContext,
        (rows, inner, cols): (usize, usize, usize),
        (a, b, c): (View, &wgpu::Buffer, View),
    ) -> Vec<Dispatch> {
        assert!(rows > 0 && inner % 4 == 0 && (4..=MAX_INNER).contains(&inner));
        assert_eq!(cols % BLOCK_COLS, 0, "cols is a multiple of {BLOCK_COLS}");
        let block_bytes = (4 * inner * BLOCK_COLS) as u64;
        let invocations = rows.div_ceil(self.rows_per_invocation);
        let groups = invocations.div_ceil(WORKGROUP) as u32;
        (0..cols / BLOCK_COLS)
            .map(|block| {
                let params = GemmParams {
                    rows: rows as u32,
                    inner4: (inner / 4) as u32,
                    cols4: (cols / 4) as u32,
                    block: block as u32,
                };
                let params = uniform(ctx, "gemm params", &params);
                let b_block = View {
                    buffer: b,
                    offset: block as u64 * block_bytes,
                    size: B_BINDING_BYTES,
                };
                self.kernel
                    .dispatch(ctx, &[View::whole(&params), a, b_block, c], [groups, 1, 1])
            })
            .collect()
    }
}

/// B (`inner x cols`, row-major) packed into column blocks in a buffer the kernel can bind
/// as uniform windows (padded so that the last window is whole).
pub fn packed_b(ctx: &GpuContext, b: &[f32], (inner, cols): (usize, usize)) -> wgpu::Buffer {
    use wgpu::util::DeviceExt;
    let mut packed = pack_column_blocks(b, inner, cols);
    let last_block_start = (cols / BLOCK_COLS - 1) * inner * BLOCK_COLS;
    packed.resize(last_block_start + B_BINDING_BYTES as usize / 4, 0.0);
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("gemm packed b"),
            contents: bytemuck::cast_slice(&packed),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// The shapes (rows, inner, cols) each block height is checked on: one row, rows that fill
/// no block, several column blocks, the largest inner size.
const CHECK_SHAPES: [(usize, usize, usize); 4] =
    [(1, 4, 64), (7, 36, 64), (33, 256, 128), (100, 128, 192)];

/// Against the CPU for every block height, on every shape of `CHECK_SHAPES` (one check per
/// height, so that each is compiled once).
pub fn checks() -> Vec<CrossCheck> {
    let shapes: Vec<String> = CHECK_SHAPES
        .iter()
        .map(|(m, k, n)| format!("{m}x{k}x{n}"))
        .collect();
    let shapes = shapes.join(", ");
    ROW_CHOICES
        .into_iter()
        .map(|rows| {
            let shape = format!("{shapes}; {rows} rows per invocation");
            CrossCheck::new("gemm_register_blocked", shape, move |ctx| {
                check_gemm(ctx, rows)
            })
        })
        .collect()
}

fn check_gemm(ctx: &GpuContext, rows: usize) -> Result<Comparison> {
    let Some(kernel) = GemmKernel::new(ctx, rows) else {
        bail!("the adapter's uniform bindings are smaller than 64 KiB");
    };
    let mut result = Comparison {
        passed: true,
        ..Default::default()
    };
    for (m, k, n) in CHECK_SHAPES {
        let seed = (m * 10_007 + k * 101 + n + rows) as u64;
        let (a, b) = (
            random_vec(m * k, seed, -1.0, 1.0),
            random_vec(k * n, seed + 1, -1.0, 1.0),
        );
        let ga = storage_init(ctx, "a", &a)?;
        let gb = packed_b(ctx, &b, (k, n));
        let gc = storage(ctx, "c", (4 * m * n) as u64)?;
        let dispatches = kernel.multiply(ctx, (m, k, n), ((&ga).into(), &gb, (&gc).into()));
        run(ctx, &dispatches.iter().collect::<Vec<_>>());
        let cpu = gemm(&a, &b, (m, k, n));
        result = result.merge(compare(&read_buffer(ctx, &gc, 0, cpu.len())?, &cpu));
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_sizes_match_the_shader() {
        let shader_const = |name| super::super::kernel::shader_const(SOURCE, name);
        assert_eq!(shader_const("GEMM_WORKGROUP"), WORKGROUP);
        assert_eq!(4 * shader_const("GEMM_BLOCK_COLS4"), BLOCK_COLS);
    }

    #[test]
    fn the_expanded_shader_validates() {
        for rows in ROW_CHOICES {
            let source = expand(rows);
            super::super::kernel::validated(&source);
            assert!(source.contains(&format!("acc_{}_15", rows - 1)));
        }
    }
}
