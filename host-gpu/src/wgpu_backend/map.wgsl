// Element-wise maps of one tensor, constant fills and seeded random fills.
//
// Params: v[0] = (op, n, value bits, -) for `unary` and `fill`;
// v[0] = (distribution, n, seed low, seed high), v[1] = (p0 bits, p1 bits, -, -)
// for `random`.

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;

fn index(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + li;
}

// tanh without overflow for large |x|.
fn tanh_stable(x: f32) -> f32 {
    let e = exp(-2.0 * abs(x));
    return sign(x) * (1.0 - e) / (1.0 + e);
}

// erf as the CPU backend computes it (cpu::erf): Numerical Recipes' erfc fit.
fn erf(x: f32) -> f32 {
    let z = abs(x);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.2655122
        + t * (1.0000237 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
        + t * (0.27886807 + t * (-1.1352039 + t * (1.4885159
        + t * (-0.82215223 + t * 0.17087277))))))));
    let erfc = t * exp(poly);
    return select(erfc - 1.0, 1.0 - erfc, x >= 0.0);
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// NaN, through a value the compiler cannot fold.
fn nan() -> f32 {
    return bitcast<f32>(0x7fc00000u | (P.v[15].w & 0u));
}

// xʸ as Rust's powf: a negative base needs an integral exponent, 0⁰ = 1.
fn pow_f(x: f32, y: f32) -> f32 {
    if y == 0.0 {
        return 1.0;
    }
    if x != x || y != y {
        return nan();
    }
    // An odd integral exponent keeps the sign of the base (and of a zero).
    let odd = y == floor(y) && abs(y) % 2.0 == 1.0;
    let negative = (bitcast<u32>(x) >> 31u) == 1u;
    if x == 0.0 {
        let r = select(0.0, bitcast<f32>(0x7f800000u | (P.v[15].w & 0u)), y < 0.0);
        return select(r, -r, negative && odd);
    }
    let r = exp2(y * log2(abs(x)));
    if x >= 0.0 {
        return r;
    }
    if y != floor(y) {
        return nan();
    }
    return select(r, -r, odd);
}

// √(2/π) and 1/√(2π).
const GELU_C: f32 = 0.7978846;
const INV_SQRT_2PI: f32 = 0.3989423;

// Maps with a parameter (v[0].z) and the activations; codes 12 and up.
fn map_more(op: u32, x: f32, v: f32) -> f32 {
    switch op {
        case 12u: { return pow_f(x, v); }
        case 13u: { return select(max(x, v), x, x != x); }
        case 14u: { return select(min(x, v), x, x != x); }
        case 15u: { return select(v * x, x, x > 0.0); }
        case 20u: { return 0.5 * x * (1.0 + erf(x * 0.70710677)); }
        case 21u: {
            return 0.5 * x * (1.0 + tanh_stable(GELU_C * (x + 0.044715 * x * x * x)));
        }
        case 22u: { return x * sigmoid(x); }
        case 23u: { return max(x, 0.0) + log(1.0 + exp(-abs(x))); }
        case 24u: {
            let cdf = 0.5 * (1.0 + erf(x * 0.70710677));
            return cdf + x * exp(-0.5 * x * x) * INV_SQRT_2PI;
        }
        case 25u: {
            let t = tanh_stable(GELU_C * (x + 0.044715 * x * x * x));
            let du = GELU_C * (1.0 + 3.0 * 0.044715 * x * x);
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
        }
        default: {
            let s = sigmoid(x);
            return s * (1.0 + x * (1.0 - s));
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn unary(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let op = P.v[0].x;
    let n = P.v[0].y;
    let value = bitcast<f32>(P.v[0].z);
    let i = index(li, wid, nwg);
    if i >= n {
        return;
    }
    let x = a[i];
    var r: f32;
    switch op {
        case 0u: { r = max(x, 0.0); }
        case 1u: { r = 1.0 / (1.0 + exp(-x)); }
        case 2u: { r = tanh_stable(x); }
        case 3u: { r = exp(x); }
        case 4u: { r = log(x); }
        case 5u: { r = sqrt(x); }
        case 6u: { r = -x; }
        case 7u: { r = abs(x); }
        case 8u: { r = x * x; }
        case 9u: { r = select(0.0, 1.0, x > 0.0); }
        case 10u: { r = x + value; }
        case 11u: { r = x * value; }
        default: { r = map_more(op, x, value); }
    }
    out[i] = r;
}

@compute @workgroup_size(256, 1, 1)
fn fill(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = index(li, wid, nwg);
    if i < P.v[0].y {
        out[i] = bitcast<f32>(P.v[0].z);
    }
}

// The generator of host-gpu/src/rng.rs, word for word.
fn hash32(x0: u32) -> u32 {
    var x = x0;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn rng_word(lo: u32, hi: u32, counter: u32) -> u32 {
    return hash32(hash32(hash32(counter ^ 0x9e3779b9u) + lo) ^ hi);
}

fn unit(lo: u32, hi: u32, counter: u32) -> f32 {
    return f32(rng_word(lo, hi, counter) >> 8u) * (1.0 / 16777216.0);
}

@compute @workgroup_size(256, 1, 1)
fn random(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let dist = P.v[0].x;
    let n = P.v[0].y;
    let lo = P.v[0].z;
    let hi = P.v[0].w;
    let p0 = bitcast<f32>(P.v[1].x);
    let p1 = bitcast<f32>(P.v[1].y);
    let i = index(li, wid, nwg);
    if i >= n {
        return;
    }
    let c = i * 2u;
    if dist == 0u {
        // Uniform in [p0, p1).
        out[i] = p0 + (p1 - p0) * unit(lo, hi, c);
    } else {
        // Normal(p0, p1) by Box-Muller; u1 in (0, 1] keeps log finite.
        let u1 = 1.0 - unit(lo, hi, c);
        let u2 = unit(lo, hi, c + 1u);
        let r = sqrt(-2.0 * log(u1));
        out[i] = p0 + p1 * r * cos(6.283185307179586 * u2);
    }
}
