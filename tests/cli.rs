//! The `kappa` binary as users run it: outputs of a run, and a clear one-line
//! error with a non-zero exit for each kind of bad input.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::{assert_error, kappa, scratch, stderr, succeed};

fn be32(v: u32) -> [u8; 4] {
    v.to_be_bytes()
}

/// Writes MNIST-format files for `n` training and `n` test examples of 28×28.
fn write_mnist(dir: &Path, n: u32, label: u8) {
    for (images, labels) in [("train-images-idx3-ubyte", "train-labels-idx1-ubyte"), ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")] {
        let mut img = [be32(2051), be32(n), be32(28), be32(28)].concat();
        img.extend((0..n * 784).map(|i| (i % 251) as u8));
        std::fs::write(dir.join(images), img).unwrap();
        let mut lab = [be32(2049), be32(n)].concat();
        lab.extend((0..n).map(|i| if i == n - 1 { label } else { (i % 10) as u8 }));
        std::fs::write(dir.join(labels), lab).unwrap();
    }
}

fn small_train(out: &Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["train", "--depth", "3", "--width", "16", "--limit-train", "256", "--batch-size", "32", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    kappa(&args)
}

#[test]
fn a_run_writes_config_metrics_and_summary() {
    let dir = scratch("run");
    let out = dir.join("run");
    let o = small_train(&out, &["--epochs", "2", "--log-every", "4"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("finished") && stdout.contains("test loss"), "{stdout}");
    let config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["train"]["depth"], 3);
    let records: Vec<serde_json::Value> =
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let train: Vec<_> = records.iter().filter(|r| r["kind"] == "train").collect();
    assert_eq!(train.len(), 4, "16 iterations logged every 4");
    for r in &train {
        for key in ["iteration", "epoch", "loss", "accuracy", "lr"] {
            assert!(r.get(key).is_some_and(|v| !v.is_null()), "{key} missing from {r}");
        }
    }
    assert_eq!(records.iter().filter(|r| r["kind"] == "eval").count(), 2, "one evaluation per epoch");
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["iterations"], 16);
    assert_eq!(summary["diverged"], false);
    assert!(!stdout.contains("--batch-size") && !stdout.contains("--schedule"), "{stdout}");

    // A batch larger than the split is kept as given, and the run says what each step sees.
    let wide = dir.join("wide");
    let args = ["train", "--depth", "3", "--width", "16", "--limit-train", "256", "--batch-size", "1000", "--iterations", "2"];
    let o = kappa(&[&args[..], &["--schedule", "multistep:1,4", "--out", wide.to_str().unwrap()]].concat());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && stdout.contains("--batch-size 1000: the training split holds 256 examples, so each step sees those 256"),
        "{stdout}"
    );
    // So is a schedule's milestone the run never reaches.
    assert!(
        stdout.contains("--schedule: the run's epochs are 0–1 as milestones count them, so it never reaches the drop at epoch 4"),
        "{stdout}"
    );
    // A setting edited in config.json since the checkpoint is refused, naming it, and nothing is written.
    let config = std::fs::read_to_string(wide.join("config.json")).unwrap();
    std::fs::write(wide.join("config.json"), config.replacen("\"lr\": 0.05", "\"lr\": 1.0", 1)).unwrap();
    let log = std::fs::read_to_string(wide.join("metrics.jsonl")).unwrap();
    let refused = kappa(&["train", "--resume", wide.to_str().unwrap(), "--iterations", "3"]);
    assert_error(&refused, &["config.json", "train.lr is 1.0, but", "checkpoint.safetensors was taken with 0.05"]);
    assert_eq!(std::fs::read_to_string(wide.join("metrics.jsonl")).unwrap(), log);
    std::fs::write(wide.join("config.json"), config).unwrap();
    // A resumed run whose log was emptied goes on, and says what its log now lacks.
    std::fs::write(wide.join("metrics.jsonl"), "").unwrap();
    let o = kappa(&["train", "--resume", wide.to_str().unwrap(), "--iterations", "3"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && stdout.contains("metrics.jsonl: empty, though the checkpoint was taken at iteration 2"), "{stdout}");
}

#[test]
fn a_resumed_runs_refusals_name_its_config_json_not_flags_never_given() {
    let out = scratch("resume-analyses").join("run");
    let run = out.to_str().unwrap();
    let args = ["train", "--depth", "3", "--width", "8", "--limit-train", "256", "--batch-size", "64", "--iterations", "6"];
    succeed(&[&args[..], &["--analyze-at", "5", "--checkpoint-every", "2", "--out", run]].concat());
    let o = kappa(&["train", "--resume", run, "--iterations", "3"]);
    assert_error(&o, &["--iterations", "config.json analyses iteration 5", "past the run's end at iteration 3"]);
    assert!(!stderr(&o).contains("--analyze-at"), "{}", stderr(&o));
    // A preset edited into config.json is the file's error, not --preset's.
    let config = out.join("config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replacen("\"preset\": null", "\"preset\": \"bogus\"", 1)).unwrap();
    let o = kappa(&["train", "--resume", run, "--iterations", "8"]);
    assert_error(&o, &["config.json: holds a configuration `kappa train` would refuse", "unknown preset 'bogus'"]);
}

#[test]
fn divergence_is_a_result_not_a_crash() {
    let dir = scratch("diverge");
    let out = dir.join("run");
    let o = small_train(&out, &["--lr", "1e9", "--iterations", "40", "--log-every", "1"]);
    assert!(o.status.success(), "diverging must exit 0: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("DIVERGED"));
    let text = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let records: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let at = records.iter().find(|r| r["diverged"] == true).expect("a diverged record");
    let iteration = at["iteration"].as_u64().unwrap();
    // Every step before the divergence is still in the log.
    let finite = records.iter().filter(|r| r["kind"] == "train" && r["loss"].is_number()).count() as u64;
    assert_eq!(finite, iteration - 1);
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["diverged"], true);
    assert_eq!(summary["diverged_at"], iteration);

    // Weights grown past what a forward pass survives, after a step whose
    // training loss (taken before the update) was finite: the test loss says so.
    let out = dir.join("test-loss");
    let o = small_train(&out, &["--weight-decay", "1e30", "--iterations", "1", "--analyze-every", "0"]);
    assert!(o.status.success(), "diverging must exit 0: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("diverged at iteration 1: the test loss is NaN"), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!((&summary["diverged"], &summary["diverged_at"]), (&serde_json::json!(true), &serde_json::json!(1)));
    // It diverged before its first checkpoint, and a resume says so.
    let resumed = kappa(&["train", "--resume", out.to_str().unwrap(), "--iterations", "2"]);
    assert_error(&resumed, &["checkpoint.safetensors", "no checkpoint to resume from: the run diverged at iteration 1, before its first"]);
}

#[test]
fn an_existing_run_is_never_overwritten() {
    let dir = scratch("exists");
    let out = dir.join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("metrics.jsonl"), "precious\n").unwrap();
    let o = small_train(&out, &["--iterations", "2"]);
    assert_error(&o, &["metrics.jsonl", "--out"]);
    assert_eq!(std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(), "precious\n");
    // An --out that names a file is said to be one, and the file is left alone.
    let file = dir.join("a-file");
    std::fs::write(&file, "precious\n").unwrap();
    assert_error(&small_train(&file, &["--iterations", "2"]), &["a-file", "is a file, not a directory", "--out"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "precious\n");
}

#[test]
fn bad_flags_name_the_flag() {
    let out = scratch("flags").join("run");
    let out = out.to_str().unwrap();
    assert_error(&kappa(&["train", "--model", "transformer", "--out", out]), &["unknown model 'transformer'", "mlp"]);
    assert_error(&kappa(&["train", "--batch-size", "0", "--out", out]), &["--batch-size"]);
    assert_error(&kappa(&["train", "--lr", "fast", "--out", out]), &["--lr", "fast"]);
    assert_error(&kappa(&["train", "--depth", "x", "--out", out]), &["--depth"]);
    assert_error(&kappa(&["train", "--freeze", "2,99", "--out", out]), &["--freeze", "99"]);
    assert_error(&kappa(&["train", "--freeze", "2,1,2", "--out", out]), &["--freeze", "layer 2 is given twice"]);
    let frozen = ["train", "--depth", "3", "--width", "8", "--freeze", "3,1,2", "--out", out];
    assert_error(&kappa(&frozen), &["--freeze", "every layer of mlp 3×8", "no parameter would train"]);
    let schedule = kappa(&["train", "--schedule", "cosine", "--out", out]);
    assert_error(&schedule, &["--schedule", "unknown schedule", "multistep:E1,E2[:gamma]"]);
    assert_eq!(stderr(&schedule).matches("--schedule").count(), 1, "{}", stderr(&schedule));
    assert_error(&kappa(&["train", "--data", "imagenet21k", "--out", out]), &["--data", "imagenet21k"]);
    assert_error(&kappa(&["train", "--device", "tpu", "--out", out]), &["--device", "tpu"]);
    // Values clap parses but no run can use.
    assert_error(&kappa(&["train", "--model", "resnet", "--dropout", "nan", "--out", out]), &["--dropout", "[0, 1)"]);
    assert_error(&kappa(&["train", "--model", "tau-resnet", "--tau", "inf", "--out", out]), &["--tau", "inf"]);
    assert_error(&kappa(&["train", "--tau", "0.5", "--out", out]), &["--tau", "tau-resnet", "--model is mlp"]);
    assert_error(&kappa(&["train", "--model", "vgg16", "--base-width", "0", "--out", out]), &["--base-width"]);
    // A negative number, with a negative exponent too, is read as the flag's value, so the flag's own check names it.
    for flag in ["--lr", "--momentum", "--weight-decay", "--tau", "--dropout"] {
        assert_error(&kappa(&["train", "--model", "tau-resnet", flag, "-1", "--out", out]), &[flag, "-1 is not"]);
        assert_error(&kappa(&["train", "--model", "tau-resnet", flag, "-1e-3", "--out", out]), &[flag, "-0.001 is not"]);
    }
    assert_error(&kappa(&["train", "--model", "vgg16", "--out", out]), &["--data", "32×32", "28×28"]);
    // A recipe's crops and normalisation are for its own kind of images.
    let mixed = ["train", "--preset", "fb-imagenet", "--data", "synthetic-cifar", "--depth", "20", "--out", out];
    assert_error(&kappa(&mixed), &["--data", "synthetic-cifar does not fit --preset fb-imagenet", "fb-cifar, lca-cifar, tau-cifar"]);
    // An analysis the run would never reach, before anything is written.
    let late = ["train", "--iterations", "10", "--analyze-at", "5,20,11", "--out", out];
    assert_error(&kappa(&late), &["--analyze-at", "iteration 11 is past the run's end at iteration 10", "--iterations 10"]);
    let late = ["train", "--epochs", "2", "--limit-train", "256", "--batch-size", "32", "--analyze-at", "17", "--out", out];
    assert_error(&kappa(&late), &["--analyze-at", "iteration 17", "end at iteration 16 (2 epochs of 8 batches)"]);
    // Batch norm over vectors needs two examples a batch, the last one included.
    assert_error(&kappa(&["train", "--bn", "--batch-size", "1", "--out", out]), &["--batch-size", "one example leaves all zeros"]);
    let short = ["train", "--bn", "--limit-train", "65", "--batch-size", "32", "--out", out];
    assert_error(&kappa(&short), &["--batch-size", "65 examples in batches of 32", "--drop-last"]);
    // Flags that would measure nothing.
    assert_error(
        &kappa(&["train", "--analyze-every", "0", "--save-spectra", "--out", out]),
        &["--save-spectra", "no analysis is scheduled"],
    );
    assert_error(&kappa(&["analyze", "--examples", "64", "--out", out]), &["--examples", "only --exact"]);
    assert!(!Path::new(out).exists(), "a refused run wrote its directory");
    let exact = ["analyze", "--exact", "--depth", "3", "--width", "8", "--examples", "64", "--limit-train", "32", "--out", out];
    assert_error(&kappa(&exact), &["--examples", "64 examples", "has 32", "--limit-train", "expected 1 to 32"]);
    assert_error(&kappa(&["profile", "conv", "--batch-size", "0"]), &["--batch-size", "at least 1"]);
    assert_error(&kappa(&["profile", "covariance", "--repeats", "0"]), &["--repeats", "at least 1"]);
    // Sizes past memory or usize are errors naming the flags, not overflow panics or allocation aborts.
    let huge = usize::MAX.to_string();
    let shape = format!("{huge},2,1,1");
    for (args, named) in [
        (&["train", "--width", &huge, "--depth", "3", "--out", out][..], &["--width", "hidden layers' weights"][..]),
        (&["train", "--depth", "100000000", "--out", out], &["--depth", "hidden layers' weights"]),
        (&["train", "--crop-resize", "20:100000", "--out", out], &["--crop-resize", "resized images"]),
        (&["profile", "conv", "--batch-size", &huge], &["--batch-size", "3→16 32² conv's activations"]),
        (&["profile", "covariance", "--shape", &shape], &["--shape", "activation"]),
        (&["profile", "gpu", "--eig-sizes", "100000000"], &["--eig-sizes", "eigen-solve"]),
    ] {
        assert_error(&kappa(args), &[named, &["would not fit in", "GiB of"]].concat());
    }
    // A limit below the machine's memory binds: here `ulimit -v` at 4 GB.
    let in_4gb = |args: &[&str]| {
        let limited = ["-c", "ulimit -v 4000000 && exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_kappa")];
        Command::new("sh").args(limited).args(args).output().unwrap()
    };
    // (A machine whose cgroup allows less still refuses, naming the cgroup.)
    let named_limit =
        |o: &Output| ["GiB of address space `ulimit -v` allows", "this process's cgroup allows"].iter().any(|n| stderr(o).contains(n));
    // A 30000² hidden layer (7.2 GB as f64) outgrows it, though the machine may not.
    let wide = in_4gb(&["train", "--width", "30000", "--depth", "2", "--out", out]);
    assert_error(&wide, &["--width", "hidden layers' weights", "would not fit in the"]);
    // Each 12000² layer fits, but training two of them beside Adam's two slots does not.
    let adam = in_4gb(&["train", "--width", "12000", "--depth", "4", "--optimizer", "adam", "--out", out]);
    assert_error(&adam, &["--depth, --width", "training mlp 4×12000", "2 optimiser slots", "needs at least"]);
    // A 13000² layer and its neighbours train in 2 GiB, but an analysis holds four 13000² moments beside them.
    let analysed = in_4gb(&["train", "--width", "13000", "--depth", "3", "--out", out]);
    assert_error(&analysed, &["--analyze-every 0", "training mlp 3×13000", "analysing its 3 layers' Σx and Σ∇h", "needs at least 4.5 GiB"]);
    // A step's activations count too: ResNet-20's on the 12,000 synthetic examples at once.
    let resnet = ["train", "--model", "resnet", "--depth", "20", "--data", "synthetic-cifar", "--out", out];
    let batch = in_4gb(&[&resnet[..], &["--batch-size", "12000", "--analyze-every", "0"]].concat());
    assert_error(
        &batch,
        &["--batch-size, --depth", "or the model:", "training resnet-20", "plus the activations of 12000 examples", "needs at least"],
    );
    // Analysed, the flags say how to turn the analysis off too.
    let full = in_4gb(&[&resnet[..], &["--optimizer", "gd"]].concat());
    let flags =
        "--limit-train (full-batch descent steps on every example), --depth, --width, --base-width or the model (or --analyze-every 0";
    assert_error(&full, &[flags, "the activations of 12000 examples"]);
    assert!([&wide, &adam, &analysed, &batch, &full].iter().all(|o| named_limit(o)), "{}\n{}", stderr(&wide), stderr(&adam));
    assert!(!Path::new(out).exists(), "a refused run wrote {out}");
}

#[cfg(not(feature = "cuda-backend"))]
#[test]
fn cuda_without_the_feature_is_a_typed_error() {
    let out = scratch("cuda").join("run");
    assert_error(&kappa(&["train", "--device", "cuda:0", "--out", out.to_str().unwrap()]), &["cuda", "feature"]);
}

#[test]
fn mnist_input_errors_name_the_file() {
    let dir = scratch("mnist");
    // Each its own run directory: a taken one is refused before the data are read.
    let run = |data: &Path| {
        let out = dir.join("runs").join(data.file_name().unwrap());
        small_train(&out, &["--data", "mnist", "--data-dir", data.to_str().unwrap(), "--iterations", "1"])
    };

    let missing = dir.join("missing");
    std::fs::create_dir_all(&missing).unwrap();
    assert_error(&run(&missing), &["train-images-idx3-ubyte"]);

    let good = dir.join("good");
    std::fs::create_dir_all(&good).unwrap();
    write_mnist(&good, 40, 3);
    let o = run(&good);
    assert!(o.status.success(), "valid fixture failed: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("on mnist"));

    let truncated = dir.join("truncated");
    std::fs::create_dir_all(&truncated).unwrap();
    write_mnist(&truncated, 40, 3);
    let path = truncated.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    assert_error(&run(&truncated), &["train-images-idx3-ubyte"]);

    let magic = dir.join("magic");
    std::fs::create_dir_all(&magic).unwrap();
    write_mnist(&magic, 40, 3);
    let path = magic.join("t10k-labels-idx1-ubyte");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] = 0x07;
    std::fs::write(&path, bytes).unwrap();
    assert_error(&run(&magic), &["t10k-labels-idx1-ubyte", "2049"]);

    let labels = dir.join("labels");
    std::fs::create_dir_all(&labels).unwrap();
    write_mnist(&labels, 40, 12);
    assert_error(&run(&labels), &["train-labels-idx1-ubyte", "12"]);

    // Test images of another size than the training images (here 20×20, the same 40 examples).
    let sizes = dir.join("sizes");
    std::fs::create_dir_all(&sizes).unwrap();
    write_mnist(&sizes, 40, 3);
    let mut img = [be32(2051), be32(40), be32(20), be32(20)].concat();
    img.extend((0..40 * 400).map(|i| (i % 251) as u8));
    std::fs::write(sizes.join("t10k-images-idx3-ubyte"), img).unwrap();
    assert_error(&run(&sizes), &["t10k-images-idx3-ubyte", "20×20", "28×28"]);
}

/// A reader that stops early (`kappa … | head -1`) ends the run quietly, as
/// it ends any Unix tool, not with a panic at the next print.
#[test]
fn a_closed_output_pipe_ends_the_run_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // The reading end is closed before kappa starts, so its first print meets a closed pipe.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(env!("CARGO_BIN_EXE_kappa")).arg("models").stdout(writer).output().expect("run kappa");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.signal(), Some(13), "ended by SIGPIPE: {:?}", o.status);
}

#[test]
fn models_and_help_read_well() {
    let o = kappa(&["models"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("mlp"));
    let o = kappa(&["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    for word in ["train", "models", "data", "conditioned"] {
        assert!(help.contains(word), "--help lacks {word}: {help}");
    }
}

fn records(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn training_with_analysis_logs_every_layer_and_prints_the_table() {
    let out = scratch("analysis").join("run");
    let o = small_train(&out, &["--iterations", "4", "--analyze-every", "2", "--analysis-batches", "2", "--analysis-mode", "fisher"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("conditioning at iteration 4"));
    let analysis: Vec<_> = records(&out).into_iter().filter(|r| r["kind"] == "analysis").collect();
    // Iterations 0, 2 and 4 (the state after the last update), three layers each.
    assert_eq!(analysis.len(), 9);
    assert_eq!(analysis.iter().map(|r| r["iteration"].as_u64().unwrap()).collect::<Vec<_>>(), vec![0, 0, 0, 2, 2, 2, 4, 4, 4]);
    for r in &analysis {
        assert_eq!(r["mode"], "fisher");
        for key in ["sigma_x", "sigma_grad"] {
            let s = &r[key];
            assert!(s["lambda_max"].as_f64().unwrap() > 0.0, "{r}");
            assert!(s["kappa"]["50"].is_number() || s["kappa"]["50"].is_null());
        }
        assert!(r["weight"]["ratio"].as_f64().unwrap() > 0.0);
    }
    assert_eq!(analysis.iter().filter(|r| r["last"] == true).count(), 3);
}

/// The same run on 1, 2 and 3 threads writes the same numbers, bit for bit:
/// every parallel pass cuts its work into fixed chunks, whichever thread
/// takes them, and from 2 threads up the main thread is one of the workers
/// (`kappa::workers`). The default MLP's products and passes are large
/// enough to run in parallel, and the analysis adds the moments and solves.
#[test]
fn a_run_writes_the_same_bits_on_any_thread_count() {
    let dir = scratch("threads");
    let run = |threads: &str| {
        let out = dir.join(threads);
        let o = Command::new(env!("CARGO_BIN_EXE_kappa"))
            .env("RAYON_NUM_THREADS", threads)
            .args(["train", "--iterations", "6", "--analyze-every", "3", "--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(o.status.success(), "{threads} threads: {}", stderr(&o));
        let mut records = records(&out);
        records.iter_mut().for_each(|r| _ = r.as_object_mut().unwrap().remove("examples_per_second"));
        records
    };
    let one = run("1");
    let mut analysed: Vec<u64> = one.iter().filter(|r| r["kind"] == "analysis").map(|r| r["iteration"].as_u64().unwrap()).collect();
    analysed.dedup();
    assert_eq!(analysed, [0, 3, 6]);
    assert!(one.iter().any(|r| r["kind"] == "train"));
    for threads in ["2", "3"] {
        assert!(run(threads) == one, "{threads} threads wrote other numbers than 1");
    }
}

#[test]
fn analyze_exact_compares_the_exact_fim_with_the_kronecker_form() {
    let out = scratch("exact").join("run");
    let o = kappa(&[
        "analyze",
        "--exact",
        "--depth",
        "3",
        "--width",
        "8",
        "--crop-resize",
        "20:12",
        "--examples",
        "64",
        "--limit-train",
        "256",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let exact: Vec<_> = records(&out).into_iter().filter(|r| r["kind"] == "exact").collect();
    // F and M: the full matrix and three layer blocks each.
    assert_eq!(exact.len(), 8);
    for r in &exact {
        let e = r["exact"]["lambda_max"].as_f64().unwrap();
        assert!(e > 0.0 && r["exact"]["rank"].as_u64().unwrap() <= 64);
        if r["block"] != "full" {
            let k = r["kronecker"]["lambda_max"].as_f64().unwrap();
            assert!(k > 0.0 && (k / e).ln().abs() < 3.0, "Kronecker λmax {k} far from exact {e}");
        }
    }
}

#[test]
fn reproduce_lists_presets_and_rejects_unknown_names() {
    let o = kappa(&["reproduce", "--list"]);
    let list = String::from_utf8_lossy(&o.stdout);
    let names =
        ["fig1", "figA4", "fig3", "figA5", "figA7", "figA8", "figA12", "fig9", "table1", "tableA1", "tableA2", "tau", "luckmatters-matrix"];
    for name in names {
        assert!(list.contains(name), "{list}");
    }
    assert_error(&kappa(&["reproduce", "fig99"]), &["fig99", "fig3", "figA13"]);
    // fig1 is computed in f64: the device is the flag at fault, before anything trains.
    let out = scratch("fig1-on-cuda").join("out");
    let o = kappa(&["reproduce", "fig1", "--allow-synthetic", "--device", "cuda:0", "--out", out.to_str().unwrap()]);
    assert_error(&o, &["--device", "fig1", "f64", "CPU only"]);
    assert!(!out.join("plain").exists(), "a refused preset trains nothing");
    // The LuckMatters scripts make their own data on the host: a flag they would ignore is named.
    for (flag, value) in [("--device", Some("cuda:0")), ("--data-dir", Some("data")), ("--allow-synthetic", None)] {
        let out = scratch("luckmatters-flags").join("out");
        let args = [&["reproduce", "luckmatters-matrix", flag][..], value.as_slice(), &["--out", out.to_str().unwrap()]].concat();
        assert_error(&kappa(&args), &[flag, "luckmatters-matrix is a script"]);
        assert!(!out.exists(), "{flag}: a refused script wrote its directory");
    }
}

#[test]
fn reproduce_without_its_dataset_says_what_to_fetch() {
    let empty = scratch("no-data");
    let dir = empty.to_str().unwrap();
    let out = empty.join("out");
    let fetches = [
        ("fig4", "kappa data fetch mnist"),
        ("fig6", "kappa data fetch cifar10"),
        ("table2", "kappa data fetch cifar100"),
        ("tableA1", "val/<wnid>/*.JPEG"),
    ];
    for (preset, fetch) in fetches {
        let o = kappa(&["reproduce", preset, "--data-dir", dir, "--out", out.to_str().unwrap()]);
        assert_error(&o, &[fetch, "not found in", dir, "--allow-synthetic"]);
    }
    assert!(!out.exists(), "nothing runs without the data");
}

#[test]
fn reproduce_fig1_puts_plain_far_below_bn() {
    let out = scratch("fig1").join("out");
    let o = kappa(&["reproduce", "fig1", "--allow-synthetic", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("synthetic data") && stdout.contains("expected (paper)"), "{stdout}");
    let full_fim = |run: &str| {
        let r = records(&out.join(run)).into_iter().find(|r| r["kind"] == "exact" && r["matrix"] == "fim" && r["block"] == "full");
        r.unwrap()["exact"]["lambda_max"].as_f64().unwrap()
    };
    let (plain, bn) = (full_fim("plain"), full_fim("bn"));
    assert!(plain * 100.0 < bn, "the plain net's gradients vanish: λmax {plain} vs BN's {bn}");
    assert!(out.join("report.md").is_file());
    // The measured conditioning is printed next to the expectation and heads the page.
    assert!(stdout.contains("measured conditioning at the last analysis:\n  plain "), "{stdout}");
    let page = std::fs::read_to_string(out.join("report.html")).unwrap();
    for want in ["kappa reproduce fig1", "expected (paper)", "measured: plain", "κ50%(Σx)", "<svg"] {
        assert!(page.contains(want), "report.html lacks {want:?}");
    }
    // Each claim gets a verdict with the numbers it compared, on the terminal, in report.md and on the page.
    let claim = "Plain's full-FIM λmax at least 100× below BN's at initialisation";
    let verdict = format!("  [agrees] {claim} (paper: ~1e-5 vs ~1)\n      full fim λmax: plain ");
    assert!(stdout.contains("claims against the measurements:\n") && stdout.contains(&verdict), "{stdout}");
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(
        md.contains("## The paper's claims against the measurements")
            && md.contains(&format!("| {claim} (paper: ~1e-5 vs ~1) | agrees | full fim λmax: plain ")),
        "{md}"
    );
    assert!(page.contains("<td>agrees</td>"), "report.html has no verdict");
}

#[test]
fn report_renders_a_run() {
    let dir = scratch("report");
    let out = dir.join("run");
    assert!(small_train(&out, &["--iterations", "4", "--analyze-every", "2"]).status.success());
    let o = kappa(&["report", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("run"), "{md}");
    assert_error(&kappa(&["report", dir.join("nothing").to_str().unwrap()]), &["nothing"]);
}

/// A flag the model or the data pipeline does not read was recorded in
/// config.json and ignored; it is refused, naming the flag and the model or
/// data, before anything is written.
#[test]
fn flags_the_model_does_not_read_are_refused() {
    let dir = scratch("unread-flags");
    let out = dir.join("run");
    let out = out.to_str().unwrap();
    let cases: [(&[&str], &[&str]); 13] = [
        (&["--model", "vgg16", "--depth", "19"], &["--depth", "--model vgg16 does not read it", "fixed"]),
        (&["--model", "resnet", "--width", "512"], &["--width", "--model resnet does not read it"]),
        (&["--model", "resnet", "--bn"], &["--bn", "--model resnet"]),
        (&["--model", "preresnet", "--init", "lecun"], &["--init", "--model preresnet"]),
        (&["--base-width", "8"], &["--base-width", "--model mlp"]),
        (&["--model", "vgg16", "--family", "cifar"], &["--family", "--model vgg16"]),
        (&["--model", "vgg", "--shortcut", "b"], &["--shortcut", "--model vgg does not read it"]),
        (&["--model", "resnet", "--family", "imagenet", "--shortcut", "a"], &["--shortcut", "on the imagenet layout", "always projects"]),
        (&["--model", "resnet", "--lastbn-gamma", "uniform"], &["--lastbn-gamma", "*-lastbn"]),
        (&["--dropout", "0.3"], &["--dropout", "--model mlp"]),
        (&["--padding", "reflect"], &["--padding", "without --augment"]),
        (&["--crop-size", "160"], &["--crop-size", "--data synthetic does not read it"]),
        (&["--resize", "180"], &["--resize", "ImageNet's crops"]),
    ];
    for (flags, needles) in cases {
        for command in ["train", "analyze"] {
            assert_error(&kappa(&[&[command][..], flags, &["--out", out]].concat()), needles);
            assert!(!dir.join("run").exists(), "{command} {flags:?} wrote its run directory");
        }
    }
    // The same flags where the model reads them are taken (an analysis at initialisation each).
    for (i, flags) in [
        &["--model", "resnet", "--shortcut", "b", "--dropout", "0.1", "--depth", "8"][..],
        &["--model", "resnet-lastbn", "--lastbn-gamma", "uniform", "--depth", "8"],
        &["--bn", "--init", "lecun", "--width", "8", "--depth", "3"],
    ]
    .iter()
    .enumerate()
    {
        let out = dir.join(format!("read-{i}"));
        let data: &[&str] = if flags[0] == "--model" { &["--data", "synthetic-cifar"] } else { &[] };
        let o =
            kappa(&[&["analyze", "--limit-train", "64", "--batch-size", "32", "--out", out.to_str().unwrap()][..], data, flags].concat());
        assert!(o.status.success(), "{flags:?}: {}", stderr(&o));
    }
}

#[test]
fn the_last_layer_input_grows_with_depth_unless_a_bn_precedes_it() {
    // λmax(Σx) of the last linear layer's input at initialisation (paper Fig. 6, 7).
    let last_lambda = |model: &str, depth: &str| {
        let out = scratch(&format!("last-{model}-{depth}")).join("run");
        let args = ["analyze", "--model", model, "--depth", depth, "--data", "synthetic-cifar", "--limit-train", "128"];
        let o = kappa(
            &[&args[..], &["--batch-size", "64", "--analysis-batches", "2", "--conv-stat", "channel", "--out", out.to_str().unwrap()]]
                .concat(),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let last = records(&out).into_iter().find(|r| r["kind"] == "analysis" && r["last"] == true).unwrap();
        last["sigma_x"]["lambda_max"].as_f64().unwrap()
    };
    let (shallow, deep, lastbn) = (last_lambda("resnet", "8"), last_lambda("resnet", "44"), last_lambda("resnet-lastbn", "44"));
    // A preset's epochs do not make `analyze` train: it still analyses the initialisation.
    let out = scratch("analyze-preset").join("run");
    let args = ["analyze", "--preset", "lca-cifar", "--data", "synthetic-cifar", "--depth", "8", "--limit-train", "256"];
    let o = kappa(&[&args[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(records(&out).iter().all(|r| r["kind"] != "train" && r["iteration"].as_u64().unwrap_or(0) == 0));
    assert!(deep > 2.0 * shallow, "ResNet-44's last input λmax {deep} vs ResNet-8's {shallow}");
    assert!(lastbn * 4.0 < deep, "the last BN keeps it down: {lastbn} vs {deep}");
    // Fig. 9: PreResNet's final BN does the same; PreResNetv1, without it, does not.
    let (pre, v1) = (last_lambda("preresnet", "44"), last_lambda("preresnet-v1", "44"));
    assert!(pre * 4.0 < v1, "PreResNet-44 {pre} vs PreResNetv1-44 {v1}");
    // Table A2: with γ = 1 the last BN gives each of the 64 channels second
    // moment 1 (trace 64), so λmax(Σx) lies in [1, 64] whatever the BN-free net below does.
    let vgg_lastbn = last_lambda("vgg-nobn-lastbn", "44");
    assert!((1.0..=64.0).contains(&vgg_lastbn), "VGG-44 (no BN) with the last BN: {vgg_lastbn}");
}

#[test]
fn without_bn_tau_keeps_a_deep_resnet_trainable() {
    // The first step's loss, or None when the run diverged.
    let first_loss = |model: &str| {
        let out = scratch(&format!("tau-{model}")).join("run");
        let args = ["train", "--preset", "tau-cifar", "--model", model, "--depth", "56", "--data", "synthetic-cifar", "--log-every", "1"];
        let o = kappa(
            &[
                &args[..],
                &[
                    "--limit-train",
                    "256",
                    "--batch-size",
                    "32",
                    "--iterations",
                    "3",
                    "--analyze-every",
                    "0",
                    "--out",
                    out.to_str().unwrap(),
                ],
            ]
            .concat(),
        );
        assert!(o.status.success(), "divergence is a result, not a failure: {}", stderr(&o));
        let first = records(&out).into_iter().find(|r| r["kind"] == "train").unwrap();
        first["loss"].as_f64()
    };
    // Without BN or τ the residual branches add up: the logits of ResNet-56 explode at initialisation.
    assert!(first_loss("resnet-nobn").is_none_or(|l| l > 100.0));
    let tau = first_loss("tau-resnet-nobn").expect("tau-resnet-nobn does not diverge");
    assert!(tau < 5.0, "tau-resnet-nobn-56 starts near chance (ln 10 ≈ 2.3), not at {tau}");
}

#[test]
fn a_deep_bn_net_without_shortcuts_explodes_then_dominates() {
    // Fig. A11 b, at depth 56: the sub-FIMs' λmax explodes towards the lower
    // layers at initialisation, and the first step's huge gradients grow the
    // lowest weights so much that their gradient/weight ratio collapses.
    let out = scratch("a11b").join("run");
    let args = ["train", "--model", "vgg", "--depth", "56", "--data", "synthetic-cifar", "--limit-train", "256", "--batch-size", "32"];
    let rest = ["--iterations", "1", "--analyze-every", "1", "--conv-stat", "channel", "--lr", "0.1", "--momentum", "0.9"];
    let o = kappa(&[&args[..], &rest[..], &["--out", out.to_str().unwrap()]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    let layers = |iteration: u64| {
        let mut a: Vec<_> = records(&out).into_iter().filter(|r| r["kind"] == "analysis" && r["iteration"] == iteration).collect();
        a.sort_by_key(|r| r["index"].as_u64());
        a
    };
    let (init, stepped) = (layers(0), layers(1));
    assert_eq!((init.len(), stepped.len()), (56, 56));
    let fim = |r: &serde_json::Value| r["fim"]["lambda_max"].as_f64().unwrap();
    let ratio = |r: &serde_json::Value| r["weight"]["ratio"].as_f64().unwrap();
    // init[54] is the top conv (55 convs, then fc).
    assert!(fim(&init[0]) > 1e4 * fim(&init[54]), "sub-FIM λmax, bottom conv {} vs top conv {}", fim(&init[0]), fim(&init[54]));
    assert!(
        ratio(&stepped[0]) * 100.0 < ratio(&init[0]),
        "layer 1's ratio {} before the step, {} after",
        ratio(&init[0]),
        ratio(&stepped[0])
    );
}
