//! Command-line flags of the two LuckMatters experiments, turned into validated configs.
//! Every flag left out keeps the published setting (or the CI one with `--ci`).

use crate::error::Result;
use crate::luckmatters::matrix::MatrixConfig;
use crate::luckmatters::recon::{ReconConfig, ReconLoss};
use std::path::PathBuf;

/// `recon_multilayer.py`: a wide student trained on a teacher's outputs.
#[derive(Clone, Debug, clap::Args)]
pub struct ReconArgs {
    /// Start from the reduced CI setting instead of the published one
    #[arg(long)]
    pub ci: bool,
    /// Student hidden width as a multiple of the teacher's [default: 10]
    #[arg(long)]
    pub node_multi: Option<usize>,
    /// Batch norm after every student hidden ReLU
    #[arg(long)]
    pub bn: bool,
    /// mse: to the teacher's output; ce: cross-entropy to its argmax [default: mse]
    #[arg(long, value_enum)]
    pub loss: Option<ReconLoss>,
    /// Start the student at the teacher plus N(0, σ²) noise
    #[arg(long, value_name = "SIGMA", allow_hyphen_values = true)]
    pub perturb: Option<f64>,
    /// Rescale every student row (with its bias) to unit norm after every step
    #[arg(long)]
    pub normalize: bool,
    /// [default: 40]
    #[arg(long)]
    pub epochs: Option<usize>,
    /// [default: 0.05]
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// [default: 64]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// [default: 100000]
    #[arg(long)]
    pub train_samples: Option<usize>,
    /// [default: 1024]
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Evaluation samples the correlations are measured on [default: 192]
    #[arg(long)]
    pub corr_samples: Option<usize>,
    /// Draw a fresh training set every epoch
    #[arg(long)]
    pub regenerate: bool,
    /// Input dimension [default: 20]
    #[arg(long)]
    pub input_dim: Option<usize>,
    /// Standard deviation of every input coordinate [default: 10]
    #[arg(long, allow_hyphen_values = true)]
    pub data_std: Option<f64>,
    /// Teacher hidden widths, bottom first [default: 10,15,20,25]
    #[arg(long, value_delimiter = ',')]
    pub hidden: Option<Vec<usize>>,
    /// Output dimension [default: 100]
    #[arg(long)]
    pub output_dim: Option<usize>,
    /// [default: 124]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run directory for config.json and metrics.jsonl
    #[arg(long, default_value = "runs/luckmatters-recon")]
    pub out: PathBuf,
}

impl ReconArgs {
    /// The configuration and the run directory, or an error naming the bad flag.
    pub fn into_config(self) -> Result<(ReconConfig, PathBuf)> {
        let mut c = if self.ci { ReconConfig::ci() } else { ReconConfig::default() };
        c.bn |= self.bn;
        c.normalize |= self.normalize;
        c.regenerate |= self.regenerate;
        c.perturb = self.perturb.or(c.perturb);
        set(&mut c.node_multi, self.node_multi);
        set(&mut c.loss, self.loss);
        set(&mut c.epochs, self.epochs);
        set(&mut c.lr, self.lr);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.train_samples, self.train_samples);
        set(&mut c.eval_samples, self.eval_samples);
        set(&mut c.corr_samples, self.corr_samples);
        set(&mut c.input_dim, self.input_dim);
        set(&mut c.data_std, self.data_std);
        set(&mut c.hidden, self.hidden);
        set(&mut c.output_dim, self.output_dim);
        set(&mut c.seed, self.seed);
        c.validate()?;
        Ok((c, self.out))
    }
}

/// `test_multilayer.py`: closed-form projected gradient on weight matrices.
#[derive(Clone, Debug, clap::Args)]
pub struct MatrixArgs {
    /// Start from the reduced CI setting instead of the published one
    #[arg(long)]
    pub ci: bool,
    /// Teacher widths, input first [default: 10,20,30]
    #[arg(long, value_delimiter = ',')]
    pub sizes: Option<Vec<usize>>,
    /// Student hidden width as a multiple of the teacher's [default: 2]
    #[arg(long)]
    pub node_multi: Option<usize>,
    /// Start the student from noise alone instead of the teacher plus noise
    #[arg(long)]
    pub no_perturb: bool,
    /// Standard deviation of the initial weights (the noise on the teacher) [default: 0.1]
    #[arg(long, allow_hyphen_values = true)]
    pub init_std: Option<f64>,
    /// [default: 0.05]
    #[arg(long, allow_hyphen_values = true)]
    pub lr: Option<f64>,
    /// [default: 64]
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// [default: 20000]
    #[arg(long)]
    pub iterations: Option<usize>,
    /// Log W_row_norm and the correlations every N iterations [default: 100]
    #[arg(long, value_name = "N")]
    pub log_every: Option<usize>,
    /// [default: 1024]
    #[arg(long)]
    pub eval_samples: Option<usize>,
    /// Form L and H per sample and average the steps (the original's --use_accurate_grad; slow)
    #[arg(long)]
    pub per_sample: bool,
    /// [default: 232]
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run directory for config.json and metrics.jsonl
    #[arg(long, default_value = "runs/luckmatters-matrix")]
    pub out: PathBuf,
}

impl MatrixArgs {
    /// The configuration and the run directory, or an error naming the bad flag.
    pub fn into_config(self) -> Result<(MatrixConfig, PathBuf)> {
        let mut c = if self.ci { MatrixConfig::ci() } else { MatrixConfig::default() };
        c.perturb &= !self.no_perturb;
        c.per_sample |= self.per_sample;
        set(&mut c.sizes, self.sizes);
        set(&mut c.node_multi, self.node_multi);
        set(&mut c.init_std, self.init_std);
        set(&mut c.lr, self.lr);
        set(&mut c.batch_size, self.batch_size);
        set(&mut c.iterations, self.iterations);
        set(&mut c.log_every, self.log_every);
        set(&mut c.eval_samples, self.eval_samples);
        set(&mut c.seed, self.seed);
        c.validate()?;
        Ok((c, self.out))
    }
}

fn set<T>(field: &mut T, given: Option<T>) {
    if let Some(v) = given {
        *field = v;
    }
}
