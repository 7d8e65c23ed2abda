//! One ImageNet JPEG, entered where the folder's streaming decodes each file:
//! its bytes to the transformed example, by the eval and the train transform.
//! The folder contributes only the file's path and class, which the bytes
//! cannot influence, so the folder itself is not rebuilt for every input.
//! The geometry is small (16-pixel crops, as `--crop-size 16 --resize 18`
//! would give) to keep each input fast; the decoder sees the input whole.
#![no_main]

use kappa::data::imagenet_transform::{PhotoTransform, TrainAugment};
use kappa::data::{jpeg, Normalize};
use kappa_fuzz::cap;
use kappa_fuzz::verdict::named;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const SIZE: usize = 16;

/// A panic inside zune-jpeg is caught by kappa (`jpeg::decode`), where it
/// costs one image and becomes the error naming the file, which the target
/// checks; libFuzzer's hook would abort on it first, so it is passed over.
fn pass_over_decoder_panics() {
    let abort = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !info.location().is_some_and(|at| at.file().contains("/zune-jpeg-")) {
            abort(info);
        }
    }));
}

fuzz_target!(init: pass_over_decoder_panics(), |bytes: &[u8]| {
    cap::input(bytes.len());
    let path = Path::new("train/n01440764/n01440764_10026.JPEG");
    let Some(img) = named(jpeg::decode(path, bytes), path) else { return };
    assert_eq!(img.pixels.len(), 3 * img.width * img.height);
    let eval = PhotoTransform::eval(SIZE, SIZE + 2, Some(Normalize::IMAGENET));
    let train = PhotoTransform::train(SIZE, TrainAugment::RECIPE, Some(Normalize::IMAGENET), 7);
    for transform in [eval, train] {
        let example = transform.apply(&img, 3, 5);
        assert_eq!(example.len(), 3 * SIZE * SIZE);
        assert!(example.iter().all(|v| v.is_finite()), "a non-finite value in the example");
    }
});
