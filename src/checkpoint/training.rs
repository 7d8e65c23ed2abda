//! A run directory's checkpoint: the model, the optimiser and the run state
//! in one safetensors file, replaced atomically each time.

use super::file::TensorFile;
use super::model::{load_model, model_tensors, Precision};
use super::optimizer::{load_optimizer, optimizer_tensors};
use super::run_state::RunState;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::train::{TrainConfig, Trainer};
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "kappa-checkpoint";
/// 2: the model's training forwards (the dropout stream) in the metadata.
const FORMAT_VERSION: &str = "2";

pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_FILE)
}

/// What the checkpoint's metadata must agree with the run's configuration on.
fn identity(cfg: &TrainConfig) -> [(&'static str, String); 3] {
    let name = |v: serde_json::Value| v.as_str().unwrap_or_default().to_string();
    [("dtype", name(serde_json::json!(cfg.dtype))), ("optimizer", name(serde_json::json!(cfg.optimizer))), ("seed", cfg.seed.to_string())]
}

/// Writes `RUN_DIR/checkpoint.safetensors` for the trainer as it stands.
pub fn save<B: Backend>(run_dir: &Path, trainer: &Trainer<B>, cfg: &TrainConfig, state: &RunState) -> Result<()> {
    let be = trainer.backend();
    let model = trainer.model();
    let mut file = TensorFile::default();
    file.tensors.extend(model_tensors(model, be, state.iteration as u64)?);
    file.tensors.extend(optimizer_tensors(trainer.optimizer(), model.store(), be)?);
    file.metadata.insert("format".into(), FORMAT.into());
    file.metadata.insert("format_version".into(), FORMAT_VERSION.into());
    file.metadata.insert("model".into(), model.describe());
    file.metadata.extend(identity(cfg).map(|(k, v)| (k.to_string(), v)));
    state.to_metadata(&mut file.metadata)?;
    file.write(&checkpoint_path(run_dir))
}

/// Loads `RUN_DIR/checkpoint.safetensors` into a trainer built from the
/// run's configuration and returns where the run stood.
pub fn resume<B: Backend>(run_dir: &Path, trainer: &mut Trainer<B>, cfg: &TrainConfig) -> Result<RunState> {
    let path = checkpoint_path(run_dir);
    if !path.is_file() {
        return Err(Error::data(&path, "no checkpoint to resume from (kappa writes one at every epoch end and with --checkpoint-every N)"));
    }
    let file = TensorFile::read(&path)?;
    let meta = |key: &str| file.metadata.get(key).map(String::as_str);
    if meta("format") != Some(FORMAT) {
        return Err(Error::data(&path, format!("not a kappa checkpoint: expected metadata format = {FORMAT}")));
    }
    if meta("format_version") != Some(FORMAT_VERSION) {
        let found = meta("format_version").unwrap_or("none").escape_debug();
        return Err(Error::data(&path, format!("checkpoint format version {found}; this kappa reads version {FORMAT_VERSION}")));
    }
    for (key, expected) in identity(cfg) {
        if meta(key) != Some(expected.as_str()) {
            let found = meta(key).unwrap_or("nothing").escape_debug();
            return Err(Error::data(&path, format!("metadata {key} is {found} but the run's config.json says {expected}")));
        }
    }
    let be = trainer.backend().clone();
    load_model(trainer.model_mut(), &be, &file, &path, Precision::Exact)?;
    let (model, optimizer) = trainer.model_and_optimizer_mut();
    load_optimizer(optimizer, model.store(), &be, &file, &path)?;
    let state = RunState::from_metadata(&file.metadata, &path)?;
    model.set_forwards(state.forwards);
    Ok(state)
}
