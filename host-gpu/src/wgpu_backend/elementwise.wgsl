// Broadcasting arithmetic of two tensors: out[i] = a[ia] op b[ib].
//
// The host collapses adjacent dimensions that broadcast alike, so `rank` is
// usually 1 or 2. Strides are 0 along broadcast dimensions.
//
// Params: v[0] = (op, n, rank, -), v[1..3] = output dims, v[3..5] = a strides,
// v[5..7] = b strides (eight u32 each, innermost last).

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn word(i: u32) -> u32 {
    return P.v[i / 4u][i % 4u];
}

@compute @workgroup_size(256, 1, 1)
fn binary(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let op = P.v[0].x;
    let n = P.v[0].y;
    let rank = P.v[0].z;
    let i = (wid.y * nwg.x + wid.x) * 256u + li;
    if i >= n {
        return;
    }
    var rem = i;
    var ia = 0u;
    var ib = 0u;
    for (var d = rank; d > 0u; d--) {
        let dim = word(4u + d - 1u);
        let coord = rem % dim;
        rem = rem / dim;
        ia += coord * word(12u + d - 1u);
        ib += coord * word(20u + d - 1u);
    }
    let x = a[ia];
    let y = b[ib];
    var r: f32;
    switch op {
        case 0u: { r = x + y; }
        case 1u: { r = x - y; }
        case 2u: { r = x * y; }
        case 3u: { r = x / y; }
        default: { r = compare_or_more(op, x, y); }
    }
    out[i] = r;
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

// Ops 4.. : maximum, minimum (NaN if either is), pow, and the comparisons
// (1 or 0).
fn compare_or_more(op: u32, x: f32, y: f32) -> f32 {
    let either_nan = x != x || y != y;
    switch op {
        case 4u: { return select(max(x, y), nan(), either_nan); }
        case 5u: { return select(min(x, y), nan(), either_nan); }
        case 6u: { return pow_f(x, y); }
        case 7u: { return select(0.0, 1.0, x == y); }
        case 8u: { return select(0.0, 1.0, x != y); }
        case 9u: { return select(0.0, 1.0, x < y); }
        case 10u: { return select(0.0, 1.0, x <= y); }
        case 11u: { return select(0.0, 1.0, x > y); }
        default: { return select(0.0, 1.0, x >= y); }
    }
}
