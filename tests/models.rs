//! The ResNet family's architecture: parameter totals against the published
//! ones, PyTorch's parameter names, depth validation, output shapes; VGG-16.

use kappa::autograd::Tape;
use kappa::backend::cpu::Cpu;
use kappa::models::{Family, Model, ResNet, ResNetConfig, ShortcutKind, Variant, Vgg16, VARIANTS};
use kappa::nn::Weights;
use kappa::tensor::Tensor;

type B = Cpu<f32>;

fn params(variant: Variant, family: Family, depth: usize, classes: usize) -> usize {
    ResNet::<B>::new(&Cpu::new(), ResNetConfig::new(variant, family, depth, classes), 0, Weights::Zero).unwrap().store().count()
}

#[test]
fn parameter_totals_match_the_published_ones() {
    // He et al. 2016 (CIFAR, type A) quote millions to two significant figures;
    // torchvision's ImageNet totals are exact.
    for (depth, millions) in [(20, 0.27), (56, 0.85), (110, 1.7), (1202, 19.4)] {
        let n = params(Variant::Resnet, Family::Cifar, depth, 10) as f64 / 1e6;
        let digits = if millions < 1.0 { 0.005 } else { 0.05 };
        assert!((n - millions).abs() < digits, "ResNet-{depth}: {n:.4}M parameters, published {millions}M");
    }
    assert_eq!(params(Variant::Resnet, Family::Cifar, 20, 10), 269_722);
    // Type B adds the two 1×1 projections with their BNs: 16·32 + 64 + 32·64 + 128.
    let b = ResNet::<B>::new(
        &Cpu::new(),
        ResNetConfig { shortcut: ShortcutKind::B, ..ResNetConfig::new(Variant::Resnet, Family::Cifar, 20, 10) },
        0,
        Weights::Zero,
    );
    assert_eq!(b.unwrap().store().count(), 269_722 + 2752);
    assert_eq!(params(Variant::Resnet, Family::Imagenet, 18, 1000), 11_689_512);
    assert_eq!(params(Variant::Resnet, Family::Imagenet, 50, 1000), 25_557_032);
    // The last BN adds 2 × 64 (CIFAR) parameters and nothing else.
    assert_eq!(params(Variant::ResnetLastbn, Family::Cifar, 20, 10), 269_722 + 128);
    // Type-A VGG and ResNet share every parameter; dropping BN drops 2 × 16 per
    // channel of the 19 convs' BNs (16·7 + 32·6 + 64·6 = 688 channels).
    assert_eq!(params(Variant::Vgg, Family::Cifar, 20, 10), 269_722);
    assert_eq!(params(Variant::VggNobn, Family::Cifar, 20, 10), 269_722 - 2 * 688);
    assert_eq!(params(Variant::VggNobnLastbn, Family::Cifar, 20, 10), 269_722 - 2 * 688 + 128);
}

#[test]
fn vgg16_has_sixteen_weight_layers_and_the_bn_vgg16_parameter_count() {
    let be = Cpu::<f32>::new();
    let mut m = Vgg16::<B>::new(&be, 3, 64, 10, 0, Weights::Drawn).unwrap();
    assert_eq!(m.store().layers(), 16);
    // Convs 14,710,464 weights + their BNs 2 × 4,224; two 512×512 hidden layers
    // with BN, no bias; 512×10 + 10 classifier.
    let convs: usize = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
        .iter()
        .chain(&[(256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)])
        .map(|&(i, o)| 9 * i * o + 2 * o)
        .sum();
    assert_eq!(m.store().count(), convs + 2 * (512 * 512 + 2 * 512) + 512 * 10 + 10);
    let frozen_bn = m.store().params().iter().filter(|p| p.layer == 3).count();
    assert_eq!(frozen_bn, 3, "layer 3 is a conv weight with its BN's γ and β");
    let mut tape = Tape::new(&be);
    let x = tape.constant(Tensor::full(&be, &[2, 3, 32, 32], 0.5).unwrap());
    let y = m.forward(&mut tape, x, true).unwrap();
    assert_eq!(tape.shape(y), &[2, 10]);
    let small = tape.constant(Tensor::full(&be, &[2, 3, 16, 16], 0.5).unwrap());
    let err = m.forward(&mut tape, small, false).err().unwrap().to_string();
    assert!(err.contains("vgg16") && err.contains("H ≥ 32"), "{err}");
    // A quarter of the width: every conv a sixteenth of the weights, BNs a quarter.
    let narrow = Vgg16::<B>::new(&be, 3, 16, 10, 0, Weights::Zero).unwrap().store().count();
    let convs16: usize = [(3, 16), (16, 16), (16, 32), (32, 32), (32, 64), (64, 64), (64, 64)]
        .iter()
        .chain(&[(64, 128), (128, 128), (128, 128), (128, 128), (128, 128), (128, 128)])
        .map(|&(i, o)| 9 * i * o + 2 * o)
        .sum();
    assert_eq!(narrow, convs16 + 2 * (128 * 128 + 2 * 128) + 128 * 10 + 10);
    assert!(Vgg16::<B>::new(&be, 3, 0, 10, 0, Weights::Zero).err().unwrap().to_string().contains("--base-width"));
}

#[test]
fn names_follow_torchvision() {
    let m = ResNet::<B>::new(&Cpu::new(), ResNetConfig::new(Variant::Resnet, Family::Imagenet, 18, 1000), 0, Weights::Zero).unwrap();
    let names: Vec<&str> = m.store().params().iter().map(|p| p.name.as_str()).collect();
    for want in [
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "layer1.1.bn2.bias",
        "layer2.0.downsample.0.weight",
        "layer2.0.downsample.1.weight",
        "layer4.1.conv2.weight",
        "fc.weight",
        "fc.bias",
    ] {
        assert!(names.contains(&want), "no parameter {want}");
    }
    let buffers: Vec<&str> = m.store().buffers().iter().map(|(n, _)| n.as_str()).collect();
    assert!(buffers.contains(&"bn1.running_mean") && buffers.contains(&"layer3.1.bn1.running_var"));
    let w = m.store().params().iter().find(|p| p.name == "layer2.0.downsample.0.weight").unwrap();
    assert_eq!(w.value.shape(), &[128, 64, 1, 1]);
}

#[test]
fn layers_count_convs_and_the_last_linear() {
    // depth = weight layers on the main path: 6n+2 convs and fc.
    let m = ResNet::<B>::new(&Cpu::new(), ResNetConfig::new(Variant::Resnet, Family::Cifar, 20, 10), 0, Weights::Drawn).unwrap();
    assert_eq!(m.store().layers(), 20);
    let fc = m.store().params().iter().find(|p| p.name == "fc.weight").unwrap();
    assert_eq!(fc.layer, 20);
    let tau = ResNet::<B>::new(&Cpu::new(), ResNetConfig::new(Variant::TauResnetNobn, Family::Cifar, 20, 10), 0, Weights::Drawn).unwrap();
    let t = tau.store().params().iter().find(|p| p.name == "tau").unwrap();
    assert!((t.value.scalar(&Cpu::new()).unwrap() - 1.0 / 3.0).abs() < 1e-7, "τ = 1/√9 blocks");
    assert_eq!((t.lr_scale, t.grad_scale), (0.1, 1.0 / 9.0));
    let biases = tau.store().params().iter().filter(|p| p.name.contains(".bias") && p.value.numel() == 1).count();
    assert_eq!(biases, 9 * 4, "four Fixup biases per basic block");
}

#[test]
fn bad_depths_are_argument_errors() {
    for (family, depth) in [(Family::Cifar, 21), (Family::Cifar, 2), (Family::Imagenet, 20)] {
        let err = ResNet::<B>::new(&Cpu::new(), ResNetConfig::new(Variant::Resnet, family, depth, 10), 0, Weights::Zero)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("--depth") && err.contains(&depth.to_string()), "{err}");
    }
}

#[test]
fn every_variant_maps_images_to_logits() {
    let be = Cpu::<f32>::new();
    for &(variant, name, _) in VARIANTS {
        assert_eq!(Variant::from_name(name), Some(variant));
        let mut m = ResNet::<B>::new(&be, ResNetConfig::new(variant, Family::Cifar, 8, 7), 1, Weights::Drawn).unwrap();
        for train in [true, false] {
            let mut tape = Tape::new(&be);
            let x = tape.constant(Tensor::full(&be, &[2, 3, 12, 12], 0.5).unwrap());
            let y = m.forward(&mut tape, x, train).unwrap();
            assert_eq!(tape.shape(y), &[2, 7], "{name}");
            assert!(tape.value(y).to_f64s(&be).unwrap().iter().all(|v| v.is_finite()), "{name}");
        }
    }
}
