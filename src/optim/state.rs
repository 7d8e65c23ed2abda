//! An optimiser's state in a form a checkpoint can hold, so a resumed run
//! continues the same updates.

use crate::param::ParamId;
use std::collections::BTreeMap;

/// `T` is a buffer the state is restored from, or a reference to one the
/// optimiser holds: a checkpoint reads the buffers where they are.
pub struct OptimizerState<T> {
    /// For every parameter that has state, one buffer per slot of
    /// [`Optimizer::slot_names`](super::Optimizer::slot_names), in that order.
    pub slots: BTreeMap<ParamId, Vec<T>>,
    /// Steps taken, for an optimiser whose update depends on it (Adam's bias
    /// correction); `None` for one that keeps no count.
    pub step: Option<u64>,
}
