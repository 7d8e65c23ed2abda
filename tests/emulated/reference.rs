//! CPU twins of the conv-patch kernels, which have no Backend op yet (conv
//! layers come with a later issue): explicit im2col rows, their adjoint, and
//! through them the patch Gram of `gram_lower_patches`.

/// A conv window over an NCHW activation.
#[derive(Clone, Copy, Debug)]
pub struct Conv {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl Conv {
    pub fn out_hw(&self) -> (usize, usize) {
        ((self.h + 2 * self.pad - self.kh) / self.stride + 1, (self.w + 2 * self.pad - self.kw) / self.stride + 1)
    }
    pub fn rows(&self) -> usize {
        let (oh, ow) = self.out_hw();
        self.n * oh * ow
    }
    pub fn cols(&self) -> usize {
        self.c * self.kh * self.kw
    }
}

/// The patch matrix: row (image, oy, ox), column (channel, ky, kx), zero padding.
pub fn im2col(x: &[f32], g: Conv) -> Vec<f32> {
    let (oh, ow) = g.out_hw();
    let mut out = Vec::with_capacity(g.rows() * g.cols());
    for b in 0..g.n {
        for oy in 0..oh {
            for ox in 0..ow {
                for ch in 0..g.c {
                    for ky in 0..g.kh {
                        for kx in 0..g.kw {
                            let (iy, ix) = ((oy * g.stride + ky) as isize - g.pad as isize, (ox * g.stride + kx) as isize - g.pad as isize);
                            let inside = iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w;
                            out.push(if inside { x[((b * g.c + ch) * g.h + iy as usize) * g.w + ix as usize] } else { 0.0 });
                        }
                    }
                }
            }
        }
    }
    out
}

/// The adjoint of `im2col`: every patch entry added back where it was read.
pub fn col2im(cols: &[f32], g: Conv) -> Vec<f64> {
    let (oh, ow) = g.out_hw();
    let mut x = vec![0.0f64; g.n * g.c * g.h * g.w];
    for (r, row) in cols.chunks(g.cols()).enumerate() {
        let (b, oy, ox) = (r / (oh * ow), (r / ow) % oh, r % ow);
        for (col, &v) in row.iter().enumerate() {
            let (ch, ky, kx) = (col / (g.kh * g.kw), (col / g.kw) % g.kh, col % g.kw);
            let (iy, ix) = ((oy * g.stride + ky) as isize - g.pad as isize, (ox * g.stride + kx) as isize - g.pad as isize);
            if iy >= 0 && ix >= 0 && (iy as usize) < g.h && (ix as usize) < g.w {
                x[((b * g.c + ch) * g.h + iy as usize) * g.w + ix as usize] += v as f64;
            }
        }
    }
    x
}
