//! The ResNet family's members, by the names the command line knows them by.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// Post-activation ResNet (He et al. 2016a).
    Resnet,
    /// Pre-activation ResNet with a final BN+ReLU before pooling (He et al. 2016b).
    Preresnet,
    /// PreResNet without that final BN (the paper's PreResNetv1).
    PreresnetV1,
    /// ResNet with a 1-D BN between the pooled features and the last linear layer (the paper's fix).
    ResnetLastbn,
    /// The ResNet with its shortcuts removed.
    Vgg,
    VggLastbn,
    /// The VGG without batch norm (Table A2's VGG rows).
    VggNobn,
    /// No BN but the one before the last linear layer.
    VggNobnLastbn,
    /// The ResNet with every BN removed.
    ResnetNobn,
    /// No BN but the one before the last linear layer.
    ResnetNobnLastbn,
    /// The residual branch scaled by a fixed τ after its last BN (tau-ResNet).
    TauResnet,
    /// No BN; Fixup scalar biases and one learnable τ shared by all blocks.
    TauResnetNobn,
}

/// Every variant with its CLI name and a one-line description.
pub const VARIANTS: &[(Variant, &str, &str)] = &[
    (Variant::Resnet, "resnet", "post-activation ResNet; --shortcut a|b"),
    (Variant::Preresnet, "preresnet", "pre-activation ResNet, final BN+ReLU before pooling"),
    (Variant::PreresnetV1, "preresnet-v1", "pre-activation ResNet without the final BN"),
    (Variant::ResnetLastbn, "resnet-lastbn", "ResNet with a BN before the last linear layer; --lastbn-gamma one|uniform"),
    (Variant::Vgg, "vgg", "the ResNet without shortcuts"),
    (Variant::VggLastbn, "vgg-lastbn", "VGG with a BN before the last linear layer"),
    (Variant::VggNobn, "vgg-nobn", "VGG without batch norm"),
    (Variant::VggNobnLastbn, "vgg-nobn-lastbn", "VGG without batch norm but the one before the last linear layer"),
    (Variant::ResnetNobn, "resnet-nobn", "ResNet without batch norm"),
    (Variant::ResnetNobnLastbn, "resnet-nobn-lastbn", "ResNet without batch norm but the one before the last linear layer"),
    (Variant::TauResnet, "tau-resnet", "residual branches scaled by τ (default 1/√blocks, --tau)"),
    (Variant::TauResnetNobn, "tau-resnet-nobn", "no BN; Fixup scalar biases and one learnable τ, scalars at lr/10"),
];

impl Variant {
    pub fn from_name(name: &str) -> Option<Self> {
        VARIANTS.iter().find(|(_, n, _)| *n == name).map(|(v, _, _)| *v)
    }

    pub fn name(self) -> &'static str {
        VARIANTS.iter().find(|(v, _, _)| *v == self).map_or("?", |(_, n, _)| n)
    }

    /// Batch norm inside the blocks and the stem.
    pub fn block_bn(self) -> bool {
        !matches!(
            self,
            Variant::ResnetNobn | Variant::ResnetNobnLastbn | Variant::VggNobn | Variant::VggNobnLastbn | Variant::TauResnetNobn
        )
    }

    pub fn last_bn(self) -> bool {
        matches!(self, Variant::ResnetLastbn | Variant::VggLastbn | Variant::ResnetNobnLastbn | Variant::VggNobnLastbn)
    }

    pub fn shortcuts(self) -> bool {
        !matches!(self, Variant::Vgg | Variant::VggLastbn | Variant::VggNobn | Variant::VggNobnLastbn)
    }

    pub fn pre_activation(self) -> bool {
        matches!(self, Variant::Preresnet | Variant::PreresnetV1)
    }

    pub fn final_bn(self) -> bool {
        self == Variant::Preresnet
    }

    pub fn tau(self) -> bool {
        matches!(self, Variant::TauResnet | Variant::TauResnetNobn)
    }

    pub fn fixup(self) -> bool {
        self == Variant::TauResnetNobn
    }
}
