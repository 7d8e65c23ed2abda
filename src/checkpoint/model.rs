//! A model's parameters and buffers under their PyTorch names, and loading
//! them back with every name and shape checked.

use super::convert::{overwrite_from, run_dtype, Stored};
use super::file::{HostTensor, MappedFile, Values};
use super::optimizer::PREFIX as OPTIMIZER_PREFIX;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::param::{BufferId, ParamId};
use std::collections::BTreeSet;
use std::path::Path;

/// PyTorch's BN buffers are `{bn}.running_mean`, `{bn}.running_var` and
/// `{bn}.num_batches_tracked`; kappa keeps the first two.
const RUNNING_MEAN: &str = ".running_mean";
const BATCHES_TRACKED: &str = ".num_batches_tracked";

/// How closely a file's values must match the run's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// A checkpoint of this run: the run's own dtype, so values come back bit for bit.
    Exact,
    /// Weights from elsewhere: any float dtype, converted to the run's.
    Convert,
}

impl Precision {
    /// Why a file's NaN or infinite value is refused.
    pub fn finite_why(self) -> &'static str {
        match self {
            Precision::Exact => NOT_WRITTEN_SO,
            Precision::Convert => "expected finite weights",
        }
    }
}

/// Why a checkpoint holding a NaN or infinite value was not written by kappa
/// as it stands: a run whose state turns non-finite stops as diverged instead
/// of saving it.
pub const NOT_WRITTEN_SO: &str =
    "kappa never saves such a checkpoint (a run whose state turns non-finite stops as diverged), so the file was changed since";

/// Every parameter and buffer of `model`, plus an i64 `num_batches_tracked`
/// per BN layer so PyTorch's strict `load_state_dict` accepts the file.
pub fn model_tensors<'a, B: Backend>(model: &'a dyn Model<B>, backend: &'a B, batches_tracked: u64) -> Vec<(String, Stored<'a, B>)> {
    let store = model.store();
    let mut out = Vec::new();
    for p in store.params() {
        out.push((p.name.clone(), Stored::Device { backend, shape: p.value.shape(), buf: p.value.buf() }));
    }
    for (name, t) in store.buffers() {
        out.push((name.clone(), Stored::Device { backend, shape: t.shape(), buf: t.buf() }));
        if let Some(bn) = name.strip_suffix(RUNNING_MEAN) {
            let count = i64::try_from(batches_tracked).unwrap_or(i64::MAX);
            out.push((format!("{bn}{BATCHES_TRACKED}"), Stored::Host(HostTensor { shape: vec![], values: Values::I64(vec![count]) })));
        }
    }
    out
}

/// Loads a safetensors state dict (e.g. PyTorch's
/// `safetensors.torch.save_file(model.state_dict(), path)`) into `model`.
pub fn load_weights<B: Backend>(path: &Path, model: &mut dyn Model<B>, backend: &B) -> Result<()> {
    load_model(model, backend, &mut MappedFile::open(path)?, Precision::Convert)
}

enum Slot {
    Param(ParamId),
    Buffer(BufferId),
}

/// Replaces every parameter and buffer of `model` with the file's. Every one
/// must be there with its shape; besides them the file may hold only
/// `num_batches_tracked` of the model's BN layers and optimiser state.
/// Each tensor is read where it lies in `file`, straight into the model's
/// own buffer, so loading holds no second copy of the model on the host.
pub fn load_model<B: Backend>(model: &mut dyn Model<B>, backend: &B, file: &mut MappedFile, precision: Precision) -> Result<()> {
    let path = &file.path().to_path_buf();
    let store = model.store();
    let mut expected: Vec<(String, Vec<usize>, Slot)> =
        store.ids().map(|id| (store.param(id).name.clone(), store.value(id).shape().to_vec(), Slot::Param(id))).collect();
    expected.extend(store.buffers().iter().enumerate().map(|(i, (name, t))| (name.clone(), t.shape().to_vec(), Slot::Buffer(BufferId(i)))));
    let tolerated: BTreeSet<String> =
        store.buffers().iter().filter_map(|(name, _)| name.strip_suffix(RUNNING_MEAN)).map(|bn| format!("{bn}{BATCHES_TRACKED}")).collect();

    let mut problems = Vec::new();
    let mismatch = expected.iter().find_map(|(name, shape, _)| file.shape(name).filter(|s| s != shape).map(|s| (name, shape, s)));
    if let Some((name, model_shape, file_shape)) = mismatch {
        problems.push(format!("the first mismatching tensor is {name}: {file_shape:?} in the file, {model_shape:?} in the model"));
    }
    let missing: Vec<&str> = expected.iter().map(|(n, _, _)| n.as_str()).filter(|n| file.shape(n).is_none()).collect();
    if !missing.is_empty() {
        problems.push(format!("missing {}", list(&missing)));
    }
    let known: BTreeSet<&str> = expected.iter().map(|(n, _, _)| n.as_str()).collect();
    let unexpected: Vec<&str> =
        file.names().filter(|n| !known.contains(n) && !tolerated.contains(*n) && !n.starts_with(OPTIMIZER_PREFIX)).collect();
    if !unexpected.is_empty() {
        problems.push(format!("unexpected {}", list(&unexpected)));
    }
    if !problems.is_empty() {
        return Err(Error::data(path, format!("does not fit the model ({}): {}", model.describe(), problems.join("; "))));
    }

    // Every tensor is checked before any is written, so a file refused leaves the model as it was.
    for (name, _, _) in &expected {
        check::<B>(file, name, precision)?;
    }
    let store = model.store_mut();
    for (name, _, slot) in expected {
        let tensor = match slot {
            Slot::Param(id) => &mut store.param_mut(id).value,
            Slot::Buffer(id) => store.buffer_mut(id),
        };
        let values = file.floats(&name).expect("every expected tensor was checked above")?;
        overwrite_from(backend, tensor.buf_mut(), values)?;
        file.forget(&name);
    }
    Ok(())
}

/// Refuses tensor `name` of `file` unless its values load into a `B` run
/// at `precision`: floating point, the run's own dtype where exact, finite,
/// and finite still in the run's type.
fn check<B: Backend>(file: &MappedFile, name: &str, precision: Precision) -> Result<()> {
    let refuse = |detail: String| Err(Error::data(file.path(), detail));
    let dtype = file.dtype(name).expect("every expected tensor was found above");
    if precision == Precision::Exact && dtype != run_dtype::<B>() {
        return refuse(format!("{name} is {dtype} but the run computes in {}; a checkpoint resumes in its own dtype", run_dtype::<B>()));
    }
    let (non_finite, overflowed) = file.floats(name).expect("found above")?.unfit::<B::Elem>();
    if non_finite > 0 {
        return refuse(format!("{name} holds {non_finite} NaN or infinite values; {}", precision.finite_why()));
    }
    // F64 values past f32's range are finite in the file but infinite in an f32 run.
    if overflowed > 0 {
        return refuse(format!("{name} holds {overflowed} values past {}'s range; {}", run_dtype::<B>(), precision.finite_why()));
    }
    Ok(())
}

/// Up to five names, then how many more. Names come from the file, so
/// control characters are escaped: the error stays one line.
fn list(names: &[&str]) -> String {
    let shown = names.iter().take(5).map(|n| n.escape_debug().to_string()).collect::<Vec<_>>().join(", ");
    match names.len() {
        n if n > 5 => format!("{n} tensors: {shown} and {} more", n - 5),
        1 => format!("1 tensor: {shown}"),
        n => format!("{n} tensors: {shown}"),
    }
}
