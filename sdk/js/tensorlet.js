// tensorlet.js: idiomatic JavaScript over tensorlet's WIT ABI (tensorlet:ml@0.2.0).
//
// Build a plugin with `jco componentize --backend quickjs --bundle` (see README.md);
// this module imports the host's `tensor` resource, so it only runs inside such a
// component.
//
// - `Tensor` wraps the host resource with chainable methods: `x.matmul(w).add(b)`;
//   `add`/`sub`/`mul`/`div` take a tensor (NumPy broadcasting) or a number. Every op
//   runs on the host; only `Tensor.fromList` and `toArray` copy data.
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

function flatten(data) {
  if (!Array.isArray(data)) return { flat: [Number(data)], shape: [] };
  if (data.length === 0) return { flat: [], shape: [0] };
  const parts = data.map(flatten);
  const inner = parts[0].shape;
  if (parts.some((p) => p.shape.join() !== inner.join())) {
    throw new TensorletError('Tensor.fromList: nested arrays are ragged');
  }
  return { flat: parts.flatMap((p) => p.flat), shape: [data.length, ...inner] };
}

/** An immutable f32 tensor held by the host. Every op returns a new tensor. */
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

  toString() {
    return `Tensor([${this.shape}])`;
  }
}

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
