// tensorlet.js: idiomatic JavaScript over tensorlet's WIT ABI (tensorlet:ml@0.1.0).
//
// Build a plugin with `jco componentize --backend quickjs --bundle` (see README.md);
// this module imports the host's `tensor` resource, so it only runs inside such a
// component.
//
// - `Tensor` wraps the host resource with chainable methods: `x.matmul(w).add(b)`;
//   `add`/`sub`/`mul`/`div` take a tensor (NumPy broadcasting) or a number. Every op
//   runs on the host; only `Tensor.fromList` and `toArray` copy data.
// - Errors are exceptions: a host `result` error (a bad shape, say) throws a
//   `TensorletError`, and anything thrown out of `fit`, `transform`, `init`, `step`
//   or `predict` becomes the plugin's WIT `result` error, reported by the host.
// - `Params` holds the host-owned state (fitted statistics, model parameters) as
//   ordered named tensors; `config` arrives as an object parsed from JSON.
// - `exportPreprocessor` / `exportTrainer` / `exportPredictor` turn an object written
//   against these types into the export the component needs:
//
//       export const predict = exportPredictor({ predict(config, params, x) { … } });

import { Tensor as RawTensor } from 'tensorlet:ml/tensor@0.1.0';

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
    return new Tensor(call(() => RawTensor.randomNormal(dims(shape), mean, std, Number(seed))));
  }
  /** Uniform samples in [low, high). */
  static rand(shape, low = 0, high = 1, seed = 0) {
    return new Tensor(call(() => RawTensor.randomUniform(dims(shape), low, high, Number(seed))));
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
 * The `train` export: `export const train = exportTrainer({ init, step })`.
 * `init(config, { features, classes, seed })` returns params; `step(config, params,
 * x, y, step)` returns `{ params, loss }`.
 */
export function exportTrainer(impl) {
  return {
    init: (config, spec) =>
      guard(() => asParams(impl.init(parseConfig(config), spec), 'init').toWit()),
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
