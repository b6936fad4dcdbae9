// Reductions and softmax of a tensor viewed as [outer, axis, inner], along axis.
//
// `reduce` and `softmax` give each output (o, i) its own thread, which walks the
// axis; neighbouring threads read neighbouring `inner` elements. `reduce_wide`
// and `softmax_wide` give each row (o) a workgroup of 256 threads and combine
// partial results in workgroup memory; the host uses them when inner = 1 and
// the axis is long.
//
// Params: v[0] = (op, outer, axis, inner). Ops: 0 sum, 1 mean, 2 max, 3 min,
// 4 argmax (first index of the maximum); for softmax, op 1 is log-softmax.

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;

// -infinity. WGSL constant expressions may not be infinite, so the bits go
// through a value the compiler cannot fold.
fn neg_inf() -> f32 {
    return bitcast<f32>(0xff800000u | (P.v[15].w & 0u));
}

fn flat(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + li;
}

@compute @workgroup_size(256, 1, 1)
fn reduce(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let op = P.v[0].x;
    let outer = P.v[0].y;
    let len = P.v[0].z;
    let inner = P.v[0].w;
    let t = flat(li, wid, nwg);
    if t >= outer * inner {
        return;
    }
    let o = t / inner;
    let i = t % inner;
    let base = o * len * inner + i;
    var r: f32;
    switch op {
        case 0u, 1u: {
            var s = 0.0;
            for (var j = 0u; j < len; j++) {
                s += a[base + j * inner];
            }
            r = select(s, s / f32(len), op == 1u);
        }
        case 2u: {
            var s = a[base];
            for (var j = 1u; j < len; j++) {
                s = max(s, a[base + j * inner]);
            }
            r = s;
        }
        case 3u: {
            var s = a[base];
            for (var j = 1u; j < len; j++) {
                s = min(s, a[base + j * inner]);
            }
            r = s;
        }
        default: {
            var best = 0u;
            var bv = a[base];
            for (var j = 1u; j < len; j++) {
                let v = a[base + j * inner];
                if v > bv {
                    best = j;
                    bv = v;
                }
            }
            r = f32(best);
        }
    }
    out[t] = r;
}

var<workgroup> part_v: array<f32, 256>;
var<workgroup> part_i: array<u32, 256>;

// Combines the 256 partial (value, index) pairs into part_v[0], part_i[0].
fn tree(li: u32, op: u32) {
    for (var s = 128u; s > 0u; s >>= 1u) {
        workgroupBarrier();
        if li < s {
            let x = part_v[li];
            let y = part_v[li + s];
            switch op {
                case 0u, 1u: { part_v[li] = x + y; }
                case 2u: { part_v[li] = max(x, y); }
                case 3u: { part_v[li] = min(x, y); }
                default: {
                    // Larger value wins; a tie goes to the smaller index.
                    let xi = part_i[li];
                    let yi = part_i[li + s];
                    if y > x || (y == x && yi < xi) {
                        part_v[li] = y;
                        part_i[li] = yi;
                    }
                }
            }
        }
    }
    workgroupBarrier();
}

// Partial reduction of row `o` by thread `li`: elements li, li + 256, ...
fn partial(op: u32, base: u32, len: u32, li: u32) {
    var v: f32;
    var idx = 0u;
    switch op {
        case 0u, 1u: { v = 0.0; }
        case 2u, 4u: { v = neg_inf(); }
        default: { v = -neg_inf(); }
    }
    var found = false;
    for (var j = li; j < len; j += 256u) {
        let x = a[base + j];
        switch op {
            case 0u, 1u: { v += x; }
            case 2u: { v = max(v, x); }
            case 3u: { v = min(v, x); }
            default: {
                if !found || x > v {
                    v = x;
                    idx = j;
                    found = true;
                }
            }
        }
    }
    if op == 4u && !found {
        idx = 0xffffffffu;
    }
    part_v[li] = v;
    part_i[li] = idx;
}

@compute @workgroup_size(256, 1, 1)
fn reduce_wide(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let op = P.v[0].x;
    let outer = P.v[0].y;
    let len = P.v[0].z;
    let o = wid.y * nwg.x + wid.x;
    // Uniform per workgroup, so the barriers below stay in uniform control flow.
    if o >= outer {
        return;
    }
    partial(op, o * len, len, li);
    tree(li, op);
    if li == 0u {
        switch op {
            case 1u: { out[o] = part_v[0] / f32(len); }
            case 4u: { out[o] = f32(part_i[0]); }
            default: { out[o] = part_v[0]; }
        }
    }
}

@compute @workgroup_size(256, 1, 1)
fn softmax(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let log_out = P.v[0].x == 1u;
    let outer = P.v[0].y;
    let len = P.v[0].z;
    let inner = P.v[0].w;
    let t = flat(li, wid, nwg);
    if t >= outer * inner {
        return;
    }
    let base = (t / inner) * len * inner + t % inner;
    var mx = neg_inf();
    for (var j = 0u; j < len; j++) {
        mx = max(mx, a[base + j * inner]);
    }
    var s = 0.0;
    for (var j = 0u; j < len; j++) {
        s += exp(a[base + j * inner] - mx);
    }
    let ls = log(s);
    for (var j = 0u; j < len; j++) {
        let z = a[base + j * inner] - mx;
        out[base + j * inner] = select(exp(z) / s, z - ls, log_out);
    }
}

@compute @workgroup_size(256, 1, 1)
fn softmax_wide(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let log_out = P.v[0].x == 1u;
    let outer = P.v[0].y;
    let len = P.v[0].z;
    let o = wid.y * nwg.x + wid.x;
    if o >= outer {
        return;
    }
    let base = o * len;
    partial(2u, base, len, li);
    tree(li, 2u);
    let mx = part_v[0];
    workgroupBarrier();
    var s = 0.0;
    for (var j = li; j < len; j += 256u) {
        s += exp(a[base + j] - mx);
    }
    part_v[li] = s;
    tree(li, 0u);
    let total = part_v[0];
    let ls = log(total);
    for (var j = li; j < len; j += 256u) {
        let z = a[base + j] - mx;
        out[base + j] = select(exp(z) / total, z - ls, log_out);
    }
}
