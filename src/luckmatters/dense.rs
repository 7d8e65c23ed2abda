//! A small row-major f64 matrix for the matrix version, whose update is a
//! closed form in products of tiny matrices (tens of rows) rather than a
//! backward pass.

#[derive(Clone, Debug, PartialEq)]
pub struct Mat {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Mat {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Mat { rows, cols, data: vec![0.0; rows * cols] }
    }

    pub fn identity(n: usize) -> Self {
        let mut m = Mat::zeros(n, n);
        (0..n).for_each(|i| m.data[i * n + i] = 1.0);
        m
    }

    pub fn from_fn(rows: usize, cols: usize, mut f: impl FnMut(usize, usize) -> f64) -> Self {
        Mat { rows, cols, data: (0..rows * cols).map(|k| f(k / cols, k % cols)).collect() }
    }

    pub fn at(&self, r: usize, c: usize) -> f64 {
        self.data[r * self.cols + c]
    }

    pub fn row(&self, r: usize) -> &[f64] {
        &self.data[r * self.cols..(r + 1) * self.cols]
    }

    pub fn t(&self) -> Mat {
        Mat::from_fn(self.cols, self.rows, |r, c| self.at(c, r))
    }

    /// `self · other`.
    pub fn matmul(&self, other: &Mat) -> Mat {
        assert_eq!(self.cols, other.rows, "matmul {}×{} · {}×{}", self.rows, self.cols, other.rows, other.cols);
        let mut out = Mat::zeros(self.rows, other.cols);
        for r in 0..self.rows {
            let acc = &mut out.data[r * other.cols..(r + 1) * other.cols];
            for (k, &a) in self.row(r).iter().enumerate() {
                if a != 0.0 {
                    acc.iter_mut().zip(other.row(k)).for_each(|(o, &b)| *o += a * b);
                }
            }
        }
        out
    }

    /// `selfᵀ · other / n`: a second moment over the rows (samples) of both.
    pub fn moment(&self, other: &Mat) -> Mat {
        assert_eq!(self.rows, other.rows, "moment over {} and {} samples", self.rows, other.rows);
        let mut out = Mat::zeros(self.cols, other.cols);
        let n = self.rows as f64;
        for s in 0..self.rows {
            for (i, &a) in self.row(s).iter().enumerate() {
                if a != 0.0 {
                    out.data[i * other.cols..(i + 1) * other.cols].iter_mut().zip(other.row(s)).for_each(|(o, &b)| *o += a * b / n);
                }
            }
        }
        out
    }

    /// Element-wise product.
    pub fn hadamard(&self, other: &Mat) -> Mat {
        assert_eq!((self.rows, self.cols), (other.rows, other.cols), "hadamard of different shapes");
        Mat { rows: self.rows, cols: self.cols, data: self.data.iter().zip(&other.data).map(|(a, b)| a * b).collect() }
    }

    /// `self += alpha · other`.
    pub fn axpy(&mut self, alpha: f64, other: &Mat) {
        assert_eq!((self.rows, self.cols), (other.rows, other.cols), "axpy of different shapes");
        self.data.iter_mut().zip(&other.data).for_each(|(a, b)| *a += alpha * b);
    }

    /// The leading `rows × cols` block.
    pub fn top_left(&self, rows: usize, cols: usize) -> Mat {
        Mat::from_fn(rows, cols, |r, c| self.at(r, c))
    }

    pub fn row_norms(&self) -> Vec<f64> {
        (0..self.rows).map(|r| self.row(r).iter().map(|v| v * v).sum::<f64>().sqrt()).collect()
    }

    pub fn col_norms(&self) -> Vec<f64> {
        let mut ss = vec![0.0; self.cols];
        for r in 0..self.rows {
            ss.iter_mut().zip(self.row(r)).for_each(|(s, v)| *s += v * v);
        }
        ss.into_iter().map(f64::sqrt).collect()
    }

    /// Scales every non-zero column to unit norm; false when a norm
    /// overflowed f64, which leaves that column zeros.
    pub fn unit_cols(&mut self) -> bool {
        let norms = self.col_norms();
        for r in 0..self.rows {
            self.data[r * self.cols..(r + 1) * self.cols].iter_mut().zip(&norms).for_each(|(v, &n)| {
                if n > 0.0 {
                    *v /= n
                }
            });
        }
        norms.iter().all(|n| n.is_finite())
    }
}
