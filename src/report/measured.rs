//! What a run measured, one line per analysis mode, for `kappa reproduce` to
//! print beside the paper's expectation and the page to show first: the
//! layer-wise conditioning at the last analysis.

use super::read::Run;
use crate::analysis::LayerRecord;
use crate::lenient::known;

/// Geometric mean of the finite positive values (κ spans decades).
pub fn geometric_mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let logs: Vec<f64> = values.filter(|v| v.is_finite() && *v > 0.0).map(f64::ln).collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

/// Per analysis mode of `run` (labelled as in the plots), its last analysis
/// summarised: κ_50% of Σx and Σ∇h (geometric mean over layers) and
/// λmax(Σ∇h) at the first and last layer. Empty without analysis records.
pub fn conditioning(run: &Run) -> Vec<(String, String)> {
    let mut lines = Vec::new();
    for (label, records) in run.analysis_by_mode() {
        let Some(at) = records.iter().map(|r| r.iteration).max() else { continue };
        let mut layers: Vec<&LayerRecord> = records.into_iter().filter(|r| r.iteration == at).collect();
        layers.sort_by_key(|r| r.index);
        let kappa = |spectrum: fn(&LayerRecord) -> &crate::analysis::Spectrum| {
            geometric_mean(layers.iter().filter_map(|r| spectrum(r).kappa.get("50").copied().flatten()))
        };
        let grad_lambda = |r: Option<&&LayerRecord>| r.and_then(|r| known(r.sigma_grad.lambda_max));
        let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3e}"));
        let line = format!(
            "iteration {at}: κ50%(Σx) {}, κ50%(Σ∇h) {} (geometric means over {} layers); λmax(Σ∇h) first layer {}, last {}",
            show(kappa(|r| &r.sigma_x)),
            show(kappa(|r| &r.sigma_grad)),
            layers.len(),
            show(grad_lambda(layers.first())),
            show(grad_lambda(layers.last())),
        );
        lines.push((label, line));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_the_last_analysed_iteration_only() {
        let dir = std::env::temp_dir().join(format!("kappa-measured-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rec = |it: u64, index: u64, kx: f64, kg: f64, lg: f64| {
            format!(
                r#"{{"kind":"analysis","iteration":{it},"layer":"l{index}","index":{index},"sigma_x":{{"kappa":{{"50":{kx}}}}},"sigma_grad":{{"lambda_max":{lg},"kappa":{{"50":{kg}}}}}}}"#
            )
        };
        let lines = [
            rec(0, 1, 1e9, 1e9, 1e9),
            r#"{"kind":"train","iteration":5,"loss":1.0}"#.to_string(),
            rec(10, 2, 100.0, 9.0, 0.5),
            rec(10, 1, 1.0, 1.0, 2e-3),
            "not json".to_string(),
        ];
        std::fs::write(dir.join("metrics.jsonl"), lines.join("\n")).unwrap();
        let run = Run::load(&dir).unwrap();
        let name = run.name.clone();
        std::fs::write(dir.join("metrics.jsonl"), r#"{"kind":"train","iteration":5,"loss":1.0}"#).unwrap();
        let unanalysed = Run::load(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let line = "iteration 10: κ50%(Σx) 1.000e1, κ50%(Σ∇h) 3.000e0 (geometric means over 2 layers); λmax(Σ∇h) first layer 2.000e-3, last 5.000e-1";
        assert_eq!(conditioning(&run), vec![(name, line.to_string())]);
        assert!(conditioning(&unanalysed).is_empty());
    }
}
