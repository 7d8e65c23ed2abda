//! What a run measured, in one line for `kappa reproduce` to print beside the
//! paper's expectation: the layer-wise conditioning at its last analysis.

use serde_json::Value;
use std::path::Path;

/// Geometric mean of the finite positive values.
fn geometric_mean(values: impl Iterator<Item = f64>) -> Option<f64> {
    let logs: Vec<f64> = values.filter(|v| v.is_finite() && *v > 0.0).map(f64::ln).collect();
    (!logs.is_empty()).then(|| (logs.iter().sum::<f64>() / logs.len() as f64).exp())
}

/// The last analysis of the run in `dir` summarised: κ_50% of Σx and Σ∇h
/// (geometric mean over layers) and λmax(Σ∇h) at the first and last layer;
/// `None` when the run has no analysis records.
pub fn conditioning(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("metrics.jsonl")).ok()?;
    let records: Vec<Value> =
        text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter(|r| r["kind"] == "analysis").collect();
    let at = records.iter().filter_map(|r| r["iteration"].as_u64()).max()?;
    let mut layers: Vec<&Value> = records.iter().filter(|r| r["iteration"].as_u64() == Some(at)).collect();
    layers.sort_by_key(|r| r["index"].as_u64());
    let kappa = |m: &str| geometric_mean(layers.iter().filter_map(|r| r[m]["kappa"]["50"].as_f64()));
    let grad_lambda = |r: Option<&&Value>| r.and_then(|r| r["sigma_grad"]["lambda_max"].as_f64());
    let show = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.3e}"));
    Some(format!(
        "iteration {at}: κ50%(Σx) {}, κ50%(Σ∇h) {} (geometric means over {} layers); λmax(Σ∇h) first layer {}, last {}",
        show(kappa("sigma_x")),
        show(kappa("sigma_grad")),
        layers.len(),
        show(grad_lambda(layers.first())),
        show(grad_lambda(layers.last())),
    ))
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
                r#"{{"kind":"analysis","iteration":{it},"index":{index},"sigma_x":{{"kappa":{{"50":{kx}}}}},"sigma_grad":{{"lambda_max":{lg},"kappa":{{"50":{kg}}}}}}}"#
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
        let line = conditioning(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            line,
            "iteration 10: κ50%(Σx) 1.000e1, κ50%(Σ∇h) 3.000e0 (geometric means over 2 layers); λmax(Σ∇h) first layer 2.000e-3, last 5.000e-1"
        );
        assert!(conditioning(Path::new("/nonexistent/kappa")).is_none());
    }
}
