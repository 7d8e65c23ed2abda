//! `--tensorboard DIR`: the run's records as TensorBoard scalars and text,
//! written as they are logged, so a long run can be watched live. The step
//! is the record's iteration. Tags group by what they measure, one chart per
//! layer in a group, so the layers of one quantity sit side by side:
//!
//! - `train/loss`, `train/accuracy`, `train/lr`, `train/examples_per_second`
//! - `eval/test_loss`, `eval/test_accuracy`, `eval/test_top1_error`, `eval/test_top5_error`
//! - `sigma_x.lambda_max/LAYER`, `sigma_x.kappa_P/LAYER`, and the same for `sigma_grad` (Σ∇h);
//!   an infinite κ (a rank-deficient matrix) leaves a gap in its curve
//! - `grad_weight_ratio/LAYER` (σmax(∇W)/σmax(W)), `dead_fraction/LAYER`
//! - text: `alerts/LAYER/ALERT` with the alert's detail, and `alerts/diverged`

use super::event_file::EventWriter;
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::Value;
use std::path::Path;

pub struct Board {
    events: EventWriter,
}

const TRAIN: &[&str] = &["loss", "accuracy", "lr", "examples_per_second"];
const EVAL: &[&str] = &["test_loss", "test_accuracy", "test_top1_error", "test_top5_error"];
const MATRICES: &[&str] = &["sigma_x", "sigma_grad"];

impl Board {
    pub fn create(dir: &Path) -> Result<Self> {
        Ok(Board { events: EventWriter::create(dir)? })
    }

    pub fn path(&self) -> &Path {
        self.events.path()
    }

    /// Writes what TensorBoard shows of one metrics.jsonl record and flushes
    /// it; records of other kinds are passed over.
    pub fn record(&mut self, record: &impl Serialize) -> Result<()> {
        let r = serde_json::to_value(record).map_err(|e| Error::data(self.events.path(), e.to_string()))?;
        let Some(step) = r["iteration"].as_u64().map(|i| i as usize) else { return Ok(()) };
        match r["kind"].as_str() {
            Some("train") => {
                self.scalars("train", step, &r, TRAIN)?;
                if r["diverged"] == true {
                    self.events.text("alerts/diverged", step, &format!("the training loss is not finite at iteration {step}"))?;
                }
            }
            Some("eval") => self.scalars("eval", step, &r, EVAL)?,
            Some("analysis") => self.analysis(step, &r)?,
            Some("alert") => {
                let (layer, alert) = (r["layer"].as_str().unwrap_or("-"), r["alert"].as_str().unwrap_or("alert"));
                self.events.text(&format!("alerts/{layer}/{alert}"), step, r["detail"].as_str().unwrap_or(alert))?;
            }
            _ => return Ok(()),
        }
        self.events.flush()
    }

    /// `group/key` for each of `keys` that `r` holds as a number.
    fn scalars(&mut self, group: &str, step: usize, r: &Value, keys: &[&str]) -> Result<()> {
        for key in keys {
            if let Some(v) = r[key].as_f64() {
                self.events.scalar(&format!("{group}/{key}"), step, v)?;
            }
        }
        Ok(())
    }

    fn analysis(&mut self, step: usize, r: &Value) -> Result<()> {
        let layer = r["layer"].as_str().unwrap_or("-");
        for m in MATRICES {
            let s = &r[m];
            if let Some(v) = s["lambda_max"].as_f64() {
                self.events.scalar(&format!("{m}.lambda_max/{layer}"), step, v)?;
            }
            for (p, k) in s["kappa"].as_object().into_iter().flatten() {
                if let Some(k) = k.as_f64() {
                    self.events.scalar(&format!("{m}.kappa_{p}/{layer}"), step, k)?;
                }
            }
        }
        if let Some(v) = r["weight"]["ratio"].as_f64() {
            self.events.scalar(&format!("grad_weight_ratio/{layer}"), step, v)?;
        }
        if let Some(v) = r["neurons"]["dead_fraction"].as_f64() {
            self.events.scalar(&format!("dead_fraction/{layer}"), step, v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_record_is_on_disk_once_written() {
        let dir = std::env::temp_dir().join(format!("kappa-board-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut board = Board::create(&dir).unwrap();
        let on_disk = |board: &Board| std::fs::read(board.path()).unwrap();
        let opened = on_disk(&board).len();
        assert!(opened > 16 && on_disk(&board).windows(13).any(|w| w == b"brain.Event:2"));

        // Still open, the file already holds the record: a live TensorBoard sees it.
        board.record(&json!({"kind": "train", "iteration": 10, "loss": 0.5, "accuracy": null})).unwrap();
        let bytes = on_disk(&board);
        assert!(bytes.windows(10).any(|w| w == b"train/loss") && !bytes.windows(14).any(|w| w == b"train/accuracy"));
        // A kind TensorBoard has no use for adds nothing.
        let before = bytes.len();
        board.record(&json!({"kind": "resume", "iteration": 10})).unwrap();
        assert_eq!(on_disk(&board).len(), before);
        board
            .record(&json!({"kind": "alert", "iteration": 12, "layer": "layers.1", "alert": "dead-neurons", "detail": "60% dead"}))
            .unwrap();
        let bytes = on_disk(&board);
        assert!(before > opened && bytes.len() > before && bytes.windows(24).any(|w| w == b"alerts/layers.1/dead-neu"));
        drop(board);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
