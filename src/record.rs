//! The one schema of a run's `metrics.jsonl`: every line is a [`Record`],
//! tagged by its `kind`. The trainer writes these types and the report reads
//! them back, leniently: a field an older log lacks takes its default, and a
//! kind this build does not know is passed over. A record gains a field here
//! (or in the analysis record it wraps) and nowhere else.

use crate::analysis::exact::ExactRecord;
use crate::analysis::{Alert, LayerRecord};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Train(TrainRecord),
    Eval(EvalRecord),
    Analysis(Box<LayerRecord>),
    Alert(Alert),
    Exact(Box<ExactRecord>),
    /// `kappa train --resume` continued the run here.
    Resume(ResumeRecord),
    /// Written only when the run diverged; `summary.json` holds the rest.
    Summary(DivergedRecord),
    /// A kind this build does not know; never written.
    #[serde(other)]
    Other,
}

/// The training window ending at `iteration`, or the step whose loss was not finite.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainRecord {
    pub iteration: usize,
    /// 0-based; absent in records of older runs.
    pub epoch: Option<usize>,
    /// The mean loss over the window; `null` when diverged.
    pub loss: Option<f64>,
    /// Over the steps since the previous training record.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f64>,
    pub lr: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examples_per_second: Option<f64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub diverged: bool,
}

/// The evaluation on the test split after an epoch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalRecord {
    pub iteration: usize,
    /// 0-based: the epoch just finished.
    pub epoch: Option<usize>,
    pub test_loss: Option<f64>,
    /// Top-1.
    pub test_accuracy: Option<f64>,
    pub test_top1_error: Option<f64>,
    pub test_top5_error: Option<f64>,
}

/// Records after this one supersede those of iterations from `iteration` on.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeRecord {
    pub iteration: usize,
    #[serde(default)]
    pub epoch: usize,
    /// The run's length as resumed.
    #[serde(default)]
    pub iterations: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DivergedRecord {
    #[serde(default)]
    pub diverged: bool,
    /// The iteration whose loss was not finite.
    pub iteration: Option<usize>,
}

/// A run's headline figures: the latest training window's loss and accuracy
/// and the latest evaluation. `summary.json` and a checkpoint carry them, and
/// the report shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Headline {
    pub train_loss: Option<f64>,
    pub train_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub test_accuracy: Option<f64>,
    pub test_top5_accuracy: Option<f64>,
}

impl Headline {
    /// Each figure by its key in `summary.json` and a checkpoint's metadata.
    pub fn named(&self) -> [(&'static str, Option<f64>); 5] {
        [
            ("train_loss", self.train_loss),
            ("train_accuracy", self.train_accuracy),
            ("test_loss", self.test_loss),
            ("test_accuracy", self.test_accuracy),
            ("test_top5_accuracy", self.test_top5_accuracy),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_carry_their_kind_first_and_read_back_as_written() {
        let train = Record::Train(TrainRecord { iteration: 3, epoch: Some(0), loss: Some(0.5), lr: Some(0.1), ..Default::default() });
        let line = serde_json::to_string(&train).unwrap();
        assert_eq!(line, r#"{"kind":"train","iteration":3,"epoch":0,"loss":0.5,"lr":0.1}"#);
        assert_eq!(serde_json::from_str::<Record>(&line).unwrap(), train);
        let diverged =
            Record::Train(TrainRecord { iteration: 4, epoch: Some(0), loss: Some(f64::NAN), diverged: true, ..Default::default() });
        let line = serde_json::to_string(&diverged).unwrap();
        assert_eq!(line, r#"{"kind":"train","iteration":4,"epoch":0,"loss":null,"lr":null,"diverged":true}"#);
        assert!(matches!(serde_json::from_str(r#"{"kind":"checkpoint","iteration":1}"#).unwrap(), Record::Other));
    }
}
