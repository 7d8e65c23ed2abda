//! Parameter storage: every trainable tensor and every running statistic of a model.

use crate::backend::Backend;
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(pub usize);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BufferId(pub usize);

pub struct Param<B: Backend> {
    /// PyTorch-style dotted name, e.g. `layers.3.weight`.
    pub name: String,
    pub value: Tensor<B>,
    /// The 1-based layer this parameter belongs to (what `--freeze` names).
    pub layer: usize,
    /// A frozen parameter receives no update (paper Fig. 4).
    pub frozen: bool,
    /// Multiplies the learning rate for this parameter (tau-ResNet's scalars train at lr/10).
    pub lr_scale: f64,
    /// Multiplies the gradient before the update (a scalar shared by L blocks takes 1/L of the summed gradient).
    pub grad_scale: f64,
}

/// A model's parameters and non-trainable buffers (BN running statistics).
pub struct ParamStore<B: Backend> {
    params: Vec<Param<B>>,
    buffers: Vec<(String, Tensor<B>)>,
}

impl<B: Backend> Default for ParamStore<B> {
    fn default() -> Self {
        ParamStore { params: Vec::new(), buffers: Vec::new() }
    }
}

impl<B: Backend> ParamStore<B> {
    pub fn add(&mut self, name: impl Into<String>, value: Tensor<B>, layer: usize) -> ParamId {
        self.params.push(Param { name: name.into(), value, layer, frozen: false, lr_scale: 1.0, grad_scale: 1.0 });
        ParamId(self.params.len() - 1)
    }

    pub fn add_buffer(&mut self, name: impl Into<String>, value: Tensor<B>) -> BufferId {
        self.buffers.push((name.into(), value));
        BufferId(self.buffers.len() - 1)
    }

    pub fn value(&self, id: ParamId) -> &Tensor<B> {
        &self.params[id.0].value
    }

    pub fn param(&self, id: ParamId) -> &Param<B> {
        &self.params[id.0]
    }

    pub fn param_mut(&mut self, id: ParamId) -> &mut Param<B> {
        &mut self.params[id.0]
    }

    pub fn ids(&self) -> impl Iterator<Item = ParamId> {
        (0..self.params.len()).map(ParamId)
    }

    pub fn params(&self) -> &[Param<B>] {
        &self.params
    }

    pub fn buffer(&self, id: BufferId) -> &Tensor<B> {
        &self.buffers[id.0].1
    }

    pub fn buffer_mut(&mut self, id: BufferId) -> &mut Tensor<B> {
        &mut self.buffers[id.0].1
    }

    pub fn buffers(&self) -> &[(String, Tensor<B>)] {
        &self.buffers
    }

    /// The buffers as they are now; cheap (buffers are shared until written).
    pub fn snapshot_buffers(&self) -> Vec<Tensor<B>> {
        self.buffers.iter().map(|(_, t)| t.clone()).collect()
    }

    /// Puts back buffers taken by [`ParamStore::snapshot_buffers`], so a
    /// forward pass made only to measure leaves no trace on BN's running averages.
    pub fn restore_buffers(&mut self, snapshot: Vec<Tensor<B>>) {
        for ((_, t), saved) in self.buffers.iter_mut().zip(snapshot) {
            *t = saved;
        }
    }

    /// Total number of trainable scalars.
    pub fn count(&self) -> usize {
        self.params.iter().map(|p| p.value.numel()).sum()
    }

    /// The highest layer number any parameter carries.
    pub fn layers(&self) -> usize {
        self.params.iter().map(|p| p.layer).max().unwrap_or(0)
    }

    /// Freezes every parameter of the given 1-based layers.
    pub fn freeze_layers(&mut self, layers: &[usize]) {
        for p in &mut self.params {
            p.frozen = layers.contains(&p.layer);
        }
    }
}
