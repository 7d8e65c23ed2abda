//! Optimiser state as tensors: `optimizer.<parameter>.<slot>` (PyTorch's slot
//! names: `momentum_buffer`, `exp_avg`, `exp_avg_sq`) and `optimizer.step`.

use super::convert::{overwrite_from, run_dtype, Stored};
use super::file::{HostTensor, MappedFile, Values};
use super::model::NOT_WRITTEN_SO;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::optim::{Optimizer, OptimizerState};
use crate::param::{ParamId, ParamStore};
use std::collections::{BTreeMap, HashMap};

/// Keeps optimiser entries apart from the model's, whose names never start so.
pub const PREFIX: &str = "optimizer.";
const STEP: &str = "optimizer.step";

/// Every slot of every parameter the optimiser keeps state for, and its
/// step count where it keeps one.
pub fn optimizer_tensors<'a, B: Backend>(
    optimizer: &'a dyn Optimizer<B>,
    store: &'a ParamStore<B>,
    backend: &'a B,
) -> Vec<(String, Stored<'a, B>)> {
    let state = optimizer.state();
    let mut out = Vec::new();
    for (id, bufs) in state.slots {
        let p = store.param(id);
        for (slot, buf) in optimizer.slot_names().iter().zip(bufs) {
            out.push((format!("{PREFIX}{}.{slot}", p.name), Stored::Device { backend, shape: p.value.shape(), buf }));
        }
    }
    if let Some(step) = state.step {
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        out.push((STEP.to_string(), Stored::Host(HostTensor { shape: vec![], values: Values::I64(vec![step]) })));
    }
    out
}

/// Replaces the optimiser's state with the file's `optimizer.*` entries,
/// each checked against the parameter it belongs to. Once the run has
/// `stepped`, every parameter not frozen must have its entries: each
/// receives a gradient every step, and the optimiser makes a parameter's
/// state at its first update, so a missing one would restart that
/// parameter's momentum (or Adam's moments) in a run meant to go on bit for
/// bit. A frozen parameter has none.
pub fn load_optimizer<B: Backend>(
    optimizer: &mut dyn Optimizer<B>,
    store: &ParamStore<B>,
    backend: &B,
    file: &mut MappedFile,
    stepped: bool,
) -> Result<()> {
    let path = &file.path().to_path_buf();
    let bad = |detail: String| Error::data(path, detail);
    let names = optimizer.slot_names();
    let ids: HashMap<&str, ParamId> = store.ids().map(|id| (store.param(id).name.as_str(), id)).collect();
    let mut slots: BTreeMap<ParamId, Vec<Option<B::Buf>>> = BTreeMap::new();
    let mut step = None;
    // Each slot is read where it lies in the file, straight into its own
    // buffer, so the host never holds a second copy of the state.
    let entries: Vec<String> = file.names().filter(|n| n.starts_with(PREFIX)).map(str::to_string).collect();
    for name in entries {
        if name == STEP {
            let t = file.take(&name).expect("a name the file lists")?;
            step = match (&t.values, t.shape.as_slice()) {
                (Values::I64(v), []) => v.first().and_then(|&s| u64::try_from(s).ok()),
                _ => None,
            };
            if step.is_none() {
                return Err(bad(format!("{STEP} must be a non-negative I64 scalar, not {} {:?}", t.values.dtype(), t.shape)));
            }
            continue;
        }
        let param_slot = name[PREFIX.len()..].rsplit_once('.');
        let Some((&id, k)) = param_slot.and_then(|(p, s)| Some((ids.get(p)?, names.iter().position(|n| *n == s)?))) else {
            return Err(bad(format!(
                "unexpected {}: this optimiser keeps {} per parameter of the model",
                name.escape_debug(),
                names.join(", ")
            )));
        };
        let shape = store.value(id).shape();
        let file_shape = file.shape(&name).expect("a name the file lists");
        if file_shape != shape {
            return Err(bad(format!("{name} is {file_shape:?} in the file but its parameter is {shape:?}")));
        }
        let dtype = file.dtype(&name).expect("a name the file lists");
        if dtype != run_dtype::<B>() {
            return Err(bad(format!("{name} is {dtype} but the run computes in {}", run_dtype::<B>())));
        }
        let values = file.floats(&name).expect("a name the file lists")?;
        let (non_finite, _) = values.unfit::<B::Elem>();
        if non_finite > 0 {
            return Err(bad(format!("{name} holds {non_finite} NaN or infinite values; {NOT_WRITTEN_SO}")));
        }
        let mut buf = backend.zeros(shape.iter().product())?;
        overwrite_from(backend, &mut buf, values)?;
        file.forget(&name);
        slots.entry(id).or_insert_with(|| vec![None; names.len()])[k] = Some(buf);
    }
    let counts_steps = optimizer.state().step.is_some();
    if counts_steps != step.is_some() {
        let why = if counts_steps { "missing: this optimiser counts its steps" } else { "unexpected: this optimiser counts no steps" };
        return Err(bad(format!("{STEP} {why}")));
    }
    if let Some(id) = store.ids().find(|id| stepped && !names.is_empty() && !store.param(*id).frozen && !slots.contains_key(id)) {
        let detail = format!("{PREFIX}{}.{} is missing; after a step every parameter not frozen has it", store.param(id).name, names[0]);
        return Err(bad(detail));
    }
    let mut state = OptimizerState { slots: BTreeMap::new(), step };
    for (id, bufs) in slots {
        let Some(bufs) = bufs.into_iter().collect::<Option<Vec<_>>>() else {
            let p = &store.param(id).name;
            return Err(bad(format!("{PREFIX}{p} holds only part of its state; expected {}", names.join(", "))));
        };
        state.slots.insert(id, bufs);
    }
    optimizer.set_state(state)
}
