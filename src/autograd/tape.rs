//! The tape: an arena of nodes in creation order, which is a topological order,
//! so backward is one reverse sweep.

use crate::backend::{Backend, Window};
use crate::error::{Error, Result};
use crate::param::{ParamId, ParamStore};
use crate::tensor::Tensor;
use std::collections::HashMap;

/// A handle to a value recorded on a [`Tape`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(pub(crate) usize);

/// Maps the gradient of a node's output to the gradients of its parents
/// (`None` for a parent that needs none).
pub(crate) type BackwardFn<B> = Box<dyn FnOnce(&B, &Tensor<B>) -> Result<Vec<Option<Tensor<B>>>>>;

struct Node<B: Backend> {
    value: Option<Tensor<B>>,
    parents: Vec<Var>,
    backward: Option<BackwardFn<B>>,
    requires_grad: bool,
    /// Keep this node's value and gradient past backward (parameters, probes, leaves).
    keep: bool,
}

/// What a layer exposes for conditioning analysis: its input `x` and the
/// gradient of the loss with respect to its output `h`.
#[derive(Clone, Debug)]
pub struct Probe<B: Backend> {
    pub layer: String,
    /// The layer's weight, whose domination the analysis measures.
    pub weight: ParamId,
    pub x: Tensor<B>,
    pub grad_h: Tensor<B>,
    /// A conv layer's window over `x`: its Σx is over patches, its Σ∇h over
    /// output positions. `None` for a dense layer (one sample per row).
    pub window: Option<Window>,
}

/// The result of [`Tape::backward`].
pub struct Gradients<B: Backend> {
    params: HashMap<ParamId, Tensor<B>>,
    kept: HashMap<Var, Tensor<B>>,
    probes: Vec<Probe<B>>,
}

impl<B: Backend> Gradients<B> {
    pub fn param(&self, id: ParamId) -> Option<&Tensor<B>> {
        self.params.get(&id)
    }
    /// The gradient of a leaf made with [`Tape::leaf`].
    pub fn var(&self, v: Var) -> Option<&Tensor<B>> {
        self.kept.get(&v)
    }
    /// Per-layer inputs and output-gradients, in forward order.
    pub fn probes(&self) -> &[Probe<B>] {
        &self.probes
    }
}

pub struct Tape<B: Backend> {
    backend: B,
    nodes: Vec<Node<B>>,
    params: HashMap<ParamId, Var>,
    probes: Vec<(String, ParamId, Var, Var, Option<Window>)>,
    probing: bool,
    /// Parameters enter as constants ([`Tape::set_probes_only`]).
    frozen: bool,
}

impl<B: Backend> Tape<B> {
    pub fn new(backend: &B) -> Self {
        Tape { backend: backend.clone(), nodes: Vec::new(), params: HashMap::new(), probes: Vec::new(), probing: false, frozen: false }
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Record layer inputs and output-gradients on this tape (costs memory).
    pub fn set_probing(&mut self, on: bool) {
        self.probing = on;
    }

    /// Probing, for the probes alone: parameters enter as constants and each
    /// probed output starts the gradient, so backward skips every
    /// parameter's gradient (a linear or conv layer's weight product) and
    /// yields no [`Gradients::param`]. The probes' output-gradients are the
    /// same bits as with [`Tape::set_probing`]: every op forms its input's
    /// gradient as before. Call before the forward pass.
    pub fn set_probes_only(&mut self) {
        self.probing = true;
        self.frozen = true;
    }

    fn push_node(&mut self, value: Tensor<B>, parents: Vec<Var>, backward: Option<BackwardFn<B>>, requires_grad: bool, keep: bool) -> Var {
        self.nodes.push(Node { value: Some(value), parents, backward, requires_grad, keep });
        Var(self.nodes.len() - 1)
    }

    /// A value that needs no gradient (data, labels, masks).
    pub fn constant(&mut self, value: Tensor<B>) -> Var {
        self.push_node(value, Vec::new(), None, false, false)
    }

    /// A value whose gradient [`Gradients::var`] will report.
    pub fn leaf(&mut self, value: Tensor<B>) -> Var {
        self.push_node(value, Vec::new(), None, true, true)
    }

    /// The tape's handle to a stored parameter (one per parameter per tape).
    pub fn param(&mut self, store: &ParamStore<B>, id: ParamId) -> Var {
        if let Some(&v) = self.params.get(&id) {
            return v;
        }
        let v = self.push_node(store.value(id).clone(), Vec::new(), None, !self.frozen, !self.frozen);
        self.params.insert(id, v);
        v
    }

    /// Records an op's output. `backward` is dropped when no parent needs a gradient.
    pub(crate) fn push(&mut self, value: Tensor<B>, parents: Vec<Var>, backward: BackwardFn<B>) -> Var {
        let requires_grad = parents.iter().any(|p| self.nodes[p.0].requires_grad);
        let backward = requires_grad.then_some(backward);
        self.push_node(value, parents, backward, requires_grad, false)
    }

    pub fn value(&self, v: Var) -> &Tensor<B> {
        self.nodes[v.0].value.as_ref().expect("tape value read after backward released it")
    }

    pub fn shape(&self, v: Var) -> &[usize] {
        self.value(v).shape()
    }

    pub(crate) fn requires_grad(&self, v: Var) -> bool {
        self.nodes[v.0].requires_grad
    }

    /// Marks a linear map's input `x` and output `h` for analysis; no-op unless
    /// probing. `weight` is the map's weight; `window` a conv layer's geometry over `x`.
    pub fn probe(&mut self, layer: &str, weight: ParamId, x: Var, h: Var, window: Option<Window>) {
        if self.probing {
            self.nodes[x.0].keep = true;
            self.nodes[h.0].keep = true;
            // With parameters frozen, nothing before the first probe needs a gradient.
            self.nodes[h.0].requires_grad |= self.frozen;
            self.probes.push((layer.to_string(), weight, x, h, window));
        }
    }

    /// Promises that the forward pass reads `v` no more, so the tape drops
    /// its reference (backward rules keep what they saved). Deep nets call
    /// this on values nothing saves, e.g. a batch norm's output feeding a ReLU.
    pub fn release(&mut self, v: Var) {
        let node = &mut self.nodes[v.0];
        if !node.keep {
            node.value = None;
        }
    }

    /// Elements of the values this tape's operations made that it still
    /// holds, each buffer once: what a forward pass keeps for backward, at
    /// the least (a backward rule may hold values the tape has released, and
    /// backward makes gradients besides).
    pub fn held_elements(&self) -> usize {
        let mut seen = std::collections::HashSet::new();
        let made = self.nodes.iter().filter(|n| !n.parents.is_empty());
        made.filter_map(|n| n.value.as_ref()).filter(|v| seen.insert(v.buffer_address())).map(Tensor::numel).sum()
    }

    /// Back-propagates from `root` (seeded with ones), releasing each node's
    /// saved tensors as soon as its backward rule has run.
    pub fn backward(&mut self, root: Var) -> Result<Gradients<B>> {
        let backend = self.backend.clone();
        let seed = Tensor::full(&backend, self.value(root).shape(), 1.0)?;
        let mut grads: Vec<Option<Tensor<B>>> = (0..self.nodes.len()).map(|_| None).collect();
        grads[root.0] = Some(seed);
        let mut kept = HashMap::new();
        for i in (0..=root.0).rev() {
            let node = &mut self.nodes[i];
            let Some(grad) = grads[i].take() else {
                if !node.keep {
                    node.value = None;
                }
                continue;
            };
            if let Some(rule) = node.backward.take() {
                let parent_grads = rule(&backend, &grad)?;
                if parent_grads.len() != node.parents.len() {
                    return Err(Error::Backend(format!(
                        "backward rule returned {} gradients for {} inputs",
                        parent_grads.len(),
                        node.parents.len()
                    )));
                }
                for (p, pg) in node.parents.clone().into_iter().zip(parent_grads) {
                    let Some(pg) = pg else { continue };
                    if !self.nodes[p.0].requires_grad {
                        continue;
                    }
                    if pg.shape() != self.nodes[p.0].value.as_ref().map_or(pg.shape(), |v| v.shape()) {
                        return Err(Error::shape(
                            "backward",
                            format!("gradient {:?} for a value of shape {:?}", pg.shape(), self.value(p).shape()),
                        ));
                    }
                    match &mut grads[p.0] {
                        Some(acc) => backend.axpy(acc.buf_mut(), 1.0, pg.buf())?,
                        slot => *slot = Some(pg),
                    }
                }
            }
            let node = &mut self.nodes[i];
            if node.keep {
                kept.insert(Var(i), grad);
            } else {
                node.value = None;
            }
        }
        let params = self.params.iter().filter_map(|(&id, v)| kept.get(v).map(|g| (id, g.clone()))).collect();
        let mut probes = Vec::with_capacity(self.probes.len());
        for (layer, weight, x, h, window) in &self.probes {
            let grad_h = match kept.get(h) {
                Some(g) => g.clone(),
                None => Tensor::zeros(&backend, self.value(*h).shape())?,
            };
            probes.push(Probe { layer: layer.clone(), weight: *weight, x: self.value(*x).clone(), grad_h, window: *window });
        }
        Ok(Gradients { params, kept, probes })
    }
}
