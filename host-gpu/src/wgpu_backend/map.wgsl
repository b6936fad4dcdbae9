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
        default: { r = x * value; }
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
