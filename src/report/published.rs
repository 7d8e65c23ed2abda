//! The published test errors (%) a run's setting is compared with: the
//! layer-wise conditioning paper's Tables 1, 2, A1 and A2, and the tau-ResNet
//! paper's CIFAR-10 table for runs of its recipe.

/// What identifies a published number: the run's dataset, model and depth,
/// and the knobs the tables vary.
#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub data: String,
    pub model: String,
    pub depth: usize,
    pub weight_decay: f64,
    pub dropout: f64,
    pub preset: Option<String>,
}

impl Setting {
    /// The setting of a run's training configuration (`config.json`'s `train`).
    pub fn of(config: &serde_json::Value) -> Option<Setting> {
        Some(Setting {
            data: config["data"].as_str()?.to_string(),
            model: config["model"].as_str()?.to_string(),
            depth: config["depth"].as_u64()? as usize,
            weight_decay: config["weight_decay"].as_f64()?,
            dropout: config["arch"]["dropout"].as_f64().unwrap_or(0.0),
            preset: config["preset"].as_str().map(str::to_string),
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Published {
    /// Test error in percent (top-1 on ImageNet).
    pub error: f64,
    pub source: &'static str,
}

const TABLE1_DEPTHS: [usize; 4] = [56, 110, 230, 1202];
/// CIFAR-10 (Table 1) and CIFAR-100 (Table 2), mean over 5 seeds.
const TABLE1: &[(&str, [f64; 4])] = &[
    ("resnet", [7.52, 6.89, 7.35, 9.42]),
    ("preresnet", [6.89, 6.25, 6.12, 6.07]),
    ("preresnet-v1", [6.75, 6.37, 6.32, 7.89]),
    ("resnet-lastbn", [6.50, 6.10, 5.94, 5.68]),
];
const TABLE2: &[(&str, [f64; 4])] = &[
    ("resnet", [29.60, 28.3, 29.25, 30.49]),
    ("preresnet", [29.29, 27.58, 26.72, 26.23]),
    ("preresnet-v1", [29.60, 28.54, 27.92, 30.07]),
    ("resnet-lastbn", [28.82, 27.05, 25.80, 25.51]),
];
const TABLE_A2_DEPTHS: [usize; 4] = [20, 44, 56, 110];
/// CIFAR-10 without BN but the named one (the table's VGG rows are BN-free,
/// kappa's `vgg-nobn`; its `vgg` keeps the ResNet's BN).
const TABLE_A2: &[(&str, [f64; 4])] = &[
    ("vgg-nobn", [14.88, 33.90, 89.93, 90.0]),
    ("vgg-nobn-lastbn", [12.89, 18.40, 23.40, 73.99]),
    ("resnet-nobn", [11.21, 9.90, 9.48, 8.93]),
    ("resnet-nobn-lastbn", [10.31, 8.99, 8.61, 8.37]),
];
const TAU_DEPTHS: [usize; 5] = [20, 32, 56, 110, 1202];
/// The tau-ResNet paper's CIFAR-10 errors: ResNet with BN, and with τ.
const TAU: &[(&str, [f64; 5])] = &[("resnet", [8.08, 7.39, 6.73, 6.61, 6.93]), ("tau-resnet", [7.89, 7.16, 6.18, 5.83, 5.01])];
/// ImageNet top-1 (Table A1), depths 18 and 50: standard, wd 2e-4, dropout 0.3.
const TABLE_A1: &[(&str, [[f64; 3]; 2])] =
    &[("resnet", [[29.78, 30.07, 30.62], [23.97, 24.37, 23.81]]), ("resnet-lastbn", [[29.38, 28.96, 29.32], [23.76, 23.49, 23.47]])];

fn lookup<const N: usize>(table: &[(&str, [f64; N])], depths: [usize; N], model: &str, depth: usize) -> Option<f64> {
    let column = depths.iter().position(|&d| d == depth)?;
    table.iter().find(|(m, _)| *m == model).map(|(_, row)| row[column])
}

/// The published test error of `s`'s setting, if a table has it.
pub fn test_error(s: &Setting) -> Option<Published> {
    let at = |error, source| Some(Published { error, source });
    match s.data.as_str() {
        "cifar10" if s.preset.as_deref() == Some("tau-cifar") => {
            at(lookup(TAU, TAU_DEPTHS, &s.model, s.depth)?, "tau-ResNet paper, CIFAR-10")
        }
        "cifar10" => match lookup(TABLE1, TABLE1_DEPTHS, &s.model, s.depth) {
            Some(e) => at(e, "Table 1 (CIFAR-10)"),
            None => at(lookup(TABLE_A2, TABLE_A2_DEPTHS, &s.model, s.depth)?, "Table A2 (CIFAR-10, no BN)"),
        },
        "cifar100" => at(lookup(TABLE2, TABLE1_DEPTHS, &s.model, s.depth)?, "Table 2 (CIFAR-100)"),
        "imagenet" => {
            let row = TABLE_A1.iter().find(|(m, _)| *m == s.model)?.1;
            let by_depth = row[[18, 50].iter().position(|&d| d == s.depth)?];
            let column = [(1e-4, 0.0), (2e-4, 0.0), (1e-4, 0.3)].iter().position(|&c| c == (s.weight_decay, s.dropout))?;
            at(by_depth[column], "Table A1 (ImageNet top-1)")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting(data: &str, model: &str, depth: usize) -> Setting {
        Setting { data: data.into(), model: model.into(), depth, weight_decay: 1e-4, dropout: 0.0, preset: None }
    }

    #[test]
    fn tables_by_dataset_model_depth_and_recipe() {
        let e = |s: &Setting| test_error(s).map(|p| p.error);
        assert_eq!(e(&setting("cifar10", "resnet-lastbn", 1202)), Some(5.68));
        assert_eq!(e(&setting("cifar100", "preresnet", 110)), Some(27.58));
        assert_eq!(e(&setting("cifar10", "resnet-nobn", 44)), Some(9.90));
        assert_eq!(e(&setting("cifar10", "vgg-nobn-lastbn", 56)), Some(23.40));
        assert_eq!(e(&setting("cifar10", "vgg", 56)), None, "BN VGG is not in Table A2");
        assert_eq!(e(&setting("cifar10", "resnet", 20)), None, "Table 1 starts at 56");
        let tau = Setting { preset: Some("tau-cifar".into()), ..setting("cifar10", "tau-resnet", 110) };
        assert_eq!(e(&tau), Some(5.83));
        assert_eq!(e(&Setting { model: "resnet".into(), ..tau }), Some(6.61), "the tau paper's own baseline");
        assert_eq!(e(&setting("imagenet", "resnet-lastbn", 50)), Some(23.76));
        assert_eq!(e(&Setting { weight_decay: 2e-4, ..setting("imagenet", "resnet", 18) }), Some(30.07));
        assert_eq!(e(&Setting { dropout: 0.3, ..setting("imagenet", "resnet", 50) }), Some(23.81));
        assert_eq!(e(&Setting { dropout: 0.5, ..setting("imagenet", "resnet", 50) }), None);
        assert_eq!(e(&setting("mnist", "mlp", 20)), None);
    }
}
