//! Reference for `shaders/gemm.wgsl`, the register-blocked multiply that `bench` uses as its
//! calibration yardstick on CPU-like adapters: a plain row-major `c = a b`, and the column-block
//! packing of B that the kernel reads through uniform bindings.

use super::float::{Float, MatMut, MatRef};

/// Columns of C (and of B) per block: one dispatch of the GPU kernel each.
pub const BLOCK_COLS: usize = 64;

/// `b` (`inner x cols`, row-major) as the GPU kernel reads it: column block after column
/// block, each `inner x BLOCK_COLS` row-major. `cols` must be a multiple of `BLOCK_COLS`.
pub fn pack_column_blocks(b: &[f32], inner: usize, cols: usize) -> Vec<f32> {
    assert_eq!(b.len(), inner * cols, "b is inner x cols");
    assert_eq!(cols % BLOCK_COLS, 0, "cols is a multiple of {BLOCK_COLS}");
    (0..cols / BLOCK_COLS)
        .flat_map(|block| {
            b.chunks_exact(cols)
                .flat_map(move |row| &row[block * BLOCK_COLS..(block + 1) * BLOCK_COLS])
        })
        .copied()
        .collect()
}

/// `c = a b` for a row-major `rows x inner` A and `inner x cols` B.
pub fn gemm(a: &[f32], b: &[f32], (rows, inner, cols): (usize, usize, usize)) -> Vec<f32> {
    let mut c = vec![0.0; rows * cols];
    f32::gemm(
        1.0,
        MatRef::row_major(a, rows, inner),
        MatRef::row_major(b, inner, cols),
        0.0,
        MatMut::row_major(&mut c, rows, cols),
    );
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packing_puts_each_column_block_after_the_previous() {
        // 2 x 128: element (k, p) holds 1000 k + p.
        let b: Vec<f32> = (0..2)
            .flat_map(|k| (0..128).map(move |p| (1000 * k + p) as f32))
            .collect();
        let packed = pack_column_blocks(&b, 2, 128);
        assert_eq!(packed.len(), b.len());
        // Block 0: rows 0 and 1 of columns 0..64, then block 1.
        assert_eq!(&packed[..3], &[0.0, 1.0, 2.0]);
        assert_eq!(packed[64], 1000.0);
        assert_eq!(packed[128], 64.0);
        assert_eq!(packed[128 + 64 + 63], 1127.0);
    }
}
