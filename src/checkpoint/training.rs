//! A run directory's checkpoint: the model, the optimiser and the run state
//! in one safetensors file, replaced atomically each time.

use super::convert::Stored;
use super::file::{self, Entry, MappedFile};
use super::model::{load_model, model_tensors, Precision};
use super::optimizer::{load_optimizer, optimizer_tensors};
use super::run_state::RunState;
use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::models::Model;
use crate::optim::Optimizer;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
const FORMAT: &str = "kappa-checkpoint";
/// 2: the model's training forwards (the dropout stream) in the metadata.
const FORMAT_VERSION: &str = "2";

pub fn checkpoint_path(run_dir: &Path) -> PathBuf {
    run_dir.join(CHECKPOINT_FILE)
}

/// Whether [`save`] wrote the checkpoint.
#[derive(Debug, PartialEq, Eq)]
pub enum Saved {
    Written,
    /// Not written, as this tensor of the model or the optimiser holds NaN
    /// or infinite values: the run has diverged (a ReLU can hide a NaN
    /// weight from the loss), and a checkpoint of it could only resume as
    /// garbage. The previous checkpoint stays.
    NotFinite(String),
}

/// The identity key whose value is the run's settings as a JSON object;
/// checkpoints written before it lack it, and resume without the check.
pub const SETTINGS: &str = "settings";

/// The model's and the optimiser's tensors, as a checkpoint holds them.
fn state_tensors<'a, B: Backend>(
    be: &'a B,
    model: &'a dyn Model<B>,
    optimizer: &'a dyn Optimizer<B>,
    batches_tracked: u64,
) -> Vec<(String, Stored<'a, B>)> {
    let mut tensors = model_tensors(model, be, batches_tracked);
    tensors.extend(optimizer_tensors(optimizer, model.store(), be));
    tensors
}

/// The first of `tensors` holding a NaN or infinite value, each brought to
/// the host in its turn.
fn first_non_finite<'a, B: Backend + 'a>(tensors: impl IntoIterator<Item = (&'a String, &'a Stored<'a, B>)>) -> Result<Option<String>> {
    for (name, t) in tensors {
        if t.values()?.non_finite() > 0 {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// The first tensor of the model's or the optimiser's state that holds a NaN
/// or infinite value, as [`save`] would name it, without writing anything.
pub fn non_finite_state<B: Backend>(be: &B, model: &dyn Model<B>, optimizer: &dyn Optimizer<B>) -> Result<Option<String>> {
    let tensors = state_tensors(be, model, optimizer, 0);
    first_non_finite(tensors.iter().map(|(n, t)| (n, t)))
}

/// Writes `RUN_DIR/checkpoint.safetensors`: the model and the optimiser as
/// they stand, where the run stood, and its `identity`, the (key, value)
/// pairs of the run's configuration a resumed run must agree with; unless
/// a value is not finite ([`Saved::NotFinite`]). Each tensor comes to the
/// host twice, once to be checked and once to be written, so the host
/// never holds more than one of them.
pub fn save<B: Backend>(
    run_dir: &Path,
    be: &B,
    model: &dyn Model<B>,
    optimizer: &dyn Optimizer<B>,
    identity: &[(&str, String)],
    state: &RunState,
) -> Result<Saved> {
    let tensors: BTreeMap<String, Stored<B>> = state_tensors(be, model, optimizer, state.iteration as u64).into_iter().collect();
    if let Some(name) = first_non_finite(&tensors)? {
        return Ok(Saved::NotFinite(name));
    }
    let mut metadata = BTreeMap::new();
    metadata.insert("format".into(), FORMAT.into());
    metadata.insert("format_version".into(), FORMAT_VERSION.into());
    metadata.insert("model".into(), model.describe());
    metadata.extend(identity.iter().map(|(k, v)| (k.to_string(), v.clone())));
    state.to_metadata(&mut metadata);
    file::write(&checkpoint_path(run_dir), &metadata, &tensors)?;
    Ok(Saved::Written)
}

/// Why the identity entry `key` that `checkpoint` was taken with (`then`,
/// none if it lacks it) and the run's config.json (`now`) disagree. An
/// entry holding a JSON object (the settings, config.json's `train`) is
/// named by its first setting that differs, as a dotted path.
fn changed_setting(key: &str, then: Option<&str>, now: &str, checkpoint: &Path) -> String {
    let object = |text: &str| serde_json::from_str::<serde_json::Value>(text).ok().filter(serde_json::Value::is_object);
    let differs = match (then.and_then(object), object(now)) {
        (Some(then), Some(now)) => first_difference(&then, &now, "train").map(|(key, then, now)| (key, then.to_string(), now.to_string())),
        _ => None,
    };
    let (key, then, now) = differs.unwrap_or_else(|| (key.into(), then.unwrap_or("nothing").escape_debug().to_string(), now.into()));
    format!(
        "{key} is {now}, but {} was taken with {then}; a resumed run goes on as checkpointed (only --epochs, --iterations, --checkpoint-every and --tensorboard change)",
        checkpoint.display()
    )
}

/// The first key below `path` whose value differs between `a` and `b`,
/// with both values (`null` where one lacks it).
fn first_difference(a: &serde_json::Value, b: &serde_json::Value, path: &str) -> Option<(String, serde_json::Value, serde_json::Value)> {
    use serde_json::Value;
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))).find_map(|key| {
            let (xa, yb) = (x.get(key).unwrap_or(&Value::Null), y.get(key).unwrap_or(&Value::Null));
            first_difference(xa, yb, &format!("{path}.{key}"))
        }),
        _ if a != b => Some((path.to_string(), a.clone(), b.clone())),
        _ => None,
    }
}

/// The iteration a run diverged at, as its `summary.json` says (none when
/// the file is missing, unreadable or says otherwise).
fn diverged_at(run_dir: &Path) -> Option<u64> {
    let text = std::fs::read(run_dir.join("summary.json")).ok()?;
    let summary: serde_json::Value = serde_json::from_slice(&text).ok()?;
    (summary["diverged"] == true).then(|| summary["diverged_at"].as_u64()).flatten()
}

/// Loads `RUN_DIR/checkpoint.safetensors` into a model and optimiser built
/// from the run's configuration, whose `identity` the checkpoint must share,
/// and returns where the run stood.
pub fn resume<B: Backend>(
    run_dir: &Path,
    be: &B,
    model: &mut dyn Model<B>,
    optimizer: &mut dyn Optimizer<B>,
    identity: &[(&str, String)],
) -> Result<RunState> {
    let path = checkpoint_path(run_dir);
    if !path.is_file() {
        let why = match (path.exists(), diverged_at(run_dir)) {
            (true, _) => "is not a file; expected the checkpoint kappa writes".into(),
            (false, Some(at)) => format!("no checkpoint to resume from: the run diverged at iteration {at}, before its first checkpoint"),
            (false, None) => "no checkpoint to resume from (kappa writes one at every epoch end and with --checkpoint-every N)".into(),
        };
        return Err(Error::data(&path, why));
    }
    let mut file = MappedFile::open(&path)?;
    let meta = |key: &str| file.metadata.get(key).map(String::as_str);
    if meta("format") != Some(FORMAT) {
        return Err(Error::data(&path, format!("not a kappa checkpoint: expected metadata format = {FORMAT}")));
    }
    if meta("format_version") != Some(FORMAT_VERSION) {
        let found = meta("format_version").unwrap_or("none").escape_debug();
        return Err(Error::data(&path, format!("checkpoint format version {found}; this kappa reads version {FORMAT_VERSION}")));
    }
    for (key, expected) in identity {
        match meta(key) {
            Some(found) if found == expected => {}
            // The one entry checkpoints from before it lack: they resume unchecked on it.
            None if *key == SETTINGS => {}
            found => return Err(Error::data(run_dir.join("config.json"), changed_setting(key, found, expected, &path))),
        }
    }
    load_model(&mut *model, be, &mut file, Precision::Exact)?;
    let state = RunState::from_metadata(&file.metadata, &path)?;
    load_optimizer(optimizer, model.store(), be, &mut file, state.iteration > 0)?;
    model.set_forwards(state.forwards);
    Ok(state)
}
