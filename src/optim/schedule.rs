//! Learning-rate schedules, by epoch.

use crate::error::{Error, Result};
use std::str::FromStr;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` at each milestone epoch (0-based epoch index reached).
    Multistep {
        milestones: Vec<usize>,
        gamma: f64,
    },
}

impl Schedule {
    pub fn lr(&self, base: f64, epoch: usize) -> f64 {
        match self {
            Schedule::Constant => base,
            Schedule::Multistep { milestones, gamma } => base * gamma.powi(milestones.iter().filter(|&&m| epoch >= m).count() as i32),
        }
    }

    /// The milestones a run whose last epoch (0-based) is `last_epoch` never reaches.
    pub fn unreached(&self, last_epoch: usize) -> &[usize] {
        match self {
            Schedule::Constant => &[],
            Schedule::Multistep { milestones, .. } => &milestones[milestones.partition_point(|&m| m <= last_epoch)..],
        }
    }
}

impl FromStr for Schedule {
    type Err = Error;
    /// `constant` or `multistep:E1,E2[:gamma]` (gamma defaults to 0.1).
    fn from_str(s: &str) -> Result<Self> {
        let bad = |why: &str| Error::arg("--schedule", format!("'{s}': {why}; expected constant or multistep:E1,E2[:gamma]"));
        if s == "constant" {
            return Ok(Schedule::Constant);
        }
        let rest = s.strip_prefix("multistep:").ok_or_else(|| bad("unknown schedule"))?;
        let (epochs, gamma) = match rest.split(':').collect::<Vec<_>>()[..] {
            [e] => (e, 0.1),
            [e, g] => (e, g.parse::<f64>().map_err(|_| bad("gamma is not a number"))?),
            _ => return Err(bad("more than milestones and gamma")),
        };
        let milestones = epochs
            .split(',')
            .map(|e| e.trim().parse::<usize>().map_err(|_| bad("milestones must be whole epochs")))
            .collect::<Result<Vec<_>>>()?;
        match problem(&milestones, gamma) {
            Some(why) => Err(bad(why)),
            None => Ok(Schedule::Multistep { milestones, gamma }),
        }
    }
}

impl Schedule {
    /// What [`FromStr`] refuses, checked again in a saved configuration.
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::Multistep { milestones, gamma } => match problem(milestones, *gamma) {
                Some(why) => Err(Error::arg("--schedule", format!("multistep at epochs {milestones:?} by {gamma}: {why}"))),
                None => Ok(()),
            },
            Schedule::Constant => Ok(()),
        }
    }
}

fn problem(milestones: &[usize], gamma: f64) -> Option<&'static str> {
    if milestones.windows(2).any(|w| w[0] >= w[1]) {
        Some("milestones must increase")
    } else if !(gamma > 0.0 && gamma.is_finite()) {
        Some("gamma must be positive")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milestones_past_the_last_epoch_are_unreached() {
        let s: Schedule = "multistep:2,5,9".parse().unwrap();
        assert_eq!((s.unreached(9), s.unreached(5), s.unreached(4), s.unreached(0)), (&[][..], &[9][..], &[5, 9][..], &[2, 5, 9][..]));
        assert!(Schedule::Constant.unreached(0).is_empty());
    }

    #[test]
    fn multistep_decays_at_milestones() {
        let s: Schedule = "multistep:80,120".parse().unwrap();
        assert_eq!(s.lr(0.1, 79), 0.1);
        assert!((s.lr(0.1, 80) - 0.01).abs() < 1e-15);
        assert!((s.lr(0.1, 119) - 0.01).abs() < 1e-15);
        assert!((s.lr(0.1, 120) - 0.001).abs() < 1e-15);
        let s: Schedule = "multistep:2:0.5".parse().unwrap();
        assert_eq!(s.lr(1.0, 2), 0.5);
        assert_eq!("constant".parse::<Schedule>().unwrap().lr(0.3, 99), 0.3);
        for bad in ["step:1", "multistep:", "multistep:5,3", "multistep:a", "multistep:3:-1"] {
            assert!(bad.parse::<Schedule>().unwrap_err().to_string().contains("--schedule"), "{bad}");
        }
        // As a saved configuration may hold them, past the parser.
        assert!(Schedule::Multistep { milestones: vec![1, 2], gamma: 0.5 }.validate().is_ok());
        for (milestones, gamma, why) in [(vec![2, 1], 0.1, "increase"), (vec![1], -1.0, "positive"), (vec![1], f64::NAN, "positive")] {
            let e = Schedule::Multistep { milestones, gamma }.validate().unwrap_err().to_string();
            assert!(e.contains("--schedule") && e.contains(why), "{e}");
        }
    }
}
