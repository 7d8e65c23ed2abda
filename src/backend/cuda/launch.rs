//! Launch geometry for every kernel in kernels/*.cu: pure functions of the
//! problem size (and the device's multiprocessor count), so they are unit
//! tested without a GPU and the emulation tests can use the same shapes.

/// Grid and block dimensions of one launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
}

impl Geometry {
    pub fn threads(&self) -> u64 {
        let (g, b) = (self.grid, self.block);
        (g.0 as u64 * g.1 as u64 * g.2 as u64) * (b.0 as u64 * b.1 as u64 * b.2 as u64)
    }
}

/// Threads per block of the 1-D grid-stride kernels (a multiple of 32: the
/// block reductions need whole warps).
pub const BLOCK: u32 = 256;
/// Grid-stride kernels stop adding blocks here; each thread then loops.
const MAX_BLOCKS: usize = 4096;
/// The largest grid.x the driver accepts (grid.y and grid.z stop at 65535).
pub const GRID_X_MAX: usize = (1 << 31) - 1;

/// Blocks of `per_block` for `work` items, at least one and at most `cap`
/// (itself never past [`GRID_X_MAX`]: a larger grid fails to launch).
fn blocks(work: usize, per_block: usize, cap: usize) -> u32 {
    work.div_ceil(per_block).clamp(1, cap.min(GRID_X_MAX)) as u32
}

/// One thread per element, looping past `MAX_BLOCKS·BLOCK` elements.
pub fn elementwise(n: usize) -> Geometry {
    Geometry { grid: (blocks(n, BLOCK as usize, MAX_BLOCKS), 1, 1), block: (BLOCK, 1, 1) }
}

/// Block-reduced sums (`sum_f32`, `lower_max_abs`): fewer blocks, so fewer atomics.
pub fn reduction(n: usize) -> Geometry {
    Geometry { grid: (blocks(n, BLOCK as usize * 8, 1024), 1, 1), block: (BLOCK, 1, 1) }
}

/// Rows per thread-row in the (32, 8) column kernels before another block row is added.
const ROWS_PER_THREAD: usize = 16;

/// `channel_dots_rows` and `count_positive` over a rows×cols matrix: 32
/// adjacent columns per block, 8 thread rows, row blocks in grid.y.
pub fn columns(rows: usize, cols: usize) -> Geometry {
    Geometry { grid: (blocks(cols, 32, GRID_X_MAX), blocks(rows, 8 * ROWS_PER_THREAD, 256), 1), block: (32, 8, 1) }
}

/// `channel_dots_planes`: one block column per channel, grid.y splitting its
/// outer × inner elements.
pub fn planes(per_channel: usize, channels: usize) -> Geometry {
    Geometry { grid: (blocks(channels, 1, GRID_X_MAX), blocks(per_channel, BLOCK as usize * 8, 64), 1), block: (BLOCK, 1, 1) }
}

/// Rows per block of `softmax_xent_rows` (one warp each).
const WARPS_PER_BLOCK: u32 = 8;

/// `softmax_xent_rows`: one warp per row.
pub fn warp_per_row(rows: usize) -> Geometry {
    Geometry { grid: (blocks(rows, WARPS_PER_BLOCK as usize, GRID_X_MAX), 1, 1), block: (32, WARPS_PER_BLOCK, 1) }
}

/// Side of a Gram output tile and rows staged per step (kernels/covariance.cu).
pub const GRAM_TILE: usize = 64;
const GRAM_K: usize = 16;

/// `gram_lower_rows`: one block per lower-triangle tile pair, and enough row
/// splits (grid.y) to give every multiprocessor two blocks, as long as each
/// split keeps at least eight 16-row steps.
pub fn gram(rows: usize, cols: usize, multiprocessors: usize) -> Geometry {
    let tiles = cols.div_ceil(GRAM_TILE);
    let pairs = (tiles * (tiles + 1) / 2).max(1);
    let max_splits = rows.div_ceil(8 * GRAM_K).max(1);
    let splits = (2 * multiprocessors).div_ceil(pairs).clamp(1, max_splits.min(65535));
    Geometry { grid: (blocks(pairs, 1, GRID_X_MAX), splits as u32, 1), block: (16, 16, 1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_dimensional_grids_cover_small_sizes_exactly_and_cap_large_ones() {
        for n in [1, 255, 256, 257, 1 << 20, 1 << 31] {
            let g = elementwise(n);
            assert_eq!(g.block, (256, 1, 1));
            assert!(g.grid.0 >= 1 && g.grid.0 as usize <= MAX_BLOCKS);
            if n <= MAX_BLOCKS * 256 {
                assert!(g.threads() as usize >= n && (g.threads() as usize) < n + 256, "{n}: {g:?}");
            }
        }
        assert_eq!(elementwise(0).grid.0, 1, "an empty launch still has a valid grid");
        assert!(reduction(1 << 30).grid.0 <= 1024);
    }

    #[test]
    fn column_grids_cover_every_column_once() {
        for (rows, cols) in [(1, 1), (1024, 256), (7, 33), (100_000, 10)] {
            let g = columns(rows, cols);
            assert!(g.grid.0 as usize * 32 >= cols);
            assert!((g.grid.0 as usize - 1) * 32 < cols, "{rows}x{cols}: a block with no column");
            assert!(g.grid.1 >= 1 && g.grid.1 <= 256);
        }
        let p = planes(128 * 64, 64);
        assert_eq!((p.grid.0, p.block.0 % 32), (64, 0));
        assert_eq!(warp_per_row(17).grid.0, 3);
    }

    #[test]
    fn gram_grids_enumerate_the_lower_tile_pairs_and_split_rows_for_occupancy() {
        let g = gram(1024, 256, 108);
        assert_eq!(g.grid.0, 10, "4 tiles per side: 4·5/2 pairs");
        assert_eq!(g.block, (16, 16, 1));
        assert!(g.grid.0 * g.grid.1 >= 216 || g.grid.1 as usize == 1024usize.div_ceil(128), "{g:?}");
        // Few rows: no more splits than 128-row pieces.
        assert_eq!(gram(100, 64, 108).grid.1, 1);
        // Many tiles already fill the device: no splits.
        assert_eq!(gram(8192, 4096, 108).grid.1, 1);
        assert_eq!(gram(0, 1, 1).grid, (1, 1, 1));
    }

    #[test]
    fn no_grid_x_exceeds_what_the_driver_launches() {
        // Sizes no memory holds, but whose block counts pass 2³¹−1 (and, for
        // the columns, u32::MAX): each is capped, never wrapped or rejected by the driver.
        let huge = 1usize << 42;
        for g in [columns(1, huge), planes(1, huge), warp_per_row(huge), gram(1, 1 << 23, 1)] {
            assert_eq!(g.grid.0 as usize, GRID_X_MAX, "{g:?}");
        }
        assert_eq!(planes(1, 0).grid.0, 1);
    }
}
