//! Reverse-mode automatic differentiation over [`Device`] ops.
//!
//! A [`Tape`] lives for one plugin call. Its leaves are the watched tensors
//! (parameters); every op whose input depends on a leaf is recorded with what
//! its gradient needs, and [`Tape::grad`] walks the record backwards from a
//! one-element loss. Forward values are exactly the [`Device`] ops' results,
//! and the backward pass is made of Device ops too, so it runs wherever the
//! tape's device does (on the GPU, without reading tensors back).
//!
//! ```
//! use tensorlet_gpu::{Device, ReduceOp, autodiff::Tape};
//! let dev = Device::cpu();
//! let mut tape = Tape::new(dev.clone());
//! let w = tape.leaf("w", dev.from_vec(&[2, 1], vec![0.5, -1.0]).unwrap()).unwrap();
//! let x = dev.from_vec(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
//! let y = tape.matmul(&tensorlet_gpu::autodiff::Var::constant(x), &w).unwrap();
//! let loss = tape.reduce(ReduceOp::Sum, &y, 0, false).unwrap();
//! let grads = tape.grad(&loss, &["w"]).unwrap();
//! assert_eq!(dev.to_vec(&grads[0]).unwrap(), vec![9.0, 12.0]); // column sums of x
//! ```

mod backward;
mod nn;
mod ops;

use std::sync::atomic::{AtomicU64, Ordering};

pub use nn::{CrossEntropy, NormStats, Reduction};

use crate::{
    BinaryOp, ConvGeometry, DType, Device, PoolGeometry, ReduceOp, ScalarOp, Shape, Tensor,
    TensorError, UnaryOp,
};

/// A node of a tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NodeId(u32);

impl NodeId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// A tensor and, when it depends on a watched leaf, its node on the tape.
///
/// A `Var` recorded on another tape is a constant to this one: it cannot
/// depend on this tape's leaves.
#[derive(Clone, Debug)]
pub struct Var {
    value: Tensor,
    /// The tape (its id) and the node this value was recorded as.
    node: Option<(u64, NodeId)>,
}

impl Var {
    /// A value that is not recorded (data, labels, a constant).
    pub fn constant(value: Tensor) -> Var {
        Var { value, node: None }
    }

    /// The value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The value, without the node.
    pub fn into_value(self) -> Tensor {
        self.value
    }

    /// The shape of the value.
    pub fn shape(&self) -> &Shape {
        self.value.shape()
    }

    /// The node this value was recorded as, if it was.
    pub fn node(&self) -> Option<NodeId> {
        self.node.map(|(_, n)| n)
    }

    /// Whether this value depends on a watched leaf of the tape that made it.
    pub fn is_recorded(&self) -> bool {
        self.node.is_some()
    }
}

/// Why gradients could not be computed. Messages are sentences for people.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GradError {
    /// The loss has more (or fewer) than one element.
    #[error(
        "grad: the loss must have one element, got shape {shape}; reduce it first (mean or sum)"
    )]
    NotScalar {
        /// The loss's shape.
        shape: Shape,
    },
    /// A requested leaf does not exist.
    #[error("grad: no watched tensor is named `{name}`; {}", known_list(.known))]
    UnknownLeaf {
        /// The name asked for.
        name: String,
        /// The leaves of the tape, in the order they were added.
        known: Vec<String>,
    },
    /// A leaf of this name already exists.
    #[error("leaf: a tensor named `{name}` is already watched in this call")]
    DuplicateLeaf {
        /// The name.
        name: String,
    },
    /// An integer tensor cannot be watched: it has no gradient.
    #[error(
        "leaf: `{name}` is an i64 tensor of shape {shape}; integer tensors (indices, labels) \
         have no gradient, so they cannot be watched"
    )]
    IntegerLeaf {
        /// The name.
        name: String,
        /// Its shape.
        shape: Shape,
    },
    /// The loss depends on no watched tensor.
    #[error(
        "grad: the loss does not depend on any watched tensor; compute it from the watched \
         parameters"
    )]
    Unrecorded,
    /// The loss does not depend on these leaves.
    #[error("grad: the loss does not depend on {}", quoted(.names))]
    NoPath {
        /// The leaves, in the order they were asked for.
        names: Vec<String>,
    },
    /// These leaves reach the loss only through an op with no gradient.
    #[error(
        "grad: {} reach{} the loss only through {op}, which has no gradient",
        quoted(.names),
        if .names.len() == 1 { "es" } else { "" }
    )]
    NonDifferentiable {
        /// The op (`argmax`, `one-hot`, `relu-mask`).
        op: &'static str,
        /// The leaves, in the order they were asked for.
        names: Vec<String>,
    },
    /// An op of the backward pass failed.
    #[error("grad: {0}")]
    Tensor(#[from] TensorError),
}

impl GradError {
    /// The device failure behind this error, when the backward pass found
    /// the device failed (see [`TensorError::device_error`]).
    pub fn device_error(&self) -> Option<&crate::DeviceError> {
        match self {
            GradError::Tensor(e) => e.device_error(),
            _ => None,
        }
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "nothing is watched in this call".to_string()
    } else {
        format!("the watched tensors are {}", quoted(known))
    }
}

/// How an op's gradient is computed, with what it keeps for that.
enum Rule {
    /// A watched tensor.
    Leaf,
    /// An op with no gradient (`argmax`, `one-hot`, `relu-mask`, the
    /// comparisons, `to-i64`).
    Blocked(&'static str),
    /// `a` is kept when `b` is recorded, `b` when `a` is.
    Matmul {
        a: Option<Tensor>,
        b: Option<Tensor>,
    },
    Transpose,
    Reshape,
    /// The operands and the result, each kept only when a gradient needs it.
    Binary {
        op: BinaryOp,
        a: Option<Tensor>,
        b: Option<Tensor>,
        out: Option<Tensor>,
    },
    /// Scalar addition: the gradient passes unchanged.
    Identity,
    /// Scalar multiplication by this value.
    Scale(f32),
    /// The input or the output, whichever the derivative is written in.
    Unary {
        op: UnaryOp,
        kept: Option<Tensor>,
    },
    /// The input and output, for max and min.
    Reduce {
        op: ReduceOp,
        axis: usize,
        x: Option<Tensor>,
        y: Option<Tensor>,
    },
    Softmax {
        axis: usize,
        log: bool,
        y: Tensor,
    },
    SliceRows {
        start: u32,
        end: u32,
    },
    GatherRows {
        indices: Vec<u32>,
    },
    /// `split` is the first operand's size along `axis`.
    Concat {
        axis: usize,
        split: usize,
    },
    /// softmax(logits) and the labels.
    CrossEntropy {
        probs: Tensor,
        labels: Tensor,
    },
    /// Matmul of N-D (or transposed) operands; each kept when the other is recorded.
    BatchedMatmul {
        a: Option<Tensor>,
        b: Option<Tensor>,
        transpose_a: bool,
        transpose_b: bool,
    },
    /// A scalar op other than add and multiply: its input, and its output
    /// when the derivative is written in it.
    ScalarMap {
        op: ScalarOp,
        value: f32,
        x: Tensor,
        y: Option<Tensor>,
    },
    /// Clamp: the input and the output (equal exactly where the gradient passes).
    Clamp {
        x: Tensor,
        y: Tensor,
    },
    /// The inverse permutation is applied to the gradient.
    Permute {
        axes: Vec<u32>,
    },
    Slice {
        axis: usize,
        start: usize,
        step: usize,
    },
    /// Sizes of the parts along `axis`.
    ConcatMany {
        axis: usize,
        sizes: Vec<usize>,
    },
    /// Where the input starts in the padded output.
    Pad {
        starts: Vec<usize>,
    },
    /// The gradient is summed back over the broadcast dimensions.
    BroadcastTo,
    /// `index-select` / `embedding`; input 1 is the (integer) indices.
    Take {
        axis: usize,
        idx: Tensor,
    },
    /// `gather`; input 1 is the indices.
    Gather {
        axis: usize,
        idx: Tensor,
    },
    /// `scatter-add` (input 0, the values) and `index-add`, whose values'
    /// gradient is the matching gather.
    ScatterAdd {
        axis: usize,
        idx: Tensor,
    },
    IndexAdd {
        axis: usize,
        idx: Tensor,
    },
    /// Input 0 is the condition (no gradient).
    Where {
        cond: Tensor,
    },
    Cumsum {
        axis: u32,
        reverse: bool,
    },
    Conv2d {
        x: Option<Tensor>,
        w: Option<Tensor>,
        geometry: ConvGeometry,
    },
    MaxPool2d {
        idx: Tensor,
        geometry: PoolGeometry,
    },
    AvgPool2d {
        geometry: PoolGeometry,
    },
}

impl Rule {
    /// Bytes of data this rule keeps alive.
    fn kept_bytes(&self) -> usize {
        let bytes = |t: &Option<Tensor>| t.as_ref().map_or(0, Tensor::byte_len);
        match self {
            Rule::Leaf
            | Rule::Blocked(_)
            | Rule::Transpose
            | Rule::Reshape
            | Rule::Identity
            | Rule::Scale(_)
            | Rule::SliceRows { .. }
            | Rule::Concat { .. }
            | Rule::Permute { .. }
            | Rule::Slice { .. }
            | Rule::ConcatMany { .. }
            | Rule::Pad { .. }
            | Rule::BroadcastTo
            | Rule::Cumsum { .. }
            | Rule::AvgPool2d { .. } => 0,
            Rule::Matmul { a, b } => bytes(a) + bytes(b),
            Rule::Binary { a, b, out, .. } => bytes(a) + bytes(b) + bytes(out),
            Rule::Unary { kept, .. } => bytes(kept),
            Rule::Reduce { x, y, .. } => bytes(x) + bytes(y),
            Rule::Softmax { y, .. } => y.byte_len(),
            Rule::GatherRows { indices } => std::mem::size_of_val(indices.as_slice()),
            Rule::CrossEntropy { probs, labels } => probs.byte_len() + labels.byte_len(),
            Rule::BatchedMatmul { a, b, .. } => bytes(a) + bytes(b),
            Rule::ScalarMap { x, y, .. } => x.byte_len() + bytes(y),
            Rule::Clamp { x, y } => x.byte_len() + y.byte_len(),
            Rule::Take { idx, .. }
            | Rule::Gather { idx, .. }
            | Rule::ScatterAdd { idx, .. }
            | Rule::IndexAdd { idx, .. }
            | Rule::MaxPool2d { idx, .. } => idx.byte_len(),
            Rule::Where { cond } => cond.byte_len(),
            Rule::Conv2d { x, w, .. } => bytes(x) + bytes(w),
        }
    }
}

struct Node {
    /// The shape of the op's result, and so of its gradient.
    shape: Shape,
    /// The recorded inputs, one per operand; `None` for a constant one.
    inputs: Vec<Option<NodeId>>,
    rule: Rule,
}

/// How a node reaches the loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reach {
    None,
    /// Only through ops with no gradient; the one nearest this node.
    Blocked(&'static str),
    /// Along at least one path that carries a gradient.
    Diff,
}

/// The ops of one call, recorded for reverse-mode differentiation.
///
/// Each op takes [`Var`]s, computes exactly what the [`Device`] op of the
/// same name computes (with its validation and errors), and records itself
/// when any input is recorded. Dropping the tape frees everything it kept.
pub struct Tape {
    /// Distinguishes this tape's nodes from another tape's.
    id: u64,
    device: Device,
    nodes: Vec<Node>,
    leaves: Vec<(String, NodeId)>,
    saved_bytes: usize,
    /// Set when an op could not be recorded because the tape was full.
    overflowed: bool,
}

/// Most nodes a tape holds (node ids are `u32`).
const MAX_NODES: usize = u32::MAX as usize;

fn next_tape_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Tape {
    /// An empty tape whose ops run on `device`.
    pub fn new(device: Device) -> Tape {
        Tape {
            id: next_tape_id(),
            device,
            nodes: Vec::new(),
            leaves: Vec::new(),
            saved_bytes: 0,
            overflowed: false,
        }
    }

    /// The device every op runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// A watched leaf named `name` (a parameter). Err if the name is already
    /// a leaf, or if `value` is an i64 tensor (integers have no gradient).
    pub fn leaf(&mut self, name: &str, value: Tensor) -> Result<Var, GradError> {
        if self.leaves.iter().any(|(n, _)| n == name) {
            return Err(GradError::DuplicateLeaf {
                name: name.to_string(),
            });
        }
        if value.dtype() == DType::I64 {
            return Err(GradError::IntegerLeaf {
                name: name.to_string(),
                shape: value.shape().clone(),
            });
        }
        let var = self.record(value, vec![], Rule::Leaf);
        if let Some(id) = var.node() {
            self.leaves.push((name.to_string(), id));
        }
        Ok(var)
    }

    /// Names of the leaves, in the order they were added.
    pub fn leaf_names(&self) -> impl Iterator<Item = &str> {
        self.leaves.iter().map(|(n, _)| n.as_str())
    }

    /// Number of recorded nodes (leaves included).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Bytes of tensor data the tape keeps alive for the backward pass (may
    /// overlap with tensors the caller also holds). Used to charge a call's
    /// memory budget.
    pub fn saved_bytes(&self) -> usize {
        self.saved_bytes
    }

    /// The node of `v` on this tape; `None` for constants and other tapes' vars.
    fn node_of(&self, v: &Var) -> Option<NodeId> {
        v.node.filter(|&(tape, _)| tape == self.id).map(|(_, n)| n)
    }

    #[allow(
        clippy::absurd_extreme_comparisons,
        reason = "on 32-bit targets MAX_NODES is usize::MAX, which no tape reaches"
    )]
    fn record(&mut self, value: Tensor, inputs: Vec<Option<NodeId>>, rule: Rule) -> Var {
        if self.nodes.len() >= MAX_NODES {
            self.overflowed = true;
            return Var::constant(value);
        }
        let id = NodeId(self.nodes.len() as u32);
        self.saved_bytes += rule.kept_bytes();
        self.nodes.push(Node {
            shape: value.shape().clone(),
            inputs,
            rule,
        });
        Var {
            value,
            node: Some((self.id, id)),
        }
    }

    /// Records `value` as the result of an op on `inputs` when any is
    /// recorded (building the rule only then); otherwise a constant.
    fn op(
        &mut self,
        value: Tensor,
        inputs: Vec<Option<NodeId>>,
        rule: impl FnOnce() -> Rule,
    ) -> Var {
        if inputs.iter().all(Option::is_none) {
            return Var::constant(value);
        }
        self.record(value, inputs, rule())
    }

    /// Matrix product, `[m, k] x [k, n] -> [m, n]`, or batched over
    /// broadcast leading dimensions (see [`Device::matmul`]).
    pub fn matmul(&mut self, a: &Var, b: &Var) -> Result<Var, TensorError> {
        if a.shape().rank() != 2 || b.shape().rank() != 2 {
            return self.matmul_transposed(a, false, b, false);
        }
        let value = self.device.matmul(&a.value, &b.value)?;
        let (na, nb) = (self.node_of(a), self.node_of(b));
        Ok(self.op(value, vec![na, nb], || Rule::Matmul {
            a: nb.map(|_| a.value.clone()),
            b: na.map(|_| b.value.clone()),
        }))
    }

    /// Transpose of a 2-D tensor.
    pub fn transpose(&mut self, a: &Var) -> Result<Var, TensorError> {
        let value = self.device.transpose(&a.value)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Transpose))
    }

    /// Same elements, another shape with the same element count.
    pub fn reshape(&mut self, a: &Var, shape: &[u32]) -> Result<Var, TensorError> {
        let value = self.device.reshape(&a.value, shape)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Reshape))
    }

    /// Broadcasting element-wise arithmetic.
    pub fn binary(&mut self, op: BinaryOp, a: &Var, b: &Var) -> Result<Var, TensorError> {
        let value = self.device.binary(op, &a.value, &b.value)?;
        let (na, nb) = (self.node_of(a), self.node_of(b));
        let (ra, rb) = (na.is_some(), nb.is_some());
        let out = value.clone();
        Ok(self.op(value, vec![na, nb], || {
            if op.is_comparison() {
                return Rule::Blocked(op.name());
            }
            let keep = |yes: bool, t: &Tensor| yes.then(|| t.clone());
            let (ka, kb, kout) = match op {
                BinaryOp::Add | BinaryOp::Sub => (false, false, false),
                // d(ab)/da = b, d(ab)/db = a.
                BinaryOp::Mul => (rb, ra, false),
                // d(a/b)/da = 1/b, d(a/b)/db = -(a/b)/b.
                BinaryOp::Div => (false, true, rb),
                // Which operand is larger decides where the gradient goes.
                BinaryOp::Maximum | BinaryOp::Minimum => (true, true, false),
                // d(aᵇ)/da = b·a^(b-1), d(aᵇ)/db = aᵇ·ln a.
                BinaryOp::Pow => (true, true, rb),
                _ => (false, false, false),
            };
            Rule::Binary {
                op,
                a: keep(ka, &a.value),
                b: keep(kb, &b.value),
                out: keep(kout, &out),
            }
        }))
    }

    /// Scalar arithmetic.
    pub fn scalar(&mut self, op: ScalarOp, a: &Var, value: f32) -> Result<Var, TensorError> {
        let out = self.device.scalar(op, &a.value, value)?;
        let na = self.node_of(a);
        let y = out.clone();
        Ok(self.op(out, vec![na], || match op {
            ScalarOp::Add => Rule::Identity,
            ScalarOp::Mul => Rule::Scale(value),
            // pow' = v·x^(v-1), leaky' = [x > 0] + v·[x <= 0]: in the input;
            // max and min pass the gradient where the output is the input.
            ScalarOp::Pow | ScalarOp::LeakyRelu => Rule::ScalarMap {
                op,
                value,
                x: a.value.clone(),
                y: None,
            },
            ScalarOp::Max | ScalarOp::Min => Rule::ScalarMap {
                op,
                value,
                x: a.value.clone(),
                y: Some(y),
            },
        }))
    }

    /// A unary map. The `…Mask` and `…Grad` maps have no gradient: a leaf
    /// that reaches the loss only through one is an error in [`Tape::grad`].
    pub fn unary(&mut self, op: UnaryOp, a: &Var) -> Result<Var, TensorError> {
        let value = self.device.unary(op, &a.value)?;
        let na = self.node_of(a);
        let y = value.clone();
        Ok(self.op(value, vec![na], || {
            let kept = match op {
                // Derivatives written in the output: relu' = [y > 0],
                // sigmoid' = y(1 - y), tanh' = 1 - y², exp' = y, sqrt' = 1/(2y).
                UnaryOp::Relu | UnaryOp::Sigmoid | UnaryOp::Tanh | UnaryOp::Exp | UnaryOp::Sqrt => {
                    Some(y)
                }
                // In the input: log' = 1/x, abs' = sign x, (x²)' = 2x, and
                // the activations' own derivative maps (softplus' = sigmoid).
                UnaryOp::Log
                | UnaryOp::Abs
                | UnaryOp::Square
                | UnaryOp::Gelu
                | UnaryOp::GeluTanh
                | UnaryOp::Silu
                | UnaryOp::Softplus => Some(a.value.clone()),
                UnaryOp::Neg => None,
                UnaryOp::ReluMask
                | UnaryOp::GeluGrad
                | UnaryOp::GeluTanhGrad
                | UnaryOp::SiluGrad => return Rule::Blocked(op.name()),
            };
            Rule::Unary { op, kept }
        }))
    }

    /// A reduction along `axis`. `ArgMax` has no gradient.
    pub fn reduce(
        &mut self,
        op: ReduceOp,
        a: &Var,
        axis: u32,
        keepdims: bool,
    ) -> Result<Var, TensorError> {
        let value = self.device.reduce(op, &a.value, axis, keepdims)?;
        let na = self.node_of(a);
        let y = value.clone();
        Ok(self.op(value, vec![na], || {
            let (x, y) = match op {
                ReduceOp::Sum | ReduceOp::Mean => (None, None),
                ReduceOp::Max | ReduceOp::Min => (Some(a.value.clone()), Some(y)),
                ReduceOp::ArgMax => return Rule::Blocked("argmax"),
            };
            Rule::Reduce {
                op,
                axis: axis as usize,
                x,
                y,
            }
        }))
    }

    /// Softmax (or log-softmax) along `axis`.
    pub fn softmax(&mut self, a: &Var, axis: u32, log: bool) -> Result<Var, TensorError> {
        let value = self.device.softmax(&a.value, axis, log)?;
        let na = self.node_of(a);
        let y = value.clone();
        Ok(self.op(value, vec![na], || Rule::Softmax {
            axis: axis as usize,
            log,
            y,
        }))
    }

    /// `[n]` class indices -> `[n, classes]`. Has no gradient.
    pub fn one_hot(&mut self, a: &Var, classes: u32) -> Result<Var, TensorError> {
        let value = self.device.one_hot(&a.value, classes)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::Blocked("one-hot")))
    }

    /// Rows `start..end` of the outermost dimension.
    pub fn slice_rows(&mut self, a: &Var, start: u32, end: u32) -> Result<Var, TensorError> {
        let value = self.device.slice_rows(&a.value, start, end)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::SliceRows { start, end }))
    }

    /// The rows at `indices`, in that order.
    pub fn gather_rows(&mut self, a: &Var, indices: &[u32]) -> Result<Var, TensorError> {
        let value = self.device.gather_rows(&a.value, indices)?;
        let na = self.node_of(a);
        Ok(self.op(value, vec![na], || Rule::GatherRows {
            indices: indices.to_vec(),
        }))
    }

    /// Concatenation along `axis`.
    pub fn concat(&mut self, a: &Var, b: &Var, axis: u32) -> Result<Var, TensorError> {
        let value = self.device.concat(&a.value, &b.value, axis)?;
        let (na, nb) = (self.node_of(a), self.node_of(b));
        let split = a.value.shape().dims()[axis as usize];
        Ok(self.op(value, vec![na, nb], || Rule::Concat {
            axis: axis as usize,
            split,
        }))
    }

    /// Mean cross-entropy of `logits` `[n, classes]` against `labels` `[n]`
    /// (f32 class indices; an entry that is not an integer in 0..classes is an
    /// Err naming the row and value): `-1/n Σ_i log_softmax(logits)_i[label_i]`.
    /// Result shape `[1]`. Its gradient, `(softmax(logits) - onehot(labels)) / n`,
    /// is computed directly rather than through softmax's general backward.
    ///
    /// The labels are read back to the host to be checked.
    pub fn cross_entropy(&mut self, logits: &Var, labels: &Tensor) -> Result<Var, TensorError> {
        const OP: &str = "cross-entropy";
        let &[n, classes] = logits.value.shape().dims() else {
            return Err(TensorError::shape(
                OP,
                format!(
                    "needs 2-D logits [rows, classes], got shape {}",
                    logits.value.shape()
                ),
            ));
        };
        if labels.shape().dims() != [n] {
            return Err(TensorError::shape(
                OP,
                format!(
                    "labels have shape {}, but logits of shape {} need [{n}] (one class \
                     index per row)",
                    labels.shape(),
                    logits.value.shape()
                ),
            ));
        }
        if n == 0 {
            return Err(TensorError::shape(
                OP,
                format!(
                    "needs at least one row, got logits of shape {}",
                    logits.value.shape()
                ),
            ));
        }
        // Where each row's label points in the flattened log-probabilities.
        let mut picks = Vec::with_capacity(n);
        let labels_host = self
            .device
            .to_vec(labels)
            .map_err(|error| TensorError::Device { op: OP, error })?;
        for (row, &label) in labels_host.iter().enumerate() {
            if !(label >= 0.0 && label.fract() == 0.0 && (label as usize) < classes) {
                return Err(TensorError::argument(
                    OP,
                    format!(
                        "row {row} has label {label}, which is not a class index in 0..{classes}"
                    ),
                ));
            }
            picks.push((row * classes + label as usize) as u32);
        }
        let dev = &self.device;
        let log_probs = dev.softmax(&logits.value, 1, true)?;
        let flat = dev.reshape(&log_probs, &[(n * classes) as u32])?;
        let picked = dev.gather_rows(&flat, &picks)?;
        let mean = dev.reduce(ReduceOp::Mean, &picked, 0, true)?;
        let value = dev.unary(UnaryOp::Neg, &mean)?;
        let Some(nl) = self.node_of(logits) else {
            return Ok(Var::constant(value));
        };
        let probs = dev.softmax(&logits.value, 1, false)?;
        Ok(self.record(
            value,
            vec![Some(nl)],
            Rule::CrossEntropy {
                probs,
                labels: labels.clone(),
            },
        ))
    }

    /// Gradients of `loss` (exactly one element, any shape) with respect to
    /// the leaves named `wrt`, in that order, each with its leaf's shape.
    ///
    /// Only what leads to a requested leaf is computed; contributions to a
    /// gradient are added in a fixed order (so the CPU backend gives the same
    /// bits every run), and each intermediate gradient is dropped once used.
    pub fn grad(&self, loss: &Var, wrt: &[&str]) -> Result<Vec<Tensor>, GradError> {
        if loss.value.numel() != 1 {
            return Err(GradError::NotScalar {
                shape: loss.value.shape().clone(),
            });
        }
        if self.overflowed {
            return Err(TensorError::too_large(
                "grad",
                format!("the call recorded more than {MAX_NODES} ops"),
            )
            .into());
        }
        let mut ids = Vec::with_capacity(wrt.len());
        for &name in wrt {
            match self.leaves.iter().find(|(n, _)| n == name) {
                Some(&(_, id)) => ids.push(id),
                None => {
                    return Err(GradError::UnknownLeaf {
                        name: name.to_string(),
                        known: self.leaf_names().map(str::to_string).collect(),
                    });
                }
            }
        }
        let root = self.node_of(loss).ok_or(GradError::Unrecorded)?.index();

        let reach = self.reach(root);
        let (mut blocked, mut missing) = (None::<(&'static str, Vec<String>)>, Vec::new());
        for (&name, id) in wrt.iter().zip(&ids) {
            match reach.get(id.index()).copied().unwrap_or(Reach::None) {
                Reach::Diff => {}
                Reach::Blocked(op) => blocked
                    .get_or_insert((op, Vec::new()))
                    .1
                    .push(name.to_string()),
                Reach::None => missing.push(name.to_string()),
            }
        }
        if let Some((op, names)) = blocked {
            return Err(GradError::NonDifferentiable { op, names });
        }
        if !missing.is_empty() {
            return Err(GradError::NoPath { names: missing });
        }

        // Nodes that carry a gradient to a requested leaf.
        let mut active = vec![false; root + 1];
        for id in &ids {
            active[id.index()] = true;
        }
        for i in 0..=root {
            let node = &self.nodes[i];
            if reach[i] == Reach::Diff
                && !matches!(node.rule, Rule::Blocked(_))
                && node.inputs.iter().flatten().any(|j| active[j.index()])
            {
                active[i] = true;
            }
        }

        let dev = &self.device;
        let mut grads: Vec<Option<Tensor>> = vec![None; root + 1];
        grads[root] = Some(dev.fill(&loss.value.shape().to_u32(), 1.0)?);
        for i in (0..=root).rev() {
            let node = &self.nodes[i];
            if matches!(node.rule, Rule::Leaf) || !active[i] {
                continue;
            }
            let Some(g) = grads[i].take() else { continue };
            let want: Vec<Option<NodeId>> = node
                .inputs
                .iter()
                .map(|j| j.filter(|j| active[j.index()]))
                .collect();
            let in_shapes: Vec<Option<&Shape>> = node
                .inputs
                .iter()
                .map(|j| j.map(|j| &self.nodes[j.index()].shape))
                .collect();
            let wanted: Vec<bool> = want.iter().map(Option::is_some).collect();
            let parts = backward::input_grads(dev, node, &in_shapes, &g, &wanted, i == root)?;
            drop(g);
            for (j, part) in want.into_iter().zip(parts) {
                let (Some(j), Some(part)) = (j, part) else {
                    continue;
                };
                let slot = &mut grads[j.index()];
                *slot = Some(match slot.take() {
                    None => part,
                    Some(sum) => dev.binary(BinaryOp::Add, &sum, &part)?,
                });
            }
        }

        ids.iter()
            .map(|id| {
                let shape = &self.nodes[id.index()].shape;
                match &grads[id.index()] {
                    Some(g) => {
                        debug_assert_eq!(g.shape(), shape);
                        Ok(g.clone())
                    }
                    // Every requested leaf reaches the loss (checked above)
                    // and so has a gradient; zeros are the value of none.
                    None => Ok(dev.fill(&shape.to_u32(), 0.0)?),
                }
            })
            .collect()
    }

    /// How each node up to `root` reaches it.
    fn reach(&self, root: usize) -> Vec<Reach> {
        let mut reach = vec![Reach::None; root + 1];
        reach[root] = Reach::Diff;
        for i in (0..=root).rev() {
            let node = &self.nodes[i];
            let passed = match (reach[i], &node.rule) {
                (Reach::None, _) => continue,
                (_, Rule::Blocked(op)) => Reach::Blocked(op),
                (r, _) => r,
            };
            for j in node.inputs.iter().flatten() {
                let r = &mut reach[j.index()];
                *r = match (*r, passed) {
                    (Reach::Diff, _) | (_, Reach::Diff) => Reach::Diff,
                    (Reach::Blocked(op), _) | (Reach::None, Reach::Blocked(op)) => {
                        Reach::Blocked(op)
                    }
                    (Reach::None, Reach::None) => Reach::None,
                };
            }
        }
        reach
    }
}
