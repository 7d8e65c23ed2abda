//! `kappa train --tensorboard DIR`: the event files decoded here byte by byte
//! (TFRecord framing, masked CRC-32C, the Event protobuf) and read back by
//! Python's `tensorboard` package (skipped without it, except under CI), each
//! holding exactly what metrics.jsonl logged.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;
use common::{assert_error, kappa, succeed, TempDir};

/// Per tag, its (step, value) points in the order written.
type Scalars = BTreeMap<String, Vec<(u64, f32)>>;
/// Per tag, its (step, text) entries.
type Texts = BTreeMap<String, Vec<(u64, String)>>;

/// A small analysed BN run whose every layer is flagged weight-dominated at
/// iteration 0, so alerts are logged; returns the run and TensorBoard directories.
fn run(dir: &Path) -> (PathBuf, PathBuf) {
    let (out, tb) = (dir.join("run"), dir.join("tb"));
    succeed(&[
        "train",
        "--depth",
        "3",
        "--width",
        "16",
        "--bn",
        "--limit-train",
        "256",
        "--batch-size",
        "32",
        "--iterations",
        "12",
        "--log-every",
        "4",
        "--analyze-every",
        "6",
        "--analysis-batches",
        "1",
        "--kappa-p",
        "50,100",
        "--domination-threshold",
        "1e9",
        "--out",
        out.to_str().unwrap(),
        "--tensorboard",
        tb.to_str().unwrap(),
    ]);
    (out, tb)
}

/// What the event files must hold, from metrics.jsonl by the tag scheme
/// that `kappa train --help` and src/train/tensorboard.rs describe.
fn expected(run: &Path) -> (Scalars, Texts) {
    let (mut scalars, mut texts) = (Scalars::new(), Texts::new());
    let mut put = |tag: String, step: u64, v: &Value| {
        if let Some(v) = v.as_f64() {
            scalars.entry(tag).or_default().push((step, v as f32));
        }
    };
    for line in std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines() {
        let r: Value = serde_json::from_str(line).unwrap();
        let step = r["iteration"].as_u64().unwrap();
        match r["kind"].as_str().unwrap() {
            "train" => ["loss", "accuracy", "lr", "examples_per_second"].iter().for_each(|k| put(format!("train/{k}"), step, &r[k])),
            "eval" => ["test_loss", "test_accuracy", "test_top1_error", "test_top5_error"]
                .iter()
                .for_each(|k| put(format!("eval/{k}"), step, &r[k])),
            "analysis" => {
                let layer = r["layer"].as_str().unwrap();
                for m in ["sigma_x", "sigma_grad"] {
                    put(format!("{m}.lambda_max/{layer}"), step, &r[m]["lambda_max"]);
                    for (p, k) in r[m]["kappa"].as_object().unwrap() {
                        put(format!("{m}.kappa_{p}/{layer}"), step, k);
                    }
                }
                put(format!("grad_weight_ratio/{layer}"), step, &r["weight"]["ratio"]);
                put(format!("dead_fraction/{layer}"), step, &r["neurons"]["dead_fraction"]);
            }
            "alert" => {
                let tag = format!("alerts/{}/{}", r["layer"].as_str().unwrap(), r["alert"].as_str().unwrap());
                texts.entry(tag).or_default().push((step, r["detail"].as_str().unwrap().to_string()));
            }
            _ => {}
        }
    }
    (scalars, texts)
}

/// CRC-32C bit by bit (reflected polynomial 0x82F63B78), apart from kappa's table.
fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 == 1 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
        }
    }
    !c
}

fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// A protobuf message as (field, wire type, varint or payload) in order.
type Fields = Vec<(u64, u8, u64, Vec<u8>)>;

fn fields(mut b: &[u8]) -> Fields {
    fn varint(b: &mut &[u8]) -> u64 {
        let (mut v, mut shift) = (0u64, 0);
        loop {
            let byte = b[0];
            *b = &b[1..];
            v |= ((byte & 0x7f) as u64) << shift;
            shift += 7;
            if byte < 0x80 {
                return v;
            }
        }
    }
    let mut out = vec![];
    while !b.is_empty() {
        let key = varint(&mut b);
        let (field, wire) = (key >> 3, (key & 7) as u8);
        let take = |b: &mut &[u8], n: usize| {
            let (head, tail) = b.split_at(n);
            *b = tail;
            head.to_vec()
        };
        let entry = match wire {
            0 => (field, wire, varint(&mut b), vec![]),
            1 => (field, wire, 0, take(&mut b, 8)),
            2 => {
                let n = varint(&mut b) as usize;
                (field, wire, 0, take(&mut b, n))
            }
            5 => (field, wire, 0, take(&mut b, 4)),
            other => panic!("wire type {other}"),
        };
        out.push(entry);
    }
    out
}

fn field(msg: &[(u64, u8, u64, Vec<u8>)], number: u64) -> Option<&(u64, u8, u64, Vec<u8>)> {
    msg.iter().find(|f| f.0 == number)
}

/// Every event of `dir`'s one event file, checking each record's framing and CRCs.
fn decode(dir: &Path) -> (Vec<Fields>, Scalars, Texts) {
    let files: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].file_name().unwrap().to_str().unwrap().starts_with("events.out.tfevents."), "{files:?}");
    let bytes = std::fs::read(&files[0]).unwrap();
    let (mut events, mut scalars, mut texts) = (vec![], Scalars::new(), Texts::new());
    let mut at = 0;
    while at < bytes.len() {
        let len_bytes = &bytes[at..at + 8];
        let len = u64::from_le_bytes(len_bytes.try_into().unwrap()) as usize;
        assert_eq!(u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()), masked(len_bytes), "length CRC at byte {at}");
        let data = &bytes[at + 12..at + 12 + len];
        assert_eq!(u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap()), masked(data), "data CRC at byte {at}");
        at += 16 + len;
        let event = fields(data);
        let step = field(&event, 2).map_or(0, |f| f.2);
        if let Some(summary) = field(&event, 5) {
            for value in fields(&summary.3) {
                let value = fields(&value.3);
                let tag = String::from_utf8(field(&value, 1).unwrap().3.clone()).unwrap();
                if let Some(v) = field(&value, 2) {
                    assert_eq!(v.1, 5, "simple_value is a fixed32 float");
                    scalars.entry(tag).or_default().push((step, f32::from_le_bytes(v.3.clone().try_into().unwrap())));
                } else {
                    let tensor = fields(&field(&value, 8).unwrap().3);
                    assert_eq!(field(&tensor, 1).unwrap().2, 7, "DT_STRING");
                    let plugin = fields(&field(&fields(&field(&value, 9).unwrap().3), 1).unwrap().3);
                    assert_eq!(field(&plugin, 1).unwrap().3, b"text");
                    texts.entry(tag).or_default().push((step, String::from_utf8(field(&tensor, 8).unwrap().3.clone()).unwrap()));
                }
            }
        }
        events.push(event);
    }
    assert_eq!(at, bytes.len(), "the file ends on a record boundary");
    (events, scalars, texts)
}

#[test]
fn the_event_file_decodes_to_what_the_metrics_logged() {
    let dir = TempDir::new("tb-decode");
    let (out, tb) = run(dir.path());
    let (events, scalars, texts) = decode(&tb);
    // The file opens with its version; every event has a wall time.
    assert_eq!(field(&events[0], 3).unwrap().3, b"brain.Event:2");
    assert!(events.iter().all(|e| field(e, 1).is_some_and(|t| f64::from_le_bytes(t.3.clone().try_into().unwrap()) > 1.6e9)));

    let (want_scalars, want_texts) = expected(&out);
    assert_eq!(scalars, want_scalars);
    assert_eq!(texts, want_texts);
    // What the test compares is there: 3 layers × 3 analyses, training every 4 steps, alerts.
    assert_eq!(scalars["sigma_grad.lambda_max/layers.1"].iter().map(|p| p.0).collect::<Vec<_>>(), [0, 6, 12]);
    assert_eq!(scalars["train/loss"].iter().map(|p| p.0).collect::<Vec<_>>(), [4, 8, 12]);
    assert!(scalars.contains_key("eval/test_top1_error") && scalars.contains_key("dead_fraction/layers.0"), "{:?}", scalars.keys());
    assert!(texts.len() >= 3, "{texts:?}");
    assert!(texts["alerts/output/weight-domination"][0].0 == 0, "{texts:?}");
}

/// The Python to read the events with: `KAPPA_TB_PYTHON` (CI points it at a
/// venv with the `tensorboard` package), else `python3`.
fn python() -> Option<String> {
    let py = std::env::var("KAPPA_TB_PYTHON").unwrap_or_else(|_| "python3".into());
    let ok = Command::new(&py)
        .args(["-c", "import tensorboard.backend.event_processing.event_accumulator"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(py)
}

#[test]
fn tensorboard_reads_the_events_back() {
    let Some(py) = python() else {
        if std::env::var_os("CI").is_some() {
            panic!("no Python with the tensorboard package (KAPPA_TB_PYTHON, or python3): .ci/run sets up a venv with it");
        }
        println!("SKIPPED: no Python with the tensorboard package (set KAPPA_TB_PYTHON to one) to read the events with");
        return;
    };
    let dir = TempDir::new("tb-python");
    let (out, tb) = run(dir.path());
    // TensorBoard's own loader: it checks both CRCs of every record and sorts values by kind.
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0, "tensors": 0})
acc.Reload()
tags = acc.Tags()
scalars = {t: [[e.step, e.value] for e in acc.Scalars(t)] for t in tags["scalars"]}
texts = {}
for t in tags["tensors"]:
    assert acc.SummaryMetadata(t).plugin_data.plugin_name == "text", t
    texts[t] = [[e.step, b"".join(e.tensor_proto.string_val).decode()] for e in acc.Tensors(t)]
print(json.dumps({"scalars": scalars, "texts": texts}))
"#;
    let o = Command::new(&py).args(["-c", script, tb.to_str().unwrap()]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let read: Value = serde_json::from_slice(&o.stdout).unwrap();
    let scalars: Scalars = read["scalars"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, pts)| {
            (t.clone(), pts.as_array().unwrap().iter().map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap() as f32)).collect())
        })
        .collect();
    let texts: Texts = read["texts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(t, es)| {
            (t.clone(), es.as_array().unwrap().iter().map(|e| (e[0].as_u64().unwrap(), e[1].as_str().unwrap().to_string())).collect())
        })
        .collect();
    let (want_scalars, want_texts) = expected(&out);
    assert_eq!(scalars, want_scalars);
    assert_eq!(texts, want_texts);
    assert!(scalars.len() >= 25 && !texts.is_empty(), "{:?}", scalars.keys());
}

#[test]
fn a_tensorboard_folder_that_cannot_be_made_is_an_error_before_the_run_starts() {
    let dir = TempDir::new("tb-bad");
    let file = dir.write("file", b"");
    let (out, tb) = (dir.path().join("run"), file.join("tb"));
    let o = kappa(&["train", "--iterations", "1", "--out", out.to_str().unwrap(), "--tensorboard", tb.to_str().unwrap()]);
    assert_error(&o, &["tb", "cannot create the TensorBoard directory"]);
    assert!(!out.exists(), "a refused run left {} behind", out.display());
}
