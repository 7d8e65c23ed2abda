//! The published training recipes as named presets (`kappa train --preset
//! NAME`). A preset only changes defaults: any flag given on the command line
//! still wins, so every number stays overridable.

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Recipe {
    pub name: &'static str,
    pub about: &'static str,
    /// `(flag, value)` as the command line spells them, e.g. `("weight-decay",
    /// "1e-4")`: a base recipe, then what this one changes.
    layers: &'static [&'static [(&'static str, &'static str)]],
}

impl Recipe {
    /// Every flag the recipe sets, later layers overriding earlier ones.
    pub fn defaults(&self) -> Vec<(&'static str, &'static str)> {
        let mut merged: Vec<(&str, &str)> = Vec::new();
        for &(flag, value) in self.layers.iter().flat_map(|l| l.iter()) {
            match merged.iter_mut().find(|(f, _)| *f == flag) {
                Some(slot) => slot.1 = value,
                None => merged.push((flag, value)),
            }
        }
        merged
    }

    /// Refuses `data` outside the family of images this recipe was made for:
    /// an ImageNet recipe crops 224 pixels and normalises by ImageNet's
    /// statistics, a CIFAR one pads 32×32 images and normalises by CIFAR's,
    /// and neither sets the other's part, so they would mix.
    pub fn check_data(&self, data: &str) -> Result<()> {
        if self.made_for(data) {
            return Ok(());
        }
        let fitting: Vec<&str> = RECIPES.iter().filter(|r| r.made_for(data)).map(|r| r.name).collect();
        let instead = match fitting.as_slice() {
            [] => format!("no preset is made for {data}"),
            names => format!("presets for {data}: {}", names.join(", ")),
        };
        let own = self.defaults().into_iter().find(|&(flag, _)| flag == "data").map_or("", |(_, v)| v);
        let detail = format!(
            "{data} does not fit --preset {}, a recipe for {own}'s images, whose settings would mix with another set's; {instead}",
            self.name
        );
        Err(Error::arg("--data", detail))
    }

    /// Whether `data` is of the family this recipe's own dataset is.
    fn made_for(&self, data: &str) -> bool {
        self.defaults().iter().any(|&(flag, v)| flag == "data" && family(v) == family(data))
    }
}

/// Datasets whose images share a shape and a recipe.
fn family(data: &str) -> &str {
    match data {
        "cifar10" | "cifar100" | "synthetic-cifar" => "cifar10",
        "synthetic" => "mnist",
        other => other,
    }
}

/// fb.resnet.torch's CIFAR recipe (He et al. 2016's schedule).
const FB_CIFAR: &[(&str, &str)] = &[
    ("model", "resnet"),
    ("data", "cifar10"),
    ("optimizer", "sgd"),
    ("lr", "0.1"),
    ("momentum", "0.9"),
    ("nesterov", "true"),
    ("weight-decay", "1e-4"),
    ("batch-size", "128"),
    ("epochs", "164"),
    ("schedule", "multistep:81,122"),
    ("augment", "true"),
    ("padding", "zero"),
    ("normalize", "fb-resnet"),
    ("drop-last", "false"),
];

/// The layer-wise conditioning paper's CIFAR scripts.
const LCA_CIFAR: &[(&str, &str)] = &[("epochs", "160"), ("schedule", "multistep:80,120"), ("padding", "reflect"), ("drop-last", "true")];

/// The tau-ResNet scripts: ×0.1 at 100 and again at 150, plain momentum.
const TAU_CIFAR: &[(&str, &str)] =
    &[("model", "tau-resnet"), ("nesterov", "false"), ("epochs", "200"), ("schedule", "multistep:100,150"), ("normalize", "tau-resnet")];

/// fb.resnet.torch's ImageNet recipe: 90 epochs, ×0.1 every 30.
const FB_IMAGENET: &[(&str, &str)] = &[
    ("model", "resnet"),
    ("data", "imagenet"),
    ("depth", "18"),
    ("optimizer", "sgd"),
    ("lr", "0.1"),
    ("momentum", "0.9"),
    ("nesterov", "true"),
    ("weight-decay", "1e-4"),
    ("batch-size", "256"),
    ("epochs", "90"),
    ("schedule", "multistep:30,60"),
    ("augment", "true"),
    ("normalize", "imagenet"),
    ("drop-last", "false"),
];

/// The paper's ImageNet runs: 100 epochs with an extra drop at 90.
const LCA_IMAGENET: &[(&str, &str)] = &[("epochs", "100"), ("schedule", "multistep:30,60,90")];

pub const RECIPES: &[Recipe] = &[
    Recipe {
        name: "fb-cifar",
        about: "fb.resnet CIFAR: Nesterov, wd 1e-4, lr 0.1, batch 128, 164 epochs ×0.1 at 81/122, zero pad 4 + crop + flip",
        layers: &[FB_CIFAR],
    },
    Recipe {
        name: "lca-cifar",
        about: "the paper's CIFAR scripts: fb-cifar with 160 epochs ×0.1 at 80/120, reflect pad, last short batch dropped",
        layers: &[FB_CIFAR, LCA_CIFAR],
    },
    Recipe {
        name: "tau-cifar",
        about: "tau-ResNet CIFAR: fb-cifar with 200 epochs ×0.1 at 100/150, no Nesterov, its normalisation",
        layers: &[FB_CIFAR, TAU_CIFAR],
    },
    Recipe {
        name: "fb-imagenet",
        about: "fb.resnet ImageNet: ResNet-18, batch 256, lr 0.1, 90 epochs ×0.1 every 30",
        layers: &[FB_IMAGENET],
    },
    Recipe {
        name: "lca-imagenet",
        about: "the paper's ImageNet runs: fb-imagenet with 100 epochs, ×0.1 at 30/60/90",
        layers: &[FB_IMAGENET, LCA_IMAGENET],
    },
];

pub fn find(name: &str) -> Result<&'static Recipe> {
    RECIPES.iter().find(|r| r.name == name).ok_or_else(|| {
        let names: Vec<&str> = RECIPES.iter().map(|r| r.name).collect();
        Error::arg("--preset", format!("unknown preset '{name}'; expected one of {}", names.join(", ")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_names_list_the_known_ones() {
        assert_eq!(find("lca-cifar").unwrap().name, "lca-cifar");
        let err = find("fb-mnist").unwrap_err().to_string();
        assert!(err.contains("--preset") && err.contains("fb-mnist") && err.contains("tau-cifar, fb-imagenet"), "{err}");
    }

    #[test]
    fn later_layers_override_the_base() {
        let lca = find("lca-cifar").unwrap().defaults();
        let get = |flag: &str| lca.iter().find(|d| d.0 == flag).map(|d| d.1);
        assert_eq!((get("epochs"), get("padding"), get("drop-last"), get("lr")), (Some("160"), Some("reflect"), Some("true"), Some("0.1")));
        assert_eq!(lca.len(), FB_CIFAR.len(), "overrides add no flags");
        let tau = find("tau-cifar").unwrap().defaults();
        assert!(tau.contains(&("nesterov", "false")) && tau.contains(&("schedule", "multistep:100,150")));
    }
}
