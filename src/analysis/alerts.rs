//! Flags a layer entering weight domination, a layer with more than half of
//! its neurons dead, and a ×10 jump of a condition number between analyses.

use super::record::{Alert, LayerRecord};
use super::spectrum::Spectrum;
use std::collections::{HashMap, HashSet};

pub struct Alerts {
    threshold: f64,
    dominated: HashSet<String>,
    dying: HashSet<String>,
    previous_kappa: HashMap<(String, String), f64>,
}

/// What the alerts remember between analyses, so a resumed run raises the same ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlertsState {
    pub dominated: Vec<String>,
    pub dying: Vec<String>,
    /// (layer, matrix, κ's bits: JSON would round a float and cannot hold a NaN)
    pub previous_kappa: Vec<(String, String, u64)>,
}

/// The condition number compared across analyses: κ_100 when finite, else
/// over the non-zero eigenvalues.
fn kappa(s: &Spectrum) -> Option<f64> {
    s.kappa.get("100").copied().flatten().or(s.kappa_nonzero)
}

impl Alerts {
    pub fn new(domination_threshold: f64) -> Self {
        Alerts { threshold: domination_threshold, dominated: HashSet::new(), dying: HashSet::new(), previous_kappa: HashMap::new() }
    }

    pub fn check(&mut self, r: &LayerRecord) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut raise =
            |alert: &str, detail: String| out.push(Alert { iteration: r.iteration, layer: r.layer.clone(), alert: alert.into(), detail });
        if let Some(w) = &r.weight {
            let now = w.ratio < self.threshold;
            if now && self.dominated.insert(r.layer.clone()) {
                raise("weight-domination", format!("σmax(∂L/∂W)/σmax(W) = {:.3e} < {:.0e}", w.ratio, self.threshold));
            } else if !now {
                self.dominated.remove(&r.layer);
            }
        }
        if let Some(n) = &r.neurons {
            let now = n.dead_fraction > 0.5;
            if now && self.dying.insert(r.layer.clone()) {
                raise("dead-neurons", format!("{:.0}% of {} ReLU units are dead", 100.0 * n.dead_fraction, n.units));
            } else if !now {
                self.dying.remove(&r.layer);
            }
        }
        for (name, s) in [("Σx", &r.sigma_x), ("Σ∇h", &r.sigma_grad)] {
            let Some(k) = kappa(s) else { continue };
            let key = (r.layer.clone(), name.to_string());
            if let Some(&before) = self.previous_kappa.get(&key) {
                if k >= 10.0 * before {
                    raise("kappa-jump", format!("κ({name}) rose ×{:.0} to {k:.3e}", k / before));
                }
            }
            self.previous_kappa.insert(key, k);
        }
        out
    }

    pub fn state(&self) -> AlertsState {
        let sorted = |set: &HashSet<String>| {
            let mut v: Vec<String> = set.iter().cloned().collect();
            v.sort();
            v
        };
        let mut previous_kappa: Vec<_> = self.previous_kappa.iter().map(|((l, m), k)| (l.clone(), m.clone(), k.to_bits())).collect();
        previous_kappa.sort();
        AlertsState { dominated: sorted(&self.dominated), dying: sorted(&self.dying), previous_kappa }
    }

    pub fn restore(&mut self, state: AlertsState) {
        self.dominated = state.dominated.into_iter().collect();
        self.dying = state.dying.into_iter().collect();
        self.previous_kappa = state.previous_kappa.into_iter().map(|(l, m, k)| ((l, m), f64::from_bits(k))).collect();
    }
}
