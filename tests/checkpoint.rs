//! Checkpoints: the safetensors format (ours, by hand, by Python's package),
//! atomic writes, architecture checks, and resumed runs that continue bit for
//! bit where an uninterrupted run would be.

use kappa::backend::cpu::Cpu;
use kappa::backend::Backend;
use kappa::checkpoint::{self, HostTensor, RunState, TensorFile, Values, Window};
use kappa::train::{TrainConfig, Trainer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{assert_error, kappa, safetensors_python, scratch, succeed};

/// A small BN MLP on 256 synthetic examples: 8 batches of 32 per epoch.
const SMALL: &[&str] = &["--depth", "3", "--width", "16", "--bn", "--limit-train", "256", "--batch-size", "32", "--log-every", "5"];

/// The configuration `kappa train` writes for `SMALL` plus `extra` (built by
/// the binary, so it stays complete whatever options the config grows).
fn config(name: &str, extra: &[&str]) -> TrainConfig {
    let dir = scratch(name).join("run");
    let mut args = vec!["train", "--iterations", "0", "--analyze-every", "0", "--out", dir.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    succeed(&args);
    TrainConfig::load_run(&dir).unwrap()
}

fn trainer<B: Backend>(be: &B, cfg: &TrainConfig) -> Trainer<B> {
    Trainer::new(be, cfg, &[784], 10).unwrap()
}

fn batch(seed: u64) -> kappa::data::Batch {
    let images = (0..32 * 784).map(|i| (kappa::rng::hash3(seed, 0, i) % 1000) as f32 / 1000.0).collect();
    kappa::data::Batch { images, labels: (0..32).map(|i| (i * 7 + seed as u32) % 10).collect(), dims: vec![32, 784] }
}

/// Every parameter, buffer and optimiser buffer, by name, as raw values.
fn everything<B: Backend>(t: &Trainer<B>) -> BTreeMap<String, Vec<f64>> {
    let be = t.backend();
    let store = t.model().store();
    let mut out: BTreeMap<String, Vec<f64>> = store.params().iter().map(|p| (p.name.clone(), p.value.to_f64s(be).unwrap())).collect();
    out.extend(store.buffers().iter().map(|(n, v)| (n.clone(), v.to_f64s(be).unwrap())));
    let state = t.optimizer().state();
    for (id, bufs) in &state.slots {
        for (slot, buf) in t.optimizer().slot_names().iter().zip(bufs) {
            let values = be.download(buf).unwrap().into_iter().map(kappa::scalar::Scalar::to_f64).collect();
            out.insert(format!("{}.{slot}", store.param(*id).name), values);
        }
    }
    out.insert("step".into(), state.step.map(|s| vec![s as f64]).unwrap_or_default());
    out
}

fn bits(values: &BTreeMap<String, Vec<f64>>) -> BTreeMap<String, Vec<u64>> {
    values.iter().map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_bits()).collect())).collect()
}

fn run_state(iteration: usize) -> RunState {
    // A window the run could have logged: no more steps than it has taken.
    let steps = iteration.min(2);
    let loss = if steps == 0 { 0.0 } else { 2.0 / 3.0 };
    RunState {
        iteration,
        batches_per_epoch: 8,
        window: Window { loss, correct: 17.min(32 * steps), examples: 32 * steps, steps },
        headline: kappa::record::Headline {
            train_loss: Some(0.1 + 0.2),
            train_accuracy: None,
            test_loss: Some(f64::MIN_POSITIVE),
            test_accuracy: Some(1.0 / 7.0),
            test_top5_accuracy: Some(0.9),
        },
        forwards: u64::MAX - 3,
        alerts: serde_json::to_string(&kappa::analysis::AlertsState {
            dominated: vec!["layers.1".into()],
            dying: vec![],
            previous_kappa: vec![("output".into(), "Σx".into(), f64::NAN.to_bits()), ("layers.0".into(), "Σ∇h".into(), 1e300f64.to_bits())],
        })
        .unwrap(),
    }
}

#[test]
fn a_file_round_trips_every_dtype_and_the_metadata() {
    let dir = scratch("roundtrip");
    let path = dir.join("t.safetensors");
    let mut file = TensorFile::default();
    let t = |shape: Vec<usize>, values| HostTensor { shape, values };
    file.tensors.insert("a.f32".into(), t(vec![2, 3], Values::F32(vec![1.5, -0.0, f32::MIN_POSITIVE, 3e38, -7.25, 1.0 / 3.0])));
    file.tensors.insert("b.f64".into(), t(vec![2], Values::F64(vec![std::f64::consts::PI, -1e-300])));
    file.tensors.insert("c.i64".into(), t(vec![], Values::I64(vec![-(1 << 40)])));
    file.tensors.insert("d.f16".into(), t(vec![3], Values::F16([0.5f32, -2.0, 65504.0].map(half::f16::from_f32).to_vec())));
    file.tensors.insert("e.bf16".into(), t(vec![1, 1], Values::BF16(vec![half::bf16::from_f32(-3.0)])));
    file.metadata.insert("format".into(), "test".into());
    file.metadata.insert("Σ".into(), "ünïcode, \"quoted\"".into());
    file.write(&path).unwrap();
    assert!(!checkpoint::tmp_path(&path).exists(), "the temporary file is renamed away");
    assert_eq!(TensorFile::read(&path).unwrap(), file);

    // The header is what the spec says: little-endian length, JSON, data offsets.
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["a.f32"]["dtype"], "F32");
    assert_eq!(header["a.f32"]["shape"], serde_json::json!([2, 3]));
    assert_eq!(header["__metadata__"]["format"], "test");
    let [start, end] = [0, 1].map(|i| header["b.f64"]["data_offsets"][i].as_u64().unwrap() as usize);
    assert_eq!(f64::from_le_bytes(bytes[8 + n + start..8 + n + start + 8].try_into().unwrap()), std::f64::consts::PI);
    assert_eq!(end - start, 16);

    let bad = HostTensor { shape: vec![4], values: Values::F32(vec![1.0]) };
    file.tensors.insert("bad".into(), bad);
    assert!(file.write(&path).unwrap_err().to_string().contains("bad"));
}

/// A trainer built to load a checkpoint (`zero`) has the tensors a trainer
/// drawn from the same seed has, but draws nothing: each value that differs
/// is a weight left at zero.
fn assert_drew_nothing(zero: &BTreeMap<String, Vec<f64>>, drawn: &BTreeMap<String, Vec<f64>>) {
    assert_eq!(zero.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>(), drawn.iter().map(|(k, v)| (k, v.len())).collect::<Vec<_>>());
    let differ: Vec<&String> = zero.keys().filter(|k| zero[*k] != drawn[*k]).collect();
    assert!(differ.iter().any(|k| k.ends_with(".weight")), "nothing was drawn in either");
    assert!(differ.iter().all(|k| zero[*k].iter().all(|&v| v == 0.0)), "{differ:?}");
}

#[test]
fn a_trainer_round_trips_parameters_buffers_optimiser_and_run_state() {
    for (name, extra) in
        [("sgd", &["--momentum", "0.9"][..]), ("adam", &["--optimizer", "adam", "--lr", "0.01"]), ("f64", &["--dtype", "f64"])]
    {
        let cfg = config(&format!("trainer-{name}"), extra);
        let run_dir = cfg.out.clone();
        let check = |saved: BTreeMap<String, Vec<f64>>, restored: BTreeMap<String, Vec<f64>>, state: RunState| {
            assert_eq!(bits(&saved), bits(&restored), "{name}");
            assert_eq!(format!("{state:?}"), format!("{:?}", run_state(5)), "{name}");
            assert!(
                saved.keys().any(|k| k.ends_with("running_var"))
                    && saved.keys().any(|k| k.contains("momentum_buffer") || k.contains("exp_avg"))
            );
        };
        if name == "f64" {
            let be = Cpu::<f64>::new();
            let mut t = trainer(&be, &cfg);
            for i in 0..5 {
                t.step(&batch(i), cfg.lr).unwrap();
            }
            t.save_checkpoint(&run_dir, &cfg, &run_state(5)).unwrap();
            let mut fresh = Trainer::to_load(&be, &cfg, &[784], 10).unwrap();
            let state = fresh.resume(&run_dir, &cfg).unwrap();
            check(everything(&t), everything(&fresh), state);
            // The same file cannot resume a run that computes in f32.
            let cfg32 = TrainConfig { dtype: kappa::train::Dtype::F32, ..cfg.clone() };
            let err = trainer(&Cpu::<f32>::new(), &cfg32).resume(&run_dir, &cfg32).unwrap_err().to_string();
            assert!(err.contains("dtype is f32, but") && err.contains("checkpoint.safetensors was taken with f64"), "{err}");
            continue;
        }
        on_test_device!(be => {
            let mut t = trainer(be, &cfg);
            for i in 0..5 {
                t.step(&batch(i), cfg.lr).unwrap();
            }
            t.save_checkpoint(&run_dir, &cfg, &run_state(5)).unwrap();
            let mut fresh = Trainer::to_load(be, &cfg, &[784], 10).unwrap();
            assert_drew_nothing(&everything(&fresh), &everything(&trainer(be, &cfg)));
            let state = fresh.resume(&run_dir, &cfg).unwrap();
            check(everything(&t), everything(&fresh), state);
            // Both continue identically.
            let (a, b) = (t.step(&batch(9), cfg.lr).unwrap(), fresh.step(&batch(9), cfg.lr).unwrap());
            assert_eq!(a.loss.to_bits(), b.loss.to_bits());
            assert_eq!(bits(&everything(&t)), bits(&everything(&fresh)));
        })
    }
}

#[test]
fn a_checkpoint_of_another_optimiser_or_seed_is_refused() {
    on_test_device!(be => {
        let sgd = config("refuse-sgd", &[]);
        let mut t = trainer(be, &sgd);
        t.step(&batch(0), sgd.lr).unwrap();
        t.save_checkpoint(&sgd.out, &sgd, &run_state(1)).unwrap();
        let adam = TrainConfig { optimizer: kappa::train::OptimizerKind::Adam, ..sgd.clone() };
        let err = trainer(be, &adam).resume(&sgd.out, &adam).unwrap_err().to_string();
        assert!(err.contains("optimizer is adam, but") && err.contains("checkpoint.safetensors was taken with sgd"), "{err}");
        let reseeded = TrainConfig { seed: 7, ..sgd.clone() };
        let err = trainer(be, &reseeded).resume(&sgd.out, &reseeded).unwrap_err().to_string();
        assert!(err.contains("seed is 7, but") && err.contains("checkpoint.safetensors was taken with 0"), "{err}");

        // Optimiser entries must belong to a parameter and a slot of this optimiser.
        let path = checkpoint::checkpoint_path(&sgd.out);
        let mut file = TensorFile::read(&path).unwrap();
        let v = file.tensors.remove("optimizer.output.bias.momentum_buffer").unwrap();
        file.tensors.insert("optimizer.output.bias.exp_avg".into(), v);
        file.write(&path).unwrap();
        let err = trainer(be, &sgd).resume(&sgd.out, &sgd).unwrap_err().to_string();
        assert!(err.contains("unexpected optimizer.output.bias.exp_avg") && err.contains("momentum_buffer"), "{err}");
    })
}

/// After a step every parameter not frozen has its momentum buffer, so one
/// missing is refused, naming it, rather than restarted at zero; a frozen
/// parameter has none, and neither does any before the first step.
#[test]
fn a_missing_optimiser_buffer_is_refused_unless_its_parameter_is_frozen() {
    let be = Cpu::<f32>::new();
    let buffer = "optimizer.output.bias.momentum_buffer";
    for (name, extra, iteration) in
        [("buffer-missing", &[][..], 1), ("buffer-frozen", &["--freeze", "3"][..], 1), ("buffer-unstepped", &[][..], 0)]
    {
        let cfg = config(name, extra);
        let mut t = trainer(&be, &cfg);
        if iteration > 0 {
            t.step(&batch(0), cfg.lr).unwrap();
        }
        t.save_checkpoint(&cfg.out, &cfg, &run_state(iteration)).unwrap();
        let path = checkpoint::checkpoint_path(&cfg.out);
        let mut file = TensorFile::read(&path).unwrap();
        let had = file.tensors.remove(buffer).is_some();
        assert_eq!(had, name == "buffer-missing", "{name}: {buffer} written");
        file.write(&path).unwrap();
        match trainer(&be, &cfg).resume(&cfg.out, &cfg) {
            Ok(_) => assert!(name != "buffer-missing", "{name}: resumed without {buffer}"),
            Err(e) => {
                let e = e.to_string();
                assert!(name == "buffer-missing" && e.contains(buffer) && e.contains("is missing"), "{name}: {e}");
            }
        }
    }
}

#[test]
fn a_state_that_is_not_finite_is_neither_saved_nor_resumed() {
    let cfg = config("not-finite", &[]);
    let be = Cpu::<f32>::new();
    let mut t = trainer(&be, &cfg);
    t.step(&batch(0), cfg.lr).unwrap();
    assert_eq!(t.save_checkpoint(&cfg.out, &cfg, &run_state(1)).unwrap(), checkpoint::Saved::Written);
    let path = checkpoint::checkpoint_path(&cfg.out);
    let written = std::fs::read(&path).unwrap();
    // A NaN weight, which a ReLU can hide from the loss: named, not saved, the last checkpoint kept.
    let store = t.model_mut().store_mut();
    let id = store.ids().find(|&id| store.param(id).name == "layers.1.weight").unwrap();
    let mut values = store.param(id).value.to_f64s(&be).unwrap();
    values[3] = f64::NAN;
    let shape = store.param(id).value.shape().to_vec();
    store.param_mut(id).value = kappa::tensor::Tensor::from_f64s(&be, &shape, values).unwrap();
    assert_eq!(t.save_checkpoint(&cfg.out, &cfg, &run_state(2)).unwrap(), checkpoint::Saved::NotFinite("layers.1.weight".into()));
    assert_eq!(std::fs::read(&path).unwrap(), written);
    // So a checkpoint holding one was changed since kappa wrote it: refused, naming the tensor.
    for name in ["layers.1.weight", "optimizer.layers.0.weight.momentum_buffer", "bns.0.running_var"] {
        let mut file = TensorFile::read(&path).unwrap();
        let Values::F32(v) = &mut file.tensors.get_mut(name).unwrap().values else { panic!("{name} is f32") };
        v[0] = f32::INFINITY;
        file.write(&path).unwrap();
        let err = trainer(&be, &cfg).resume(&cfg.out, &cfg).unwrap_err().to_string();
        assert!(err.contains("checkpoint.safetensors") && err.contains(name) && err.contains("changed since"), "{err}");
        std::fs::write(&path, &written).unwrap();
    }
    trainer(&be, &cfg).resume(&cfg.out, &cfg).unwrap();
}

#[test]
fn a_checkpoint_of_another_architecture_names_the_mismatch() {
    let wide = config("arch-wide", &[]);
    let be = Cpu::<f32>::new();
    trainer(&be, &wide).save_checkpoint(&wide.out, &wide, &run_state(0)).unwrap();
    let path = checkpoint::checkpoint_path(&wide.out);
    // The checkpoint's settings name the first one changed, before any tensor is read.
    let narrow = TrainConfig { width: 8, ..wide.clone() };
    let err = trainer(&be, &narrow).resume(&wide.out, &narrow).unwrap_err().to_string();
    assert!(err.contains("config.json: train.width is 8, but") && err.contains("checkpoint.safetensors was taken with 16"), "{err}");
    // Without them (a checkpoint from before they were written), the tensors name the mismatch.
    let mut file = TensorFile::read(&path).unwrap();
    assert!(file.metadata.remove(checkpoint::SETTINGS).is_some());
    file.write(&path).unwrap();
    let expect = |cfg: &TrainConfig, needles: &[&str]| {
        for exact in [true, false] {
            let mut t = trainer(&be, cfg);
            let err = match exact {
                true => t.resume(&wide.out, cfg).unwrap_err(),
                false => checkpoint::load_weights(&path, t.model_mut(), &be).unwrap_err(),
            }
            .to_string();
            for n in needles {
                assert!(err.contains(n), "{err} lacks {n}");
            }
        }
    };
    expect(
        &narrow,
        &["checkpoint.safetensors", "first mismatching tensor is layers.0.weight: [16, 784] in the file, [8, 784] in the model"],
    );
    let deep = TrainConfig { depth: 4, ..wide.clone() };
    expect(&deep, &["missing 5 tensors: layers.2.weight, bns.2.weight, bns.2.bias, bns.2.running_mean, bns.2.running_var"]);
    let plain = TrainConfig { bn: false, ..wide.clone() };
    expect(&plain, &["missing 2 tensors: layers.0.bias, layers.1.bias", "unexpected 10 tensors: bns.0.bias"]);

    // The same through the command line.
    let out = scratch("arch-cli").join("run");
    let o =
        kappa(&["analyze", "--weights", path.to_str().unwrap(), "--depth", "3", "--width", "8", "--bn", "--out", out.to_str().unwrap()]);
    assert_error(&o, &["checkpoint.safetensors", "layers.0.weight", "[16, 784]", "[8, 784]"]);
}

/// An MLP 3→4→2 written by hand to the spec: each tensor in another float type.
fn hand_written() -> (Vec<u8>, BTreeMap<&'static str, Vec<f64>>) {
    let values: BTreeMap<&str, Vec<f64>> = [
        ("layers.0.weight", (0..12).map(|i| (i as f64 - 6.0) / 8.0).collect()),
        ("layers.0.bias", vec![0.5, -0.25, 1.0, 2.0]),
        ("output.weight", (0..8).map(|i| -(i as f64) / 4.0).collect()),
        ("output.bias", vec![0.1, -1e-3]),
    ]
    .into();
    let tensors: [(&str, &str, &str, Vec<u8>); 4] = [
        ("layers.0.weight", "F32", "[4,3]", values["layers.0.weight"].iter().flat_map(|&v| (v as f32).to_le_bytes()).collect()),
        ("layers.0.bias", "F16", "[4]", values["layers.0.bias"].iter().flat_map(|&v| half::f16::from_f64(v).to_le_bytes()).collect()),
        ("output.weight", "BF16", "[2,4]", values["output.weight"].iter().flat_map(|&v| half::bf16::from_f64(v).to_le_bytes()).collect()),
        ("output.bias", "F64", "[2]", values["output.bias"].iter().flat_map(|&v| v.to_le_bytes()).collect()),
    ];
    let (mut header, mut data) = (String::from("{\"__metadata__\":{\"format\":\"pt\"}"), Vec::new());
    for (name, dtype, shape, bytes) in tensors {
        header += &format!(
            ",\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{},{}]}}",
            data.len(),
            data.len() + bytes.len()
        );
        data.extend(bytes);
    }
    header += "}";
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header.as_bytes());
    file.extend(data);
    (file, values)
}

#[test]
fn a_file_built_by_hand_to_the_spec_loads_into_an_mlp() {
    let dir = scratch("hand");
    let path = dir.join("mlp.safetensors");
    let (bytes, values) = hand_written();
    std::fs::write(&path, &bytes).unwrap();
    let mut cfg = config("hand-cfg", &[]);
    (cfg.depth, cfg.width, cfg.bn) = (2, 4, false);
    let be = Cpu::<f32>::new();
    let mut t = Trainer::new(&be, &cfg, &[3], 2).unwrap();
    checkpoint::load_weights(&path, t.model_mut(), &be).unwrap();
    for p in t.model().store().params() {
        // Exact in every type but output.bias (0.1 in F64), rounded to f32.
        let want: Vec<f64> = values[p.name.as_str()].iter().map(|&v| v as f32 as f64).collect();
        assert_eq!(p.value.to_f64s(&be).unwrap(), want, "{}", p.name);
    }
    // In f64 the F64 tensor keeps every bit.
    let be = Cpu::<f64>::new();
    let mut t = Trainer::new(&be, &cfg, &[3], 2).unwrap();
    checkpoint::load_weights(&path, t.model_mut(), &be).unwrap();
    let out_bias = t.model().store().params().iter().find(|p| p.name == "output.bias").unwrap().value.to_f64s(&be).unwrap();
    assert_eq!(out_bias, vec![0.1, -1e-3]);
    // Each tensor is taken from the file as it goes to the device, so the host never holds the model twice.
    let mut file = checkpoint::MappedFile::open(&path).unwrap();
    checkpoint::load_model(t.model_mut(), &be, &mut file, checkpoint::Precision::Convert).unwrap();
    assert_eq!(file.names().collect::<Vec<_>>(), Vec::<&str>::new(), "left in the file");
    assert!(file.take("layers.0.weight").is_none(), "a tensor is taken once");

    // Damaged files fail with the path and what was expected.
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let err = checkpoint::load_weights(&path, t.model_mut(), &be).unwrap_err().to_string();
    assert!(err.contains("mlp.safetensors") && err.contains("data ends at byte 88, but the file holds 87 bytes after its header"), "{err}");
    // A shape whose bytes the offsets do not span names the tensor.
    let header = "{\"layers.0.weight\":{\"dtype\":\"F32\",\"shape\":[4,3],\"data_offsets\":[0,16]}}";
    std::fs::write(&path, [&(header.len() as u64).to_le_bytes()[..], header.as_bytes(), &[0; 16]].concat()).unwrap();
    let err = checkpoint::load_weights(&path, t.model_mut(), &be).unwrap_err().to_string();
    assert!(
        err.contains("mlp.safetensors: tensor layers.0.weight of shape [4, 3] in F32 needs 48 bytes, but its data_offsets span 16"),
        "{err}"
    );
    let header =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}";
    std::fs::write(&path, [&(header.len() as u64).to_le_bytes()[..], header.as_bytes(), &[0; 12]].concat()).unwrap();
    let err = checkpoint::load_weights(&path, t.model_mut(), &be).unwrap_err().to_string();
    assert!(err.contains("tensor b's data starts at byte 4, overlapping the tensor before it, which ends at 8"), "{err}");
    // A name given twice is named, whether or not the crate would take the file.
    for second in ["[4,8]", "[0,4]"] {
        let header = format!(
            "{{\"a\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}},\"a\":{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{second}}}}}"
        );
        let data = if second == "[4,8]" { 8 } else { 4 };
        std::fs::write(&path, [&(header.len() as u64).to_le_bytes()[..], header.as_bytes(), &vec![0; data]].concat()).unwrap();
        let err = checkpoint::load_weights(&path, t.model_mut(), &be).unwrap_err().to_string();
        assert!(err.contains("mlp.safetensors: the header names tensor a twice; expected each name once"), "{err}");
    }
    let u16_file = bytes.windows(5).position(|w| w == b"\"F16\"").map(|i| [&bytes[..i], b"\"U16\"", &bytes[i + 5..]].concat()).unwrap();
    std::fs::write(&path, u16_file).unwrap();
    let err = checkpoint::load_weights(&path, t.model_mut(), &be).unwrap_err().to_string();
    assert!(err.contains("mlp.safetensors: layers.0.bias is U16; expected floating-point values (F16, BF16, F32 or F64)"), "{err}");
    let err = checkpoint::load_weights(&dir.join("absent.safetensors"), t.model_mut(), &be).unwrap_err().to_string();
    assert!(err.contains("absent.safetensors") && err.contains("cannot read"), "{err}");
    // The file is read through a memory map, which a directory or an empty file does not fool.
    let err = checkpoint::load_weights(&dir, t.model_mut(), &be).unwrap_err().to_string();
    assert!(err.contains("hand") && err.contains("cannot read: is a directory, not a file"), "{err}");
    std::fs::write(&path, b"").unwrap();
    let err = checkpoint::load_weights(&path, t.model_mut(), &be).unwrap_err().to_string();
    assert!(err.contains("mlp.safetensors") && err.contains("not a safetensors file"), "{err}");
}

/// A mapped file's values are read in place, from any offset, in every
/// float type; an integer tensor is refused by name.
#[test]
fn floats_are_read_in_place_from_any_offset() {
    let dir = scratch("floats");
    let path = dir.join("mlp.safetensors");
    let (bytes, values) = hand_written();
    std::fs::write(&path, &bytes).unwrap();
    let file = checkpoint::MappedFile::open(&path).unwrap();
    for (name, want) in &values {
        let floats = file.floats(name).unwrap().unwrap();
        assert_eq!(floats.unfit::<f32>(), (0, 0), "{name}");
        for start in [0, 1, want.len() - 1] {
            let mut got = vec![f64::NAN; want.len() - start];
            floats.read_into(start, &mut got);
            // Each value is exact in its tensor's type.
            assert_eq!(got, want[start..], "{name} from {start}");
        }
    }
    // Not-finite values are counted, and so are finite ones past the run's type.
    let odd = [f64::NAN, 1e300, -f64::INFINITY, 2.0, -1e39];
    let mut t = TensorFile::default();
    t.tensors.insert("w".into(), HostTensor { shape: vec![5], values: Values::F64(odd.to_vec()) });
    t.tensors.insert("count".into(), HostTensor { shape: vec![], values: Values::I64(vec![3]) });
    t.write(&path).unwrap();
    let file = checkpoint::MappedFile::open(&path).unwrap();
    let w = file.floats("w").unwrap().unwrap();
    assert_eq!((w.unfit::<f32>(), w.unfit::<f64>()), ((2, 2), (2, 0)));
    let err = file.floats("count").unwrap().err().unwrap().to_string();
    assert!(err.contains("mlp.safetensors: count is I64; expected floating-point values"), "{err}");
    assert!(file.floats("absent").is_none());
}

/// Every tensor is checked before any is written into the model, so a file
/// refused for its last tensor leaves the model as it was.
#[test]
fn a_refused_file_leaves_the_model_as_it_was() {
    let cfg = config("refused-whole", &[]);
    let be = Cpu::<f32>::new();
    let mut t = trainer(&be, &cfg);
    t.step(&batch(0), cfg.lr).unwrap();
    t.save_checkpoint(&cfg.out, &cfg, &run_state(1)).unwrap();
    let path = checkpoint::checkpoint_path(&cfg.out);
    let mut file = TensorFile::read(&path).unwrap();
    let last = file.tensors.keys().rfind(|n| !n.starts_with("optimizer.")).unwrap().clone();
    let w = file.tensors.get_mut(&last).unwrap();
    w.values = Values::F32(w.values.to_f64s().unwrap().iter().map(|_| f32::NAN).collect());
    file.write(&path).unwrap();
    let mut fresh = trainer(&be, &cfg);
    let before = bits(&everything(&fresh));
    let err = fresh.resume(&cfg.out, &cfg).unwrap_err().to_string();
    assert!(err.contains(&format!("{last} holds")) && err.contains("NaN or infinite"), "{err}");
    assert_eq!(bits(&everything(&fresh)), before);
    assert_ne!(bits(&everything(&t)), before, "the file's other tensors differ from the fresh model's");
}

/// `Backend::overwrite` fills a buffer in place, a chunk at a time on a
/// device with memory of its own: here past the CUDA backend's 2²² f32
/// staging chunk, so every chunk lands where it belongs.
#[test]
fn a_buffer_is_overwritten_in_place_chunk_by_chunk() {
    on_test_device!(be => {
        let n = (1 << 22) * 2 + 3;
        let value = |i: usize| (kappa::rng::hash3(5, 0, i as u64) % 4096) as f32;
        let mut buf = be.zeros(n).unwrap();
        let mut covered = 0;
        be.overwrite(&mut buf, &mut |start, chunk| {
            assert_eq!(start, covered, "chunks in order, back to back");
            chunk.iter_mut().enumerate().for_each(|(i, v)| *v = value(start + i));
            covered += chunk.len();
        })
        .unwrap();
        assert_eq!(covered, n);
        let got = be.download(&buf).unwrap();
        assert!(got.iter().enumerate().all(|(i, &v)| v == value(i)), "a value landed in the wrong place");
    })
}

#[test]
fn a_state_dict_written_by_pythons_safetensors_loads_and_is_analysed() {
    let Some(py) = safetensors_python() else { return };
    let dir = scratch("python");
    let path = dir.join("state_dict.safetensors");
    // PyTorch's state dict of a 3-layer BN MLP: what `safetensors.torch.save_file` writes, by numpy.
    let script = r#"
import sys, numpy as np
from safetensors.numpy import save_file
def w(*shape):
    n = int(np.prod(shape))
    return (((np.arange(n) * 7) % 17 - 8) / 32).astype(np.float32).reshape(shape)
sd = {"layers.0.weight": w(16, 784), "layers.1.weight": w(16, 16), "output.weight": w(10, 16), "output.bias": w(10)}
for k in (0, 1):
    sd[f"bns.{k}.weight"] = 1 + w(16)
    sd[f"bns.{k}.bias"] = w(16)
    sd[f"bns.{k}.running_mean"] = w(16) / 2
    sd[f"bns.{k}.running_var"] = 1 + np.abs(w(16))
    sd[f"bns.{k}.num_batches_tracked"] = np.array(1234, dtype=np.int64)
save_file(sd, sys.argv[1], metadata={"format": "pt"})
print(np.linalg.norm(sd["layers.0.weight"].astype(np.float64), 2))
"#;
    let o = Command::new(&py).args(["-c", script, path.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let sigma_max: f64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    let w = |n: usize| -> Vec<f64> { (0..n).map(|i| ((i * 7 % 17) as f64 - 8.0) / 32.0).collect() };

    let cfg = config("python-cfg", &[]);
    let be = Cpu::<f32>::new();
    let mut t = trainer(&be, &cfg);
    checkpoint::load_weights(&path, t.model_mut(), &be).unwrap();
    let store = t.model().store();
    let value = |name: &str| {
        let mut all = store.params().iter().map(|p| (&p.name, &p.value)).chain(store.buffers().iter().map(|(n, v)| (n, v)));
        all.find(|(n, _)| *n == name).unwrap().1.to_f64s(&be).unwrap()
    };
    assert_eq!(value("layers.0.weight"), w(16 * 784));
    assert_eq!(value("bns.1.running_mean"), w(16).iter().map(|v| v / 2.0).collect::<Vec<_>>());
    assert_eq!(value("output.bias"), w(10));

    // `kappa analyze --weights` measures the loaded weights, not an initialisation.
    let out = dir.join("run");
    let mut args = vec!["analyze", "--weights", path.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(SMALL);
    succeed(&args);
    let records = records(&out.join("metrics.jsonl"));
    let first = records.iter().find(|r| r["kind"] == "analysis" && r["layer"] == "layers.0").unwrap();
    let measured = first["weight"]["sigma_max"].as_f64().unwrap();
    assert!((measured / sigma_max - 1.0).abs() < 1e-4, "σmax(W) {measured} vs numpy's {sigma_max}");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["weights"], path.to_str().unwrap());
    assert!(!checkpoint::checkpoint_path(&out).exists(), "analyze writes no checkpoint");
}

#[test]
fn a_failed_write_leaves_the_previous_checkpoint_intact() {
    let dir = scratch("atomic");
    let path = dir.join("checkpoint.safetensors");
    let file = |v: f32| TensorFile {
        tensors: [("w".to_string(), HostTensor { shape: vec![2], values: Values::F32(vec![v, -v]) })].into(),
        metadata: [("iteration".to_string(), v.to_string())].into(),
    };
    file(1.0).write(&path).unwrap();
    // The temporary cannot be created: the write fails, naming it, and the old file stays.
    let tmp = checkpoint::tmp_path(&path);
    std::fs::create_dir_all(tmp.join("blocker")).unwrap();
    let err = file(2.0).write(&path).unwrap_err().to_string();
    assert!(err.contains("checkpoint.safetensors.tmp") && err.contains("left as it was"), "{err}");
    assert_eq!(TensorFile::read(&path).unwrap(), file(1.0));
    // A temporary left by a crash mid-write is simply replaced.
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"half a fi").unwrap();
    file(3.0).write(&path).unwrap();
    assert_eq!(TensorFile::read(&path).unwrap(), file(3.0));
    assert!(!tmp.exists());
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

/// A record without its timing, which no two runs share.
fn deterministic(mut r: Value) -> Value {
    if let Some(o) = r.as_object_mut() {
        o.remove("examples_per_second");
    }
    r
}

/// The resumed run's records after its last `resume` marker are exactly the
/// uninterrupted run's from the same point on, and the final checkpoints
/// hold the same tensors and metadata, bit for bit.
fn assert_resumed_like(resumed: &Path, uninterrupted: &Path) {
    let (r, u) = (records(&resumed.join("metrics.jsonl")), records(&uninterrupted.join("metrics.jsonl")));
    let marker = r.iter().rposition(|x| x["kind"] == "resume").expect("a resume record");
    let at = r[marker]["iteration"].as_u64().unwrap();
    let after: Vec<Value> = r[marker + 1..].iter().cloned().map(deterministic).collect();
    assert!(after.len() >= 2 && after.len() <= u.len(), "{} records after the resume, {} in all", after.len(), u.len());
    let (before, tail) = u.split_at(u.len() - after.len());
    for (i, (x, y)) in after.iter().zip(tail.iter().cloned().map(deterministic)).enumerate() {
        assert_eq!(x, &y, "record {i} after resuming at {at}");
    }
    // The split falls at the resume point: what came before belongs to iterations up to it.
    for x in before {
        let it = x["iteration"].as_u64().unwrap();
        assert!(if x["kind"] == "analysis" || x["kind"] == "alert" { it < at } else { it <= at }, "{x} before resuming at {at}");
    }
    let (a, b) = (
        TensorFile::read(&checkpoint::checkpoint_path(resumed)).unwrap(),
        TensorFile::read(&checkpoint::checkpoint_path(uninterrupted)).unwrap(),
    );
    assert_eq!(a.tensors.keys().collect::<Vec<_>>(), b.tensors.keys().collect::<Vec<_>>());
    for (name, t) in &a.tensors {
        let (x, y) = (t.values.to_f64s().unwrap_or_default(), b.tensors[name].values.to_f64s().unwrap_or_default());
        assert_eq!(x.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), y.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), "{name}");
        assert_eq!(t, &b.tensors[name]);
    }
    assert_eq!(a.metadata, b.metadata);
    let summary = |dir: &Path| -> Value {
        let mut s: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
        for k in ["seconds", "examples_per_second", "out"] {
            s.as_object_mut().unwrap().remove(k);
        }
        s
    };
    assert_eq!(summary(resumed), summary(uninterrupted));
}

/// `kappa train` on the test device.
fn train(out: &Path, extra: &[&str]) {
    let device = common::device_args();
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend(device.iter().map(String::as_str));
    args.extend_from_slice(SMALL);
    args.extend_from_slice(extra);
    succeed(&args);
}

#[test]
fn a_run_resumed_mid_epoch_continues_bit_for_bit() {
    let dir = scratch("resume-sgd");
    // SGD with momentum, BN, and Fisher analyses (sampled labels, extra batches) every 4 steps; every
    // layer counts as weight-dominated, so each alert is raised once, at 0, and the resumed run must remember it.
    let analysed = [
        "--momentum",
        "0.9",
        "--analyze-every",
        "4",
        "--analysis-batches",
        "2",
        "--analysis-mode",
        "fisher",
        "--domination-threshold",
        "1e9",
    ];
    train(&dir.join("u"), &[&analysed[..], &["--iterations", "21"]].concat());
    // Stop at 12, four batches into the second epoch of 8, then continue to 21.
    let r = dir.join("r");
    train(&r, &[&analysed[..], &["--iterations", "12"]].concat());
    let checkpointed = TensorFile::read(&checkpoint::checkpoint_path(&r)).unwrap();
    assert_eq!(checkpointed.metadata["iteration"], "12");
    assert_eq!(checkpointed.metadata["batch_in_epoch"], "4");
    let tracked = &checkpointed.tensors["bns.1.num_batches_tracked"];
    assert_eq!((&tracked.shape[..], &tracked.values), (&[][..], &Values::I64(vec![12])));
    succeed(&["train", "--resume", r.to_str().unwrap(), "--iterations", "21"]);
    assert_resumed_like(&r, &dir.join("u"));
    let alerts = records(&r.join("metrics.jsonl")).into_iter().filter(|x| x["kind"] == "alert").count();
    assert_eq!(alerts, 3, "one weight-domination alert per layer");
    let config: Value = serde_json::from_str(&std::fs::read_to_string(r.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["iterations"], 21);
}

#[test]
fn an_adam_run_resumed_at_an_epoch_end_and_extended_continues_bit_for_bit() {
    let dir = scratch("resume-adam");
    let adam = ["--optimizer", "adam", "--lr", "0.003", "--analyze-every", "0"];
    train(&dir.join("u"), &[&adam[..], &["--epochs", "3", "--checkpoint-every", "3"]].concat());
    let r = dir.join("r");
    train(&r, &[&adam[..], &["--epochs", "1"]].concat());
    assert_eq!(TensorFile::read(&checkpoint::checkpoint_path(&r)).unwrap().metadata["batch_in_epoch"], "0");
    succeed(&["train", "--resume", r.to_str().unwrap(), "--epochs", "3", "--checkpoint-every", "3"]);
    assert_resumed_like(&r, &dir.join("u"));
}

#[test]
fn a_killed_run_resumes_bit_for_bit() {
    let dir = scratch("killed");
    let args = ["--iterations", "400", "--checkpoint-every", "3", "--analyze-every", "0"];
    train(&dir.join("u"), &args);
    let r = dir.join("r");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kappa"));
    cmd.args(["train", "--out", r.to_str().unwrap()]).args(common::device_args()).args(SMALL).args(args);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    // Kill it once it is well under way, wherever it then is: mid-step, mid-record or mid-checkpoint.
    let start = Instant::now();
    let iteration = || TensorFile::read(&checkpoint::checkpoint_path(&r)).map_or(0, |f| f.metadata["iteration"].parse().unwrap());
    while iteration() < 30 && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    // A little later, so the log likely holds records past the checkpoint that the resumed run supersedes.
    std::thread::sleep(Duration::from_millis(15));
    child.kill().unwrap();
    child.wait().unwrap();
    let at = TensorFile::read(&checkpoint::checkpoint_path(&r)).unwrap().metadata["iteration"].clone();
    assert_ne!(at, "400", "the run finished before it could be killed");
    succeed(&["train", "--resume", r.to_str().unwrap()]);
    assert_resumed_like(&r, &dir.join("u"));
}

#[test]
fn resume_refuses_what_it_cannot_honour() {
    let dir = scratch("refuse");
    let r = dir.join("r");
    train(&r, &["--iterations", "4", "--analyze-every", "0"]);
    let rs = r.to_str().unwrap();
    // The SHA-256 of every file of a run directory, by path (a folder's as "folder").
    let files = |dir: &Path| -> BTreeMap<String, String> {
        let digest = |p: &Path| kappa::data::fetch::sha256_file(p).unwrap_or_else(|_| "folder".into());
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).map(|p| (p.display().to_string(), digest(&p))).collect()
    };
    assert_error(&kappa(&["train", "--resume", rs, "--lr", "0.1"]), &["--resume", "--lr", "config.json"]);
    assert_error(&kappa(&["train", "--resume", rs, "--depth", "3"]), &["--depth"]);
    assert_error(&kappa(&["train", "--resume", rs]), &["--iterations", "4 of its 4"]);
    assert_error(&kappa(&["train", "--resume", rs, "--iterations", "3"]), &["--iterations", "4 of its 3"]);
    assert_error(&kappa(&["train", "--resume", dir.join("none").to_str().unwrap()]), &["none/config.json", "kappa train"]);
    // A resume refused for want of its spectra folder leaves the run's files as they were.
    let spectral = dir.join("spectral");
    train(&spectral, &["--iterations", "4", "--analyze-every", "2", "--save-spectra"]);
    std::fs::remove_dir_all(spectral.join("spectra")).unwrap();
    std::fs::write(spectral.join("spectra"), "not a folder").unwrap();
    let before = files(&spectral);
    assert_error(&kappa(&["train", "--resume", spectral.to_str().unwrap(), "--iterations", "8"]), &["spectra", "expected a folder"]);
    assert_eq!(files(&spectral), before);
    std::fs::remove_file(checkpoint::checkpoint_path(&r)).unwrap();
    assert_error(&kappa(&["train", "--resume", rs, "--iterations", "8"]), &["checkpoint.safetensors", "no checkpoint"]);
    std::fs::create_dir(checkpoint::checkpoint_path(&r)).unwrap();
    assert_error(&kappa(&["train", "--resume", rs, "--iterations", "8"]), &["checkpoint.safetensors", "is not a file"]);
    std::fs::remove_dir(checkpoint::checkpoint_path(&r)).unwrap();
    // A saved configuration that the command line would refuse is named as the file's.
    let config = r.join("config.json");
    let saved = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, saved.replace("\"batch_size\": 32", "\"batch_size\": 0")).unwrap();
    assert_error(&kappa(&["train", "--resume", rs, "--iterations", "8"]), &["config.json", "would refuse", "--batch-size"]);
    // Also where the value is refused only as the model or the data are built.
    std::fs::write(&config, saved.replace("\"depth\": 3", "\"depth\": 1")).unwrap();
    assert_error(&kappa(&["train", "--resume", rs, "--iterations", "8"]), &["config.json", "would refuse", "--depth"]);
    std::fs::write(&config, saved.replace("\"limit_train\": 256", "\"limit_train\": 0")).unwrap();
    assert_error(&kappa(&["train", "--resume", rs, "--iterations", "8"]), &["config.json", "would refuse", "--limit-train"]);
    // JSON that is not an object is named as such, not by serde's reading of a struct from an array.
    std::fs::write(&config, "[]").unwrap();
    assert_error(&kappa(&["train", "--resume", rs, "--iterations", "8"]), &["config.json", "holds an array, not an object"]);
    // A value of the wrong type is placed by line and column.
    std::fs::write(&config, saved.replace("\"depth\": 3", "\"depth\": \"3\"")).unwrap();
    assert_error(&kappa(&["train", "--resume", rs, "--iterations", "8"]), &["config.json", "expected usize at line"]);
    // A key no setting reads (a misspelt edit) is named, at any depth, not skipped.
    for (from, to, key) in [
        ("\"lr\":", "\"lrr\": 0.5, \"lr\":", "train.lrr"),
        ("\"drop_last\":", "\"droplast\":", "train.pipeline.droplast"),
        ("\"kind\": \"constant\"", "\"kind\": \"constant\", \"gama\": 0.1", "train.schedule.gama"),
    ] {
        assert!(saved.contains(from), "{saved}");
        std::fs::write(&config, saved.replacen(from, to, 1)).unwrap();
        assert_error(&kappa(&["train", "--resume", rs, "--iterations", "8"]), &["config.json", &format!("a key {key} that no setting")]);
    }
    std::fs::write(&config, saved).unwrap();
    // A fresh run still never writes into an existing one.
    assert_error(&kappa(&["train", "--out", rs, "--iterations", "4"]), &["metrics.jsonl", "already holds"]);
    // Nor into one that lost its metrics: its other files are refused as well.
    std::fs::rename(r.join("metrics.jsonl"), dir.join("metrics.jsonl")).unwrap();
    let before = files(&r);
    assert_error(&kappa(&["train", "--out", rs, "--iterations", "4"]), &["config.json", "already holds"]);
    assert_eq!(files(&r), before);
    std::fs::rename(dir.join("metrics.jsonl"), r.join("metrics.jsonl")).unwrap();
    // And says so before it reads the data.
    let missing = dir.join("no-data");
    assert_error(
        &kappa(&["train", "--out", rs, "--data", "mnist", "--data-dir", missing.to_str().unwrap()]),
        &["metrics.jsonl", "already holds"],
    );
}

#[test]
fn a_checkpoint_kappa_streams_to_disk_is_read_by_pythons_safetensors() {
    let Some(py) = safetensors_python() else { return };
    let run = scratch("python-reads").join("run");
    // 15 units: F32 tensors of odd lengths, which would leave an I64 after them unaligned.
    let small = ["--depth", "3", "--width", "15", "--bn", "--limit-train", "256", "--batch-size", "32"];
    succeed(&[&["train", "--optimizer", "adam", "--iterations", "3", "--out", run.to_str().unwrap()][..], &small].concat());
    let path = checkpoint::checkpoint_path(&run);
    // Each value starts at a multiple of its width, as mapping the file in place needs.
    let bytes = std::fs::read(&path).unwrap();
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + len]).unwrap();
    for (name, info) in header.as_object().unwrap().iter().filter(|(n, _)| *n != "__metadata__") {
        let width = if matches!(info["dtype"].as_str(), Some("I64" | "F64")) { 8 } else { 4 };
        assert_eq!((8 + len + info["data_offsets"][0].as_u64().unwrap() as usize) % width, 0, "{name}: {info}");
    }
    let script = r#"
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f:
    print(len(f.keys()), f.metadata()["iteration"], int(f.get_tensor("optimizer.step")), repr(float(f.get_tensor("layers.0.weight").astype("float64").sum())))
"#;
    let o = Command::new(&py).args(["-c", script, path.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let file = TensorFile::read(&path).unwrap();
    let sum: f64 = file.tensors["layers.0.weight"].values.to_f64s().unwrap().iter().sum();
    let python = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let fields: Vec<&str> = python.split(' ').collect();
    assert_eq!(fields[..3], [file.tensors.len().to_string().as_str(), "3", "3"], "{python}");
    let python_sum: f64 = fields[3].parse().unwrap();
    assert!((python_sum - sum).abs() <= 1e-9 * sum.abs().max(1.0), "{python_sum} vs {sum}");
}
