//! Residual blocks, basic (two 3×3 convs) and bottleneck (1×1, 3×3, 1×1),
//! post- or pre-activation, with every shortcut the variants use.
//!
//! Values that no backward rule saves (a BN output feeding a ReLU, a sum
//! feeding a ReLU) are released from the tape as soon as the next op has
//! read them: at ResNet-1202 depth that is most of the activation memory.

use super::Builder;
use crate::autograd::{Tape, Var};
use crate::backend::Backend;
use crate::error::Result;
use crate::nn::{BatchNorm, Conv2d, ConvSpec, Scalar};
use crate::param::ParamStore;

/// How the block input reaches the sum.
pub(super) enum Shortcut {
    Identity,
    /// Strided subsample and zero channels (type A), optionally followed by a BN.
    Pad {
        stride: usize,
        out: usize,
        bn: Option<BatchNorm>,
    },
    /// A strided 1×1 conv, with a BN when the net has them (type B).
    Project {
        conv: Conv2d,
        bn: Option<BatchNorm>,
    },
}

/// What multiplies the residual branch before the sum.
#[derive(Clone, Copy)]
pub(super) enum Tau<'a> {
    One,
    Fixed(f64),
    Learned(&'a Scalar),
}

pub(super) struct Block {
    convs: Vec<Conv2d>,
    /// Post-activation: the BN after each conv; pre-activation: the BN before it.
    bns: Vec<Option<BatchNorm>>,
    /// `None`: no shortcut at all (the VGG variants).
    shortcut: Option<Shortcut>,
    pre_activation: bool,
    /// Pre-activation: the first block of a stage takes its shortcut from the
    /// pre-activated input.
    split_after_preact: bool,
    /// Fixup scalar biases: before each conv and before each ReLU, and one after the branch.
    fixup: Vec<Scalar>,
}

/// What to build: channels, stride, kind, and where it sits.
pub(super) struct BlockSpec<'a> {
    pub name: &'a str,
    pub c_in: usize,
    /// Width of the 3×3 conv(s); a bottleneck's output is four times this.
    pub planes: usize,
    pub stride: usize,
    pub bottleneck: bool,
    pub first_of_stage: bool,
}

impl Block {
    pub const EXPANSION: usize = 4;

    pub fn out_channels(spec: &BlockSpec) -> usize {
        if spec.bottleneck {
            spec.planes * Block::EXPANSION
        } else {
            spec.planes
        }
    }

    pub fn new<B: Backend>(b: &mut Builder<'_, B>, spec: &BlockSpec) -> Result<Self> {
        let v = b.config.variant;
        let (name, p) = (spec.name, spec.planes);
        let out = Block::out_channels(spec);
        let convs_spec: Vec<ConvSpec> = if spec.bottleneck {
            vec![
                ConvSpec { c_in: spec.c_in, c_out: p, k: 1, stride: 1, pad: 0 },
                ConvSpec { c_in: p, c_out: p, k: 3, stride: spec.stride, pad: 1 },
                ConvSpec { c_in: p, c_out: out, k: 1, stride: 1, pad: 0 },
            ]
        } else {
            vec![
                ConvSpec { c_in: spec.c_in, c_out: p, k: 3, stride: spec.stride, pad: 1 },
                ConvSpec { c_in: p, c_out: p, k: 3, stride: 1, pad: 1 },
            ]
        };
        let (mut convs, mut bns, mut fixup) = (Vec::new(), Vec::new(), Vec::new());
        for (i, cs) in convs_spec.iter().enumerate() {
            let n = i + 1;
            if v.fixup() {
                fixup.push(b.scalar(&format!("{name}.bias{n}a"), 0.0)?);
            }
            // Pre-activation BNs normalise the conv's input, so they belong with it.
            let pre_bn = (v.pre_activation() && v.block_bn()).then(|| b.bn(&format!("{name}.bn{n}"), cs.c_in, 1)).transpose()?;
            convs.push(b.conv(&format!("{name}.conv{n}"), *cs)?);
            let post_bn = (!v.pre_activation() && v.block_bn()).then(|| b.bn(&format!("{name}.bn{n}"), cs.c_out, 0)).transpose()?;
            bns.push(pre_bn.or(post_bn));
            if v.fixup() {
                fixup.push(b.scalar(&format!("{name}.bias{n}b"), 0.0)?);
            }
        }
        let needs_projection = spec.stride != 1 || spec.c_in != out;
        let shortcut = match (v.shortcuts(), needs_projection) {
            (false, _) => None,
            (true, false) => Some(Shortcut::Identity),
            (true, true) if b.config.shortcut_b() => {
                let conv =
                    b.conv(&format!("{name}.downsample.0"), ConvSpec { c_in: spec.c_in, c_out: out, k: 1, stride: spec.stride, pad: 0 })?;
                let bn = v.block_bn().then(|| b.bn(&format!("{name}.downsample.1"), out, 0)).transpose()?;
                Some(Shortcut::Project { conv, bn })
            }
            (true, true) => {
                // The BN-free tau-ResNet normalises its subsampled shortcut.
                let bn = v.fixup().then(|| b.bn(&format!("{name}.downsample.1"), out, 0)).transpose()?;
                Some(Shortcut::Pad { stride: spec.stride, out, bn })
            }
        };
        Ok(Block { convs, bns, shortcut, pre_activation: v.pre_activation(), split_after_preact: spec.first_of_stage, fixup })
    }

    pub fn forward<B: Backend>(&self, tape: &mut Tape<B>, store: &mut ParamStore<B>, x: Var, train: bool, tau: Tau) -> Result<Var> {
        // Post-activation, unscaled, with a shortcut: the last BN, the sum and
        // the ReLU are one op, neither the normalised branch nor the sum stored.
        if let (false, Tau::One, true, Some(shortcut), Some(Some(bn))) =
            (self.pre_activation, &tau, self.fixup.is_empty(), &self.shortcut, self.bns.last())
        {
            let branch = self.branch_post(tape, store, x, train, false)?;
            let short = shortcut.forward(tape, store, x, train)?;
            return bn.forward_add_relu(tape, store, branch, short, train);
        }
        let (branch, source) =
            if self.pre_activation { self.branch_pre(tape, store, x, train)? } else { (self.branch_post(tape, store, x, train, true)?, x) };
        let branch = match tau {
            Tau::One => branch,
            Tau::Fixed(t) => consume(tape, branch, |t_, v| t_.scale(v, t))?,
            Tau::Learned(s) => s.scale(tape, store, branch)?,
        };
        let branch = match self.fixup.last() {
            Some(bias) => consume(tape, branch, |t, v| bias.shift(t, store, v))?,
            None => branch,
        };
        let Some(shortcut) = &self.shortcut else {
            return if self.pre_activation { Ok(branch) } else { consume(tape, branch, |t, v| t.relu(v)) };
        };
        let short = shortcut.forward(tape, store, source, train)?;
        // Post-activation: the sum feeds only the ReLU, so it is never stored.
        let out = if self.pre_activation { tape.add(branch, short)? } else { tape.add_relu(branch, short)? };
        tape.release(branch);
        Ok(out)
    }

    /// conv → BN → ReLU → … → conv → BN, the last ReLU left to the caller,
    /// and the last BN too unless `last_bn`.
    fn branch_post<B: Backend>(&self, tape: &mut Tape<B>, store: &mut ParamStore<B>, x: Var, train: bool, last_bn: bool) -> Result<Var> {
        let mut h = x;
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            if let Some(bias) = self.fixup.get(2 * i) {
                h = self.shift_temp(tape, store, h, x, bias)?;
            }
            h = conv.forward(tape, store, h)?;
            let relu = i < last;
            if !relu && !last_bn {
                break;
            }
            match bn {
                // A BN straight into a ReLU is one op (Fixup nets have no BN).
                Some(bn) if relu && self.fixup.is_empty() => {
                    h = bn.forward_relu(tape, store, h, train)?;
                    continue;
                }
                Some(bn) => h = bn.forward(tape, store, h, train)?,
                None => {}
            }
            if relu {
                if let Some(bias) = self.fixup.get(2 * i + 1) {
                    h = consume(tape, h, |t, v| bias.shift(t, store, v))?;
                }
                h = consume(tape, h, |t, v| t.relu(v))?;
            }
        }
        Ok(h)
    }

    /// BN → ReLU → conv, per conv; returns the branch and the shortcut's source.
    fn branch_pre<B: Backend>(&self, tape: &mut Tape<B>, store: &mut ParamStore<B>, x: Var, train: bool) -> Result<(Var, Var)> {
        let mut h = x;
        let mut source = x;
        for (i, (conv, bn)) in self.convs.iter().zip(&self.bns).enumerate() {
            if let Some(bn) = bn {
                h = bn.forward_relu(tape, store, h, train)?;
            }
            if i == 0 && self.split_after_preact {
                source = h;
            }
            h = conv.forward(tape, store, h)?;
        }
        Ok((h, source))
    }

    /// A Fixup bias on `h`, releasing `h` unless it is the block input.
    fn shift_temp<B: Backend>(&self, tape: &mut Tape<B>, store: &ParamStore<B>, h: Var, x: Var, bias: &Scalar) -> Result<Var> {
        let y = bias.shift(tape, store, h)?;
        if h != x {
            tape.release(h);
        }
        Ok(y)
    }
}

impl Shortcut {
    fn forward<B: Backend>(&self, tape: &mut Tape<B>, store: &mut ParamStore<B>, x: Var, train: bool) -> Result<Var> {
        match self {
            Shortcut::Identity => Ok(x),
            Shortcut::Pad { stride, out, bn } => {
                let s = tape.shortcut_a(x, *stride, *out)?;
                match bn {
                    Some(bn) => bn.forward(tape, store, s, train),
                    None => Ok(s),
                }
            }
            Shortcut::Project { conv, bn } => {
                let h = conv.forward(tape, store, x)?;
                match bn {
                    Some(bn) => bn.forward(tape, store, h, train),
                    None => Ok(h),
                }
            }
        }
    }
}

/// `f(v)`, then drops the tape's reference to `v`, which nothing reads again.
fn consume<B: Backend>(tape: &mut Tape<B>, v: Var, f: impl FnOnce(&mut Tape<B>, Var) -> Result<Var>) -> Result<Var> {
    let y = f(tape, v)?;
    tape.release(v);
    Ok(y)
}
