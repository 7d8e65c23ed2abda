//! Exact curvature of tiny networks (paper Fig. 1, 2, A1–A4): the full FIM F,
//! its diagonal blocks F_k, and the second moment M with its blocks M_k, from
//! per-example weight gradients, set against the layer-wise Kronecker form
//! Σx ⊗ Σ∇h of Prop. 1.
//!
//! Only the weight matrices of the probed linear layers enter θ: biases and
//! BN γ/β are left out, as the paper's sub-FIMs are one per weight matrix.
//!
//! Cost, for N examples and P weights: with BN, ℓ_i depends on every row of
//! the batch through the batch statistics, so example i's gradient is a
//! backward of ℓ_i alone through the full-batch graph: N forward+backward
//! passes over the N-example batch per matrix, O(N²·P) (the same passes serve
//! plain networks, where they are merely redundant). Then O(N·P·min(N, P))
//! for the Gram products and O(min(N, P)³) per eigen-solve, per block and for
//! the whole, and N·P values of G on the host.
//!
//! Precision: an eigenvalue counts as non-zero above P·ε·λmax (the matrix's
//! own size), so in f32 κ_nonzero cannot exceed about 1/(P·ε), ≈ 1.2e3 for the
//! paper's P = 7152; an f64 backend resolves the spectrum down to rank N.

use super::moments::Moments;
use super::spectrum::{Kronecker, Spectrum};
use super::subject::{Labels, Subject};
use crate::autograd::{Gradients, Tape};
use crate::backend::{Backend, Gemm};
use crate::data::Batch;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::param::ParamId;
use crate::scalar::Scalar;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};
use std::ops::Range;

/// What [`exact_curvature`] measures.
#[derive(Clone, Debug, PartialEq)]
pub struct ExactOptions {
    /// N: the first `examples` rows of the batch (also the BN batch).
    pub examples: usize,
    /// The p of κ_p, in percent.
    pub kappa_p: Vec<f64>,
    /// The Fisher's labels are `Labels::Sampled { seed, stream: 0 }`, one per example.
    pub seed: u64,
}

/// One block of F or M: its exact spectrum and, for a layer's block, the
/// Kronecker approximation from the same N examples and labels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExactRecord {
    /// Set by the caller: updates made before the measured state.
    pub iteration: usize,
    /// `"fim"` (labels sampled from the model) or `"m"` (true labels).
    pub matrix: String,
    /// `"full"` or the layer's name.
    pub block: String,
    /// Of the P×P matrix: `dim` is P, rank at most min(N, P).
    pub exact: Spectrum,
    /// `None` for the full matrix, which has no Kronecker form.
    pub kronecker: Option<Kronecker>,
}

/// Per-example weight gradients, stored transposed: Gᵀ is P×N row-major, so
/// column i is example i's gradient (of its own loss ℓ_i, not divided by N)
/// and each layer's block is a contiguous range of rows.
#[derive(Clone, Debug)]
pub struct PerExampleGradients<E> {
    pub examples: usize,
    /// The labels ℓ_i was taken against.
    pub labels: Vec<u32>,
    /// Each probed layer and its rows of Gᵀ (vec of its out×in weight), in forward order.
    pub blocks: Vec<(String, Range<usize>)>,
    pub gt: Vec<E>,
}

impl<E> PerExampleGradients<E> {
    /// P, the number of weights.
    pub fn params(&self) -> usize {
        self.blocks.last().map_or(0, |(_, rows)| rows.end)
    }

    /// Block k of Gᵀ: `blocks[k].1.len() × examples`, row-major.
    pub fn block(&self, k: usize) -> &[E] {
        let rows = &self.blocks[k].1;
        &self.gt[rows.start * self.examples..rows.end * self.examples]
    }
}

/// [`exact_curvature_of`] the subject's model.
pub fn exact_curvature<B: Backend>(subject: &mut impl Subject<B>, batch: &Batch, opts: &ExactOptions) -> Result<Vec<ExactRecord>> {
    let backend = subject.backend().clone();
    exact_curvature_of(&backend, subject.model_mut(), batch, opts)
}

/// Fails, naming `--examples`, unless `examples` is 1 to the `available`
/// examples of the split they are drawn from.
pub fn check_examples(examples: usize, available: usize) -> Result<()> {
    if examples == 0 || examples > available {
        let detail = format!(
            "{examples} examples, but the split they are drawn from has {available} (--limit-train caps it); expected 1 to {available}"
        );
        return Err(Error::arg("--examples", detail));
    }
    Ok(())
}

/// F and M, full and per layer, on the first `opts.examples` rows of `batch`,
/// with `iteration` 0. The model must be deterministic in training mode (the
/// forward pass is replayed per example); its BN running statistics are
/// restored afterwards, so measuring never changes training.
pub fn exact_curvature_of<B: Backend>(
    backend: &B,
    model: &mut dyn Model<B>,
    batch: &Batch,
    opts: &ExactOptions,
) -> Result<Vec<ExactRecord>> {
    check_examples(opts.examples, batch.rows())?;
    if let Some(p) = opts.kappa_p.iter().find(|p| !(**p > 0.0 && **p <= 100.0)) {
        return Err(Error::arg("--kappa-p", format!("{p} is not a percentage in (0, 100]")));
    }
    let batch = head(batch, opts.examples);
    let saved = model.store().snapshot_buffers();
    let records = measure(backend, model, &batch, opts);
    model.store_mut().restore_buffers(saved);
    records
}

/// One block's place among the batched eigen-solves.
struct Solve {
    matrix: &'static str,
    block: String,
    params: usize,
    exact: usize,
    /// Σx and Σ∇h, for a layer's block.
    factors: Option<(usize, usize)>,
}

fn measure<B: Backend>(backend: &B, model: &mut dyn Model<B>, batch: &Batch, opts: &ExactOptions) -> Result<Vec<ExactRecord>> {
    let mut mats: Vec<(B::Buf, usize)> = Vec::new();
    let mut solves = Vec::new();
    for (matrix, labels) in [("fim", Labels::Sampled { seed: opts.seed, stream: 0 }), ("m", Labels::True)] {
        let (g, grads) = passes(backend, model, batch, labels)?;
        let n = g.examples;
        solves.push(Solve { matrix, block: "full".into(), params: g.params(), exact: mats.len(), factors: None });
        mats.push(gram(backend, &g.gt, g.params(), n)?);
        let mut moments = Moments::new(backend, false, Default::default());
        moments.add(grads.probes())?;
        for (k, m) in moments.finish()?.into_iter().enumerate() {
            let (layer, rows) = &g.blocks[k];
            let at = mats.len();
            solves.push(Solve { matrix, block: layer.clone(), params: rows.len(), exact: at, factors: Some((at + 1, at + 2)) });
            mats.extend([gram(backend, g.block(k), rows.len(), n)?, m.sigma_x, m.sigma_grad]);
        }
    }
    let refs: Vec<(&B::Buf, usize)> = mats.iter().map(|(b, d)| (b, *d)).collect();
    let spectra = backend.eigvalsh(&refs)?;
    let eps = B::Elem::EPSILON;
    let n = batch.rows();
    let summary = |i: usize| Spectrum::of_second_moment(&spectra[i], eps, n, &opts.kappa_p);
    Ok(solves
        .into_iter()
        .map(|s| ExactRecord {
            iteration: 0,
            matrix: s.matrix.into(),
            block: s.block,
            exact: Spectrum::of_second_moment(&padded(spectra[s.exact].clone(), s.params), eps, n, &opts.kappa_p),
            kronecker: s.factors.map(|(x, g)| Kronecker::of(&summary(x), &summary(g))),
        })
        .collect())
}

/// Per-example weight gradients of every probed linear layer, against `labels`
/// (sampled from the model's softmax on `batch` for [`Labels::Sampled`], as
/// a training step does). The BN running statistics advance once per
/// pass: snapshot them around the call.
pub fn per_example_gradients<B: Backend>(
    backend: &B,
    model: &mut dyn Model<B>,
    batch: &Batch,
    labels: Labels,
) -> Result<PerExampleGradients<B::Elem>> {
    passes(backend, model, batch, labels).map(|(g, _)| g)
}

/// The per-example gradients, and the probed batch gradients of the mean loss
/// under the same labels (what the Kronecker factors are built from).
fn passes<B: Backend>(
    backend: &B,
    model: &mut dyn Model<B>,
    batch: &Batch,
    labels: Labels,
) -> Result<(PerExampleGradients<B::Elem>, Gradients<B>)> {
    let x = Tensor::from_f32s(backend, &batch.dims, &batch.images)?;
    let mut tape = Tape::new(backend);
    tape.set_probing(true);
    let input = tape.constant(x.clone());
    let logits = model.forward(&mut tape, input, true)?;
    let (n, classes) = tape.value(logits).rows_cols();
    let targets = labels.targets(backend, tape.value(logits), &batch.labels)?;
    // softmax(z_i) − onehot(y_i) = ∂ℓ_i/∂z_i: row i seeds example i's backward.
    let (probs, _) = backend.softmax_xent(tape.value(logits).buf(), &targets, classes)?;
    let dz = backend.download(&backend.softmax_xent_backward(&probs, &targets, classes, 1.0)?)?;
    let loss = tape.cross_entropy(logits, &targets)?;
    let grads = tape.backward(loss)?;

    let store = model.store();
    let mut blocks = Vec::new();
    let mut ids: Vec<ParamId> = Vec::new();
    for probe in grads.probes() {
        let name = format!("{}.weight", probe.layer);
        let id = store
            .ids()
            .find(|&id| store.param(id).name == name)
            .ok_or_else(|| Error::Backend(format!("probed layer {} has no parameter {name}", probe.layer)))?;
        let start = blocks.last().map_or(0, |(_, rows): &(String, Range<usize>)| rows.end);
        blocks.push((probe.layer.clone(), start..start + store.value(id).numel()));
        ids.push(id);
    }
    let params = blocks.last().map_or(0, |(_, rows)| rows.end);

    // Row i of G (N×P), transposed at the end.
    let mut g = Vec::with_capacity(n * params);
    let mut seed = vec![<B::Elem as Scalar>::ZERO; n * classes];
    let row = |i: usize| i * classes..(i + 1) * classes;
    for i in 0..n {
        seed[row(i)].copy_from_slice(&dz[row(i)]);
        let mut tape = Tape::new(backend);
        let input = tape.constant(x.clone());
        let z = model.forward(&mut tape, input, true)?;
        // Σ z ⊙ R with R zero but row i has gradient ∂ℓ_i/∂z at these logits,
        // so its backward is ∂ℓ_i/∂θ with no per-row loss op.
        let r = tape.constant(Tensor::new(backend, &[n, classes], backend.upload(&seed)?)?);
        let zr = tape.mul(z, r)?;
        let root = tape.sum(zr)?;
        let gi = tape.backward(root)?;
        for (id, (layer, _)) in ids.iter().zip(&blocks) {
            let w = gi.param(*id).ok_or_else(|| Error::Backend(format!("no gradient reached {layer}.weight")))?;
            g.extend(backend.download(w.buf())?);
        }
        seed[row(i)].fill(<B::Elem as Scalar>::ZERO);
    }
    let gt = transpose(&g, n, params);
    Ok((PerExampleGradients { examples: n, labels: targets, blocks, gt }, grads))
}

/// Eigenvalues of GᵀG/N for Gᵀ (`params × examples`, row-major): descending,
/// length P, zero-padded beyond the rank.
pub fn second_moment_eigenvalues<B: Backend>(backend: &B, gt: &[B::Elem], params: usize, examples: usize) -> Result<Vec<f64>> {
    let (m, d) = gram(backend, gt, params, examples)?;
    let values = backend.eigvalsh(&[(&m, d)])?.remove(0);
    Ok(padded(values, params))
}

/// The smaller of GᵀG/N (P×P) and GGᵀ/N (N×N), which share their non-zero
/// eigenvalues, as a matrix whose lower triangle `eigvalsh` reads.
fn gram<B: Backend>(backend: &B, gt: &[B::Elem], params: usize, examples: usize) -> Result<(B::Buf, usize)> {
    if gt.len() != params * examples {
        return Err(Error::shape("gram", format!("{} values for {params}×{examples}", gt.len())));
    }
    let gt = backend.upload(gt)?;
    let inv = 1.0 / examples.max(1) as f64;
    if examples <= params {
        // Rows of Gᵀ are the columns of G: Σ_p G[:,p]G[:,p]ᵀ = GGᵀ.
        let mut acc = backend.zeros(examples * examples)?;
        backend.gram_lower(&mut acc, &gt, params, examples, inv)?;
        Ok((acc, examples))
    } else {
        let gemm = Gemm { alpha: inv, ..Gemm::new(params, params, examples, false, true) };
        Ok((backend.matmul(&gt, &gt, gemm)?, params))
    }
}

/// The spectrum of the P×P matrix from that of its Gram: zeros for the rest, re-sorted
/// (round-off can leave the solved part's tail slightly negative).
fn padded(mut values: Vec<f64>, params: usize) -> Vec<f64> {
    values.resize(params.max(values.len()), 0.0);
    values.sort_by(|a, b| b.total_cmp(a));
    values
}

/// `rows × cols` row-major into `cols × rows`, in tiles so reads and writes stay in cache.
fn transpose<E: Copy + Default>(a: &[E], rows: usize, cols: usize) -> Vec<E> {
    const TILE: usize = 32;
    let mut t = vec![E::default(); a.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    t[c * rows + r] = a[r * cols + c];
                }
            }
        }
    }
    t
}

/// The first `n` rows of a batch.
fn head(batch: &Batch, n: usize) -> Batch {
    let dim = batch.images.len() / batch.rows().max(1);
    let mut dims = batch.dims.clone();
    dims[0] = n;
    Batch { images: batch.images[..n * dim].to_vec(), labels: batch.labels[..n].to_vec(), dims }
}

/// The exact spectra beside their Kronecker approximations, one row per block.
pub fn print_table(records: &[ExactRecord]) -> String {
    let fmt = |v: Option<f64>| v.map_or("∞".to_string(), |v| format!("{v:.3e}"));
    let mut ps: Vec<String> = records.first().map(|r| r.exact.kappa.keys().cloned().collect()).unwrap_or_default();
    // The keys sort as strings ("100" < "50"): order them by p.
    ps.sort_by(|a, b| a.parse::<f64>().unwrap_or(f64::NAN).total_cmp(&b.parse().unwrap_or(f64::NAN)));
    let mut s = String::new();
    if let Some(r) = records.first() {
        s += &format!(
            "exact curvature at iteration {} (F: sampled labels, M: true labels; K = Kronecker Σx⊗Σ∇h; ∞ = rank deficient):\n",
            r.iteration
        );
    }
    s += &format!("{:<6} {:<12} {:>7} {:>7} {:>11} {:>11}", "matrix", "block", "dim", "rank", "λmax", "λmax K");
    for p in &ps {
        s += &format!(" {:>11}", format!("κ{p}"));
    }
    s += &format!(" {:>11} {:>11} {:>11}\n", "κ nonzero", "κ nz K", "κ100 K");
    for r in records {
        let k = r.kronecker.as_ref();
        s += &format!(
            "{:<6} {:<12} {:>7} {:>7} {:>11.3e} {:>11}",
            r.matrix,
            r.block,
            r.exact.dim,
            r.exact.rank,
            r.exact.lambda_max,
            k.map_or("-".into(), |k| format!("{:.3e}", k.lambda_max))
        );
        for p in &ps {
            s += &format!(" {:>11}", fmt(r.exact.kappa.get(p).copied().flatten()));
        }
        s += &format!(
            " {:>11} {:>11} {:>11}\n",
            fmt(r.exact.kappa_nonzero),
            k.map_or("-".into(), |k| fmt(k.kappa_nonzero)),
            k.map_or("-".into(), |k| fmt(k.kappa_full))
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transpose_crosses_tile_edges() {
        let (rows, cols) = (37, 70);
        let a: Vec<u32> = (0..rows * cols).map(|v| v as u32).collect();
        let t = transpose(&a, rows, cols);
        for r in 0..rows {
            for c in 0..cols {
                assert_eq!(t[c * rows + r], a[r * cols + c]);
            }
        }
    }

    #[test]
    fn padding_keeps_descending_order() {
        assert_eq!(padded(vec![3.0, 1.0, -1e-12], 5), vec![3.0, 1.0, 0.0, 0.0, -1e-12]);
    }
}
