// tensorlet.js: idiomatic JavaScript over tensorlet's WIT ABI (tensorlet:ml@0.2.0).
//
// Build a plugin with `jco componentize --backend quickjs --bundle` (see README.md);
// this module imports the host's `tensor` resource, so it only runs inside such a
// component.
//
// - `Tensor` wraps the host resource with chainable methods: `x.matmul(w).add(b)`;
//   `add`/`sub`/`mul`/`div` take a tensor (NumPy broadcasting) or a number. Every op
//   runs on the host; only `Tensor.fromList` and `toArray` copy data. The N-D ops
//   of ABI 0.2 work on any rank: i64 tensors (`Tensor.fromI64`, `cast`), `matmulT`,
//   `permute`/`slice`/`pad`/`flatten`…, `gather` and `embedding`,
//   `conv2d`/`maxPool2d`/`layerNorm`/`batchNorm`/`dropout` and the losses
//   (`crossEntropy`, `mseLoss`…), each differentiable on the host.
// - Errors are exceptions: a host `result` error (a bad shape, say) throws a
//   `TensorletError`, and anything thrown out of `fit`, `transform`, `init`, `step`,
//   `predict` or `forward` becomes the plugin's WIT `result` error, reported by the
//   host.
// - `Params` holds the host-owned state (fitted statistics, model parameters) as
//   ordered named tensors; `config` arrives as an object parsed from JSON.
// - Gradients are the host's: `loss.grad(params)` returns `Params` holding
//   d loss / d p for each parameter the host watches (those it passed to `step`
//   or, in training mode, to `forward`); `t.watch(name)` watches any other tensor.
//   A refusal throws a `TensorletError` with the host's message.
// - `exportPreprocessor` / `exportTrainer` / `exportPredictor` / `exportModel` turn
//   an object written against these types into the export the component needs:
//
//       export const forward = exportModel({ init(config, spec) { … }, forward(config, params, x, mode) { … } });

import { Tensor as RawTensor } from 'tensorlet:ml/tensor@0.2.0';

/** The name prefix of optimizer state among a trainer's params. */
const OPTIMIZER_PREFIX = 'opt.';

/** A plugin error: a host op refused its inputs, or the plugin gave up. */
export class TensorletError extends Error {
  constructor(message) {
    super(message);
    this.name = 'TensorletError';
  }
}

/** Calls a WIT function returning `result<_, string>`; throws TensorletError on error. */
function call(f) {
  try {
    return f();
  } catch (e) {
    if (e instanceof TensorletError) throw e;
    const message = e && e.payload !== undefined ? e.payload : e && e.message !== undefined ? e.message : e;
    throw new TensorletError(String(message));
  }
}

/**
 * A seed as the bindings carry a WIT u64: a Number (anything else is converted with
 * `Number`), exact up to 2^53. A negative, fractional or too large seed would trap the component inside
 * the bindings, so it throws a TensorletError here instead.
 */
function u64(seed, what) {
  const n = Number(seed);
  if (!Number.isInteger(n) || n < 0 || n >= 2 ** 64) {
    throw new TensorletError(`${what}: the seed must be a whole number in [0, 2^64), got ${String(seed)}`);
  }
  return n;
}

const dims = (shape) => (typeof shape === 'number' ? [shape] : Array.from(shape, Number));

/** The cases of the WIT enums the N-D ops take, as the bindings spell them. */
const DTYPES = ['f32', 'i64'];
const BINARY_OPS = ['add', 'sub', 'mul', 'div', 'maximum', 'minimum', 'pow', 'eq', 'ne', 'lt', 'le', 'gt', 'ge'];
const SCALAR_OPS = ['add', 'mul', 'pow', 'max', 'min', 'leaky-relu'];
const ACTIVATIONS = ['gelu', 'gelu-tanh', 'silu', 'softplus'];
const REDUCTIONS = ['mean', 'sum', 'none'];

/** A WIT enum case by name; anything else throws (the bindings would trap). */
function enumCase(cases, value, what) {
  if (!cases.includes(value)) {
    throw new TensorletError(`${what}: ${JSON.stringify(value)} is not one of ${cases.join(', ')}`);
  }
  return value;
}

/** An integer element of an i64 tensor: exact as a Number only up to 2^53. */
function i64(value, what) {
  const n = Number(value);
  if (!Number.isSafeInteger(n)) {
    throw new TensorletError(`${what}: ${String(value)} is not an integer in (-2^53, 2^53)`);
  }
  return n;
}

/** (height, width) from one number for both or a pair. */
function pair(value, what) {
  if (typeof value === 'number') return [value, value];
  const p = Array.from(value, Number);
  if (p.length !== 2) throw new TensorletError(`${what} must be a number or a [height, width] pair`);
  return p;
}

/** An optional tensor argument as the bindings take it: a handle or null. */
const optional = (t) => (t === undefined || t === null ? null : t.handle);

function flatten(data, convert = Number, what = 'Tensor.fromList') {
  if (!Array.isArray(data)) return { flat: [convert(data)], shape: [] };
  if (data.length === 0) return { flat: [], shape: [0] };
  const parts = data.map((d) => flatten(d, convert, what));
  const inner = parts[0].shape;
  if (parts.some((p) => p.shape.join() !== inner.join())) {
    throw new TensorletError(`${what}: nested arrays are ragged`);
  }
  return { flat: parts.flatMap((p) => p.flat), shape: [data.length, ...inner] };
}

/**
 * An immutable tensor held by the host, f32 (or i64: class indices, token ids, the
 * indices of `gather`). Every op returns a new tensor.
 */
export class Tensor {
  /** Wraps a raw WIT handle (`tensorlet:ml/tensor` resource). */
  constructor(handle) {
    this.handle = handle;
  }

  // Constructors ---------------------------------------------------------

  /** From nested arrays (shape inferred) or a flat array and `shape`. */
  static fromList(data, shape) {
    let flat = data;
    if (shape === undefined) ({ flat, shape } = flatten(data));
    return new Tensor(call(() => RawTensor.fromList(dims(shape), Array.from(flat, Number))));
  }
  static zeros(shape) {
    return new Tensor(call(() => RawTensor.zeros(dims(shape))));
  }
  static full(shape, value) {
    return new Tensor(call(() => RawTensor.fill(dims(shape), value)));
  }
  static ones(shape) {
    return Tensor.full(shape, 1);
  }
  /**
   * Normal samples; the same seed gives the same tensor on every host. The QuickJS
   * bindings carry a WIT u64 as a Number, so seeds are exact up to 2^53.
   */
  static randn(shape, mean = 0, std = 1, seed = 0) {
    const s = u64(seed, 'randn');
    return new Tensor(call(() => RawTensor.randomNormal(dims(shape), mean, std, s)));
  }
  /** Uniform samples in [low, high). */
  static rand(shape, low = 0, high = 1, seed = 0) {
    const s = u64(seed, 'rand');
    return new Tensor(call(() => RawTensor.randomUniform(dims(shape), low, high, s)));
  }

  // Shape and data -------------------------------------------------------

  /** The shape, outermost dimension first (a plain array). */
  get shape() {
    return Array.from(this.handle.shape(), Number);
  }
  get ndim() {
    return this.shape.length;
  }
  /** Number of elements. */
  get size() {
    return this.handle.numel();
  }
  /** Size of dimension `axis`; throws when there is no such axis. */
  dim(axis) {
    const shape = this.shape;
    if (axis < 0 || axis >= shape.length) {
      throw new TensorletError(`axis ${axis} is out of range for shape [${shape}]`);
    }
    return shape[axis];
  }
  /** The data, flat and row-major (copies it out of the host). */
  toArray() {
    return Array.from(this.handle.toList(), Number);
  }
  /** The value of a one-element tensor. */
  item() {
    const data = this.toArray();
    if (data.length !== 1) {
      throw new TensorletError(`item() needs exactly one element; shape is [${this.shape}]`);
    }
    return data[0];
  }

  // Linear algebra and layout ---------------------------------------------

  matmul(rhs) {
    return new Tensor(call(() => this.handle.matmul(rhs.handle)));
  }
  /** Transpose of a 2-D tensor. */
  t() {
    return new Tensor(call(() => this.handle.transpose()));
  }
  reshape(shape) {
    return new Tensor(call(() => this.handle.reshape(dims(shape))));
  }

  // Arithmetic: a tensor broadcasts like NumPy, a number applies to every element.

  add(rhs) {
    if (typeof rhs === 'number') return new Tensor(this.handle.addScalar(rhs));
    return new Tensor(call(() => this.handle.add(rhs.handle)));
  }
  sub(rhs) {
    if (typeof rhs === 'number') return new Tensor(this.handle.addScalar(-rhs));
    return new Tensor(call(() => this.handle.sub(rhs.handle)));
  }
  mul(rhs) {
    if (typeof rhs === 'number') return new Tensor(this.handle.mulScalar(rhs));
    return new Tensor(call(() => this.handle.mul(rhs.handle)));
  }
  div(rhs) {
    if (typeof rhs === 'number') return new Tensor(this.handle.mulScalar(1 / rhs));
    return new Tensor(call(() => this.handle.div(rhs.handle)));
  }

  // Element-wise maps (`op` is a WIT enum case: 'relu', 'relu-mask', 'exp', …).

  map(op) {
    return new Tensor(this.handle.map(op));
  }
  relu() {
    return this.map('relu');
  }
  /** 1 where the input is > 0, else 0: the gradient mask of relu. */
  reluMask() {
    return this.map('relu-mask');
  }
  sigmoid() {
    return this.map('sigmoid');
  }
  tanh() {
    return this.map('tanh');
  }
  exp() {
    return this.map('exp');
  }
  /** Natural logarithm. */
  log() {
    return this.map('log');
  }
  sqrt() {
    return this.map('sqrt');
  }
  neg() {
    return this.map('neg');
  }
  abs() {
    return this.map('abs');
  }
  square() {
    return this.map('square');
  }

  // Reductions and the rest ----------------------------------------------

  reduce(op, axis, keepdims = false) {
    return new Tensor(call(() => this.handle.reduce(op, axis, keepdims)));
  }
  sum(axis, keepdims = false) {
    return this.reduce('sum', axis, keepdims);
  }
  mean(axis, keepdims = false) {
    return this.reduce('mean', axis, keepdims);
  }
  max(axis, keepdims = false) {
    return this.reduce('max', axis, keepdims);
  }
  min(axis, keepdims = false) {
    return this.reduce('min', axis, keepdims);
  }
  /** Index of the largest element along `axis`, as f32 (first one on ties). */
  argmax(axis, keepdims = false) {
    return new Tensor(call(() => this.handle.argmax(axis, keepdims)));
  }
  softmax(axis) {
    return new Tensor(call(() => this.handle.softmax(axis)));
  }
  logSoftmax(axis) {
    return new Tensor(call(() => this.handle.logSoftmax(axis)));
  }
  /** [n] class indices -> [n, classes]. */
  oneHot(classes) {
    return new Tensor(call(() => this.handle.oneHot(classes)));
  }
  /** Rows start..end of the outermost dimension. */
  sliceRows(start, end) {
    return new Tensor(call(() => this.handle.sliceRows(start, end)));
  }
  /** The rows at `indices`, in that order. */
  gatherRows(indices) {
    return new Tensor(call(() => this.handle.gatherRows(Array.from(indices, Number))));
  }
  concat(rhs, axis = 0) {
    return new Tensor(call(() => this.handle.concat(rhs.handle, axis)));
  }

  // Gradients (computed by the host) -------------------------------------

  /**
   * A watched copy of this tensor, named `name`: `gradOf` can differentiate with
   * respect to it. Throws when `name` is already watched in this call.
   */
  watch(name) {
    return new Tensor(call(() => this.handle.watch(String(name))));
  }
  /**
   * The gradients of this one-element tensor (a loss) with respect to each entry
   * of `params` (a `Params`, or an iterable of names) that the host watches (the
   * parameters it passed in), as `Params` with the same names and shapes. Entries
   * named `opt.…` (optimizer state) are skipped. Throws a `TensorletError` with the
   * host's message when the loss does not depend on an entry, or only through an
   * op without a gradient (`argmax`, `oneHot`, `reluMask`).
   */
  grad(params) {
    const all = params instanceof Params ? [...params.keys()] : Array.from(params, String);
    const names = all.filter((n) => !n.startsWith(OPTIMIZER_PREFIX));
    if (names.length === 0) {
      throw new TensorletError(
        'grad: no parameters to differentiate with respect to (every entry is `opt.…` state, or there are none)',
      );
    }
    return this.gradOf(names);
  }
  /**
   * The gradients of this one-element tensor with respect to the watched tensors
   * `names`, in that order (every watched tensor when empty).
   */
  gradOf(names = []) {
    return Params.fromWit(call(() => this.handle.grad(Array.from(names, String))));
  }


  // N-D ops (ABI 0.2): dtypes ----------------------------------------------

  /**
   * An i64 tensor (class indices, token ids, the indices of `gather`) from nested
   * arrays of integers (shape inferred) or a flat array and `shape`. The bindings
   * carry an s64 as a Number, so elements are exact up to 2^53.
   */
  static fromI64(data, shape) {
    const int = (v) => i64(v, 'Tensor.fromI64');
    let flat;
    if (shape === undefined) ({ flat, shape } = flatten(data, int, 'Tensor.fromI64'));
    else flat = Array.from(data, int);
    return new Tensor(call(() => RawTensor.fromI64List(dims(shape), flat)));
  }
  /** `0, 1, …, n - 1` as an i64 tensor [n] (positions). */
  static arange(n) {
    return Tensor.fromI64(Array.from({ length: n }, (_, i) => i), [n]);
  }
  /** The element type: 'f32' or 'i64'. */
  get dtype() {
    return this.handle.dtype();
  }
  /** The data as integers, flat and row-major; throws when an f32 element is not one. */
  toI64Array() {
    return Array.from(call(() => this.handle.toI64List()), Number);
  }
  /** This tensor as `dtype`, 'f32' or 'i64'. No gradient flows through a cast. */
  cast(dtype) {
    const d = enumCase(DTYPES, dtype, 'cast');
    return new Tensor(call(() => this.handle.cast(d)));
  }

  // N-D ops: linear algebra and element-wise ---------------------------------

  /**
   * Batched matrix product over the last two axes (leading axes broadcast),
   * transposing either operand's last two axes first without a copy:
   * `q.matmulT(k, false, true)` is q·kᵀ.
   */
  matmulT(rhs, transposeSelf = false, transposeRhs = false) {
    return new Tensor(call(() => this.handle.matmulTransposed(rhs.handle, transposeSelf, transposeRhs)));
  }
  /** An element-wise binary op ('maximum', 'pow', 'lt', …) with broadcasting. */
  binary(op, rhs) {
    const o = enumCase(BINARY_OPS, op, 'binary');
    return new Tensor(call(() => this.handle.binary(o, rhs.handle)));
  }
  /** Element-wise maximum with a tensor (broadcast) or a number. */
  maximum(rhs) {
    return typeof rhs === 'number' ? this.scalarOp('max', rhs) : this.binary('maximum', rhs);
  }
  /** Element-wise minimum with a tensor (broadcast) or a number. */
  minimum(rhs) {
    return typeof rhs === 'number' ? this.scalarOp('min', rhs) : this.binary('minimum', rhs);
  }
  /** This tensor to the power `rhs`: a number, or a tensor (element-wise, broadcast). */
  pow(rhs) {
    return typeof rhs === 'number' ? this.scalarOp('pow', rhs) : this.binary('pow', rhs);
  }
  /** 1 where this == rhs, else 0 (a mask, f32); `rhs` a tensor or a number. */
  eq(rhs) {
    return compare(this, 'eq', rhs);
  }
  /** 1 where this != rhs, else 0. */
  ne(rhs) {
    return compare(this, 'ne', rhs);
  }
  /** 1 where this < rhs, else 0. */
  lt(rhs) {
    return compare(this, 'lt', rhs);
  }
  /** 1 where this <= rhs, else 0. */
  le(rhs) {
    return compare(this, 'le', rhs);
  }
  /** 1 where this > rhs, else 0. */
  gt(rhs) {
    return compare(this, 'gt', rhs);
  }
  /** 1 where this >= rhs, else 0. */
  ge(rhs) {
    return compare(this, 'ge', rhs);
  }
  /** An op ('add', 'mul', 'pow', 'max', 'min', 'leaky-relu') with `value` on every element. */
  scalarOp(op, value) {
    const o = enumCase(SCALAR_OPS, op, 'scalarOp');
    return new Tensor(call(() => this.handle.scalar(o, value)));
  }
  /** x where x > 0, else slope·x. */
  leakyRelu(slope = 0.01) {
    return this.scalarOp('leaky-relu', slope);
  }
  /** An activation ('gelu', 'gelu-tanh', 'silu', 'softplus') on every element. */
  activate(op) {
    const o = enumCase(ACTIVATIONS, op, 'activate');
    return new Tensor(call(() => this.handle.activate(o)));
  }
  /** GELU, x·Φ(x); `approximate = 'tanh'` for the tanh form. */
  gelu(approximate = 'none') {
    if (approximate !== 'none' && approximate !== 'tanh') {
      throw new TensorletError(`gelu: approximate must be 'none' or 'tanh', got ${approximate}`);
    }
    return this.activate(approximate === 'none' ? 'gelu' : 'gelu-tanh');
  }
  /** SiLU, x·sigmoid(x). */
  silu() {
    return this.activate('silu');
  }
  /** ln(1 + eˣ), without overflow. */
  softplus() {
    return this.activate('softplus');
  }
  /** Every element limited to low..=high. */
  clamp(low = -Infinity, high = Infinity) {
    return new Tensor(call(() => this.handle.clamp(low, high)));
  }
  /** This tensor where `mask` is nonzero, `otherwise` elsewhere (all three broadcast). */
  select(mask, otherwise) {
    return new Tensor(call(() => this.handle.select(mask.handle, otherwise.handle)));
  }
  /** `value` where `mask` (broadcast) is nonzero: a causal mask before a softmax. */
  maskedFill(mask, value) {
    return new Tensor(call(() => this.handle.maskedFill(mask.handle, value)));
  }
  /** Running sums along `axis`, from the end when `reverse`. */
  cumsum(axis, reverse = false) {
    return new Tensor(call(() => this.handle.cumsum(axis, reverse)));
  }

  // N-D ops: shape ------------------------------------------------------------

  /** The axes reordered: output axis i is input axis `axes[i]`. */
  permute(axes) {
    return new Tensor(call(() => this.handle.permute(dims(axes))));
  }
  /** Elements start..end along `axis`, every `step`-th. */
  slice(axis, start, end, step = 1) {
    return new Tensor(call(() => this.handle.slice(axis, start, end, step)));
  }
  /** The tensors `parts` joined along `axis` (all other axes equal). */
  static concatAll(parts, axis = 0) {
    return new Tensor(call(() => RawTensor.concatAll(Array.from(parts, (p) => p.handle), axis)));
  }
  /**
   * Padded with `value`: `pads[i]` is [before, after] for axis i, one pair per
   * axis.
   */
  pad(pads, value = 0) {
    const p = Array.from(pads, ([before, after]) => [Number(before), Number(after)]);
    return new Tensor(call(() => this.handle.pad(p, value)));
  }
  /** Axes start..=end (default: to the last axis) merged into one. */
  flatten(start = 0, end = undefined) {
    const last = end === undefined ? this.ndim - 1 : end;
    return new Tensor(call(() => this.handle.flatten(start, last)));
  }
  /** Axis `axis`, which must have size 1, removed. */
  squeeze(axis) {
    return new Tensor(call(() => this.handle.squeeze(axis)));
  }
  /** A new axis of size 1 at `axis`. */
  unsqueeze(axis) {
    return new Tensor(call(() => this.handle.unsqueeze(axis)));
  }
  /** Broadcast to `shape` (NumPy rules). */
  broadcastTo(shape) {
    return new Tensor(call(() => this.handle.broadcastTo(dims(shape))));
  }

  // N-D ops: indexing (indices: an i64 Tensor, or arrays of integers) ----------

  /** The entries at the 1-D `indices` along `axis`. */
  indexSelect(axis, indices) {
    const i = indexTensor(indices);
    return new Tensor(call(() => this.handle.indexSelect(axis, i.handle)));
  }
  /** Rows of this table [vocab, dim] at `ids` (any shape): ids.shape + [dim]. */
  embedding(ids) {
    const i = indexTensor(ids);
    return new Tensor(call(() => this.handle.embedding(i.handle)));
  }
  /** PyTorch's gather along `axis`, with `indices` of the same rank. */
  gather(axis, indices) {
    const i = indexTensor(indices);
    return new Tensor(call(() => this.handle.gather(axis, i.handle)));
  }
  /** This tensor plus `src` added at `indices` along `axis` (PyTorch's scatter_add). */
  scatterAdd(axis, indices, src) {
    const i = indexTensor(indices);
    return new Tensor(call(() => this.handle.scatterAdd(axis, i.handle, src.handle)));
  }
  /** This tensor plus the slices of `src` added at the 1-D `indices` (PyTorch's index_add). */
  indexAdd(axis, indices, src) {
    const i = indexTensor(indices);
    return new Tensor(call(() => this.handle.indexAdd(axis, i.handle, src.handle)));
  }

  // N-D ops: layers -------------------------------------------------------------

  /**
   * 2-D convolution of NCHW input with `weight` [out, in / groups, kh, kw] and
   * `bias` [out] (or null); `stride`, `padding` and `dilation` are a number or a
   * [height, width] pair. The defaults are PyTorch's.
   */
  conv2d(weight, bias = null, { stride = 1, padding = 0, dilation = 1, groups = 1 } = {}) {
    const options = {
      stride: pair(stride, 'conv2d: stride'),
      padding: pair(padding, 'conv2d: padding'),
      dilation: pair(dilation, 'conv2d: dilation'),
      groups,
    };
    return new Tensor(call(() => this.handle.conv2d(weight.handle, optional(bias), options)));
  }
  /** 1-D convolution of [batch, channels, length] with `weight` [out, in / groups, k]. */
  conv1d(weight, bias = null, { stride = 1, padding = 0, dilation = 1, groups = 1 } = {}) {
    const options = { stride, padding, dilation, groups };
    return new Tensor(call(() => this.handle.conv1d(weight.handle, optional(bias), options)));
  }
  /** Maximum over each `kernel` window of an NCHW tensor; `stride` defaults to `kernel`. */
  maxPool2d(kernel, { stride = kernel, padding = 0 } = {}) {
    const options = pool('maxPool2d', kernel, stride, padding);
    return new Tensor(call(() => this.handle.maxPool2d(options)));
  }
  /** Mean over each `kernel` window of an NCHW tensor; padding counts in the divisor. */
  avgPool2d(kernel, { stride = kernel, padding = 0 } = {}) {
    const options = pool('avgPool2d', kernel, stride, padding);
    return new Tensor(call(() => this.handle.avgPool2d(options)));
  }
  /** [batch, channels, ...] -> [batch, channels]: the mean over the rest. */
  globalAvgPool() {
    return new Tensor(call(() => this.handle.globalAvgPool()));
  }
  /**
   * Normalized over the last `axes` axes (biased variance), then · weight + bias
   * when given (each shaped like those axes).
   */
  layerNorm(axes = 1, { weight = null, bias = null, eps = 1e-5 } = {}) {
    return new Tensor(call(() => this.handle.layerNorm(axes, optional(weight), optional(bias), eps)));
  }
  /**
   * Batch normalization per channel of [batch, channels, ...]. The running
   * statistics are `state.…` params as `forward` received them: with `train` the
   * batch's statistics normalize and the host keeps the running ones updated.
   */
  batchNorm(
    runningMean,
    runningVar,
    { weight = null, bias = null, train = false, momentum = 0.1, eps = 1e-5 } = {},
  ) {
    return new Tensor(
      call(() =>
        this.handle.batchNorm(
          optional(weight),
          optional(bias),
          runningMean.handle,
          runningVar.handle,
          train,
          momentum,
          eps,
        ),
      ),
    );
  }
  /**
   * Each element zeroed with probability `p`, the rest scaled by 1/(1 - p); the
   * host mixes `seed` with the training step. Apply it only in 'train' mode.
   */
  dropout(p, seed) {
    const s = u64(seed, 'dropout');
    return new Tensor(call(() => this.handle.dropout(p, s)));
  }

  // N-D ops: losses (this tensor holds the predictions or logits) -----------------

  /**
   * Cross-entropy of these logits along the class axis `axis` against class
   * indices (i64, or f32 integers) or probabilities (the logits' shape). The
   * defaults are PyTorch's; `reduction` is 'mean', 'sum' or 'none'.
   */
  crossEntropy(
    target,
    { axis = 1, weights = null, labelSmoothing = 0, ignoreIndex = null, reduction = 'mean' } = {},
  ) {
    const r = enumCase(REDUCTIONS, reduction, 'crossEntropy: reduction');
    const ignore =
      ignoreIndex === null || ignoreIndex === undefined ? null : i64(ignoreIndex, 'crossEntropy: ignoreIndex');
    return new Tensor(
      call(() => this.handle.crossEntropy(target.handle, axis, optional(weights), labelSmoothing, ignore, r)),
    );
  }
  /** Binary cross-entropy of these logits against probabilities (broadcast). */
  bceWithLogits(target, reduction = 'mean') {
    const r = enumCase(REDUCTIONS, reduction, 'bceWithLogits: reduction');
    return new Tensor(call(() => this.handle.bceWithLogits(target.handle, r)));
  }
  /** Squared error against `target` (broadcast). */
  mseLoss(target, reduction = 'mean') {
    const r = enumCase(REDUCTIONS, reduction, 'mseLoss: reduction');
    return new Tensor(call(() => this.handle.mseLoss(target.handle, r)));
  }
  /** Absolute error against `target` (broadcast). */
  l1Loss(target, reduction = 'mean') {
    const r = enumCase(REDUCTIONS, reduction, 'l1Loss: reduction');
    return new Tensor(call(() => this.handle.l1Loss(target.handle, r)));
  }
  /** Huber loss against `target` with threshold `delta` > 0. */
  huberLoss(target, delta = 1, reduction = 'mean') {
    const r = enumCase(REDUCTIONS, reduction, 'huberLoss: reduction');
    return new Tensor(call(() => this.handle.huberLoss(target.handle, delta, r)));
  }

  toString() {
    return `Tensor([${this.shape}])`;
  }
}

/** A comparison with a tensor, or with a number as a [1] tensor. */
const compare = (t, op, rhs) => t.binary(op, typeof rhs === 'number' ? Tensor.full([1], rhs) : rhs);

/** Indices as the host takes them: an i64 tensor (arrays become one). */
const indexTensor = (value) => (value instanceof Tensor ? value : Tensor.fromI64(value));

/** The window of maxPool2d and avgPool2d. */
const pool = (what, kernel, stride, padding) => ({
  kernel: pair(kernel, `${what}: kernel`),
  stride: pair(stride, `${what}: stride`),
  padding: pair(padding, `${what}: padding`),
});

/**
 * Named tensors in order: a preprocessor's fitted state or a model's parameters.
 * `new Params({ mean, std })`; `params.get('w')` throws naming the missing entry
 * and the ones present.
 */
export class Params {
  constructor(entries = {}) {
    this.entries = new Map(entries instanceof Map ? entries : Object.entries(entries));
  }
  static fromWit(list) {
    return new Params(new Map(list.map(({ name, value }) => [name, new Tensor(value)])));
  }
  toWit() {
    return [...this.entries].map(([name, value]) => {
      if (!(value instanceof Tensor)) {
        throw new TensorletError(`\`${name}\` is not a Tensor`);
      }
      return { name, value: value.handle };
    });
  }
  has(name) {
    return this.entries.has(name);
  }
  get(name) {
    const value = this.entries.get(name);
    if (value === undefined) {
      const present = [...this.entries.keys()].map((n) => `\`${n}\``).join(', ') || 'none';
      throw new TensorletError(`no tensor named \`${name}\` (present: ${present})`);
    }
    return value;
  }
  set(name, value) {
    this.entries.set(name, value);
    return this;
  }
  get size() {
    return this.entries.size;
  }
  keys() {
    return this.entries.keys();
  }
}

/**
 * The plugin's declared config: `config` over `defaults`, which lists every key the
 * plugin takes with its default. A key not in `defaults` throws a `TensorletError`
 * naming it and the known keys, as the Rust SDK's `Config::decode` does
 * (``unknown config key `hiden`; the known keys are: hidden``), so a typo is never a
 * silent default. `null` counts as absent. Call it in every method that reads
 * `config`: `const c = configKeys(config, { hidden: [64] });`.
 */
export function configKeys(config, defaults) {
  const known = Object.keys(defaults).sort();
  for (const key of Object.keys(config).sort()) {
    if (!Object.prototype.hasOwnProperty.call(defaults, key)) {
      throw new TensorletError(
        known.length > 0
          ? `unknown config key \`${key}\`; the known keys are: ${known.join(', ')}`
          : `unknown config key \`${key}\`; this plugin takes no config keys`,
      );
    }
  }
  const out = { ...defaults };
  for (const [key, value] of Object.entries(config)) {
    if (value !== null && value !== undefined) out[key] = value;
  }
  return out;
}

function parseConfig(text) {
  const value = text ? JSON.parse(text) : {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new TensorletError(`config must be a JSON object, got ${text}`);
  }
  return value;
}

/** Runs plugin code; whatever it throws reaches the host as the result error. */
function guard(f) {
  try {
    return f();
  } catch (e) {
    throw new Error(e instanceof Error ? e.message : String(e));
  }
}

const asParams = (value, what) => {
  if (value instanceof Params) return value;
  if (value && typeof value === 'object') return new Params(value);
  throw new TensorletError(`${what} must return Params or an object of tensors`);
};

const asHandle = (value, what) => {
  if (!(value instanceof Tensor)) throw new TensorletError(`${what} must return a Tensor`);
  return value.handle;
};

/** The `preprocess` export: `export const preprocess = exportPreprocessor({ fit, transform })`. */
export function exportPreprocessor(impl) {
  return {
    fit: (config, x) => guard(() => asParams(impl.fit(parseConfig(config), new Tensor(x)), 'fit').toWit()),
    transform: (config, state, x) =>
      guard(() =>
        asHandle(impl.transform(parseConfig(config), Params.fromWit(state), new Tensor(x)), 'transform'),
      ),
  };
}

/**
 * What the host tells a trainer or model about the data: `{ features, outputs,
 * task, seed }`, `task` being 'classification' or 'regression'; `classes` is
 * `outputs`, the name ABI 0.1 used.
 */
const dataSpec = ({ features, outputs, task, seed }) => ({ features, outputs, task, seed, classes: outputs });

/**
 * The `train` export: `export const train = exportTrainer({ init, step })`.
 * `init(config, { features, outputs, task, seed })` returns params;
 * `step(config, params, x, y, step)` returns `{ params, loss }`.
 */
export function exportTrainer(impl) {
  return {
    init: (config, spec) =>
      guard(() => asParams(impl.init(parseConfig(config), dataSpec(spec)), 'init').toWit()),
    step: (config, params, x, y, step) =>
      guard(() => {
        const out = impl.step(parseConfig(config), Params.fromWit(params), new Tensor(x), new Tensor(y), step);
        const loss = Number(out && out.loss);
        if (!Number.isFinite(loss)) throw new TensorletError(`step computed a non-finite loss (${loss})`);
        return { params: asParams(out.params, 'step').toWit(), loss };
      }),
  };
}

/** The `predict` export: `export const predict = exportPredictor({ predict })`. */
export function exportPredictor(impl) {
  return {
    predict: (config, params, x) =>
      guard(() => asHandle(impl.predict(parseConfig(config), Params.fromWit(params), new Tensor(x)), 'predict')),
  };
}

/**
 * The `forward` export of a model that is only its forward pass (world `model`):
 * `export const forward = exportModel({ init, forward })`. `init(config, { features,
 * outputs, task, seed })` returns params; `forward(config, params, x, mode)` returns
 * the outputs (one logit per class for classification), `mode` being 'train' or
 * 'eval'. The host computes the loss, its gradients and the optimizer's update, and
 * predicts with the softmax of `forward` in 'eval' mode.
 */
export function exportModel(impl) {
  return {
    init: (config, spec) =>
      guard(() => asParams(impl.init(parseConfig(config), dataSpec(spec)), 'init').toWit()),
    forward: (config, params, x, mode) =>
      guard(() =>
        asHandle(impl.forward(parseConfig(config), Params.fromWit(params), new Tensor(x), mode), 'forward'),
      ),
  };
}
