//! Where a run stands beyond its tensors: its position in the data, the
//! running window of the training records, the latest figures and what the
//! alerts remember. Everything random in kappa (the data order of an epoch,
//! dropout masks, sampled labels, the analysis batches) is a pure function of
//! the seed and the epoch or iteration, so with the seed this is all a
//! resumed run needs to continue exactly.

use crate::error::{Error, Result};
use crate::record::Headline;
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// Training steps since the last `train` record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Window {
    /// Sum of the steps' mean losses.
    pub loss: f64,
    pub correct: usize,
    pub examples: usize,
    pub steps: usize,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunState {
    /// Optimiser steps taken. A checkpoint at an epoch boundary is taken
    /// after that epoch's evaluation.
    pub iteration: usize,
    pub batches_per_epoch: usize,
    pub window: Window,
    pub headline: Headline,
    /// The model's training forwards, which key its dropout masks.
    pub forwards: u64,
    /// What the analysis's alerts remember, in the analysis's own JSON, kept as it is.
    pub alerts: String,
}

impl RunState {
    /// Whole epochs done and batches of the next one already seen.
    pub fn position(&self) -> (usize, usize) {
        let per_epoch = self.batches_per_epoch.max(1);
        (self.iteration / per_epoch, self.iteration % per_epoch)
    }

    pub fn to_metadata(&self, meta: &mut BTreeMap<String, String>) {
        let (epoch, batch) = self.position();
        let mut put = |key: &str, value: String| meta.insert(key.to_string(), value);
        put("iteration", self.iteration.to_string());
        put("epoch", epoch.to_string());
        put("batch_in_epoch", batch.to_string());
        put("batches_per_epoch", self.batches_per_epoch.to_string());
        // Rust prints the shortest decimal that parses back to the same f64.
        put("window_loss", self.window.loss.to_string());
        put("window_correct", self.window.correct.to_string());
        put("window_examples", self.window.examples.to_string());
        put("window_steps", self.window.steps.to_string());
        put("model_forwards", self.forwards.to_string());
        for (key, value) in self.headline.named() {
            if let Some(v) = value {
                put(key, v.to_string());
            }
        }
        put("alerts", self.alerts.clone());
    }

    pub fn from_metadata(meta: &BTreeMap<String, String>, path: &Path) -> Result<Self> {
        let optional = |key: &str| -> Result<Option<f64>> { meta.get(key).map(|v| parse(v, key, "a number", path)).transpose() };
        let required =
            |key: &str| meta.get(key).ok_or_else(|| Error::data(path, format!("its metadata has no {key}; expected a kappa checkpoint")));
        let count = |key: &str| -> Result<usize> { parse(required(key)?, key, "a whole number", path) };
        let state = RunState {
            iteration: count("iteration")?,
            batches_per_epoch: count("batches_per_epoch")?,
            window: Window {
                loss: parse(required("window_loss")?, "window_loss", "a number", path)?,
                correct: count("window_correct")?,
                examples: count("window_examples")?,
                steps: count("window_steps")?,
            },
            headline: Headline {
                train_loss: optional("train_loss")?,
                train_accuracy: optional("train_accuracy")?,
                test_loss: optional("test_loss")?,
                test_accuracy: optional("test_accuracy")?,
                test_top5_accuracy: optional("test_top5_accuracy")?,
            },
            forwards: count("model_forwards")? as u64,
            alerts: required("alerts")?.clone(),
        };
        // A window the run could have logged: each step saw one example or more, and none of them twice.
        let w = &state.window;
        let empty = w.steps == 0;
        if w.steps > state.iteration
            || w.steps > w.examples
            || empty != (w.examples == 0)
            || (empty && w.loss != 0.0)
            || w.correct > w.examples
        {
            let detail = format!(
                "metadata window_steps = {}, window_examples = {}, window_correct = {} and window_loss = {} at iteration {} are not a \
                 window of training steps; expected at most `iteration` steps, each of one example or more, at most as many correct \
                 as examples, and no loss without a step",
                w.steps, w.examples, w.correct, w.loss, state.iteration
            );
            return Err(Error::data(path, detail));
        }
        let (epoch, batch) = state.position();
        if (count("epoch")?, count("batch_in_epoch")?) != (epoch, batch) {
            return Err(Error::data(path, "metadata epoch and batch_in_epoch disagree with iteration and batches_per_epoch"));
        }
        Ok(state)
    }
}

fn parse<T: FromStr>(value: &str, key: &str, expected: &str, path: &Path) -> Result<T> {
    value.parse().map_err(|_| Error::data(path, format!("metadata {key} = '{}' is not {expected}", value.escape_debug())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_a_window_no_run_logs_is_refused() {
        let state = RunState {
            iteration: 12,
            batches_per_epoch: 8,
            window: Window { loss: 6.25, correct: 300, examples: 512, steps: 4 },
            alerts: "{}".into(),
            ..RunState::default()
        };
        let mut meta = BTreeMap::new();
        state.to_metadata(&mut meta);
        let path = Path::new("run/checkpoint.safetensors");
        assert_eq!(RunState::from_metadata(&meta, path).unwrap(), state);
        for (key, value) in [("window_steps", "13"), ("window_steps", "0"), ("window_examples", "3"), ("window_correct", "513")] {
            let mut edited = meta.clone();
            edited.insert(key.into(), value.into());
            let err = RunState::from_metadata(&edited, path).unwrap_err().to_string();
            assert!(err.contains("run/checkpoint.safetensors") && err.contains("are not a window of training steps"), "{key}: {err}");
        }
    }
}
