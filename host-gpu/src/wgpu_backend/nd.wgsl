// N-D kernels on 32-bit words: strided copies and fills (permute, slice,
// pad, concat, broadcast), index-driven gathers and their reverses, select,
// running sums, clamp, dropout masks and i64 -> f32 conversion.
//
// Every buffer is bound as array<u32>: data movement copies bits (an i64
// element is two words, low then high, and a NaN keeps its payload), and
// arithmetic reads f32 through bitcast. Index tensors are i64 words; the
// host has checked every index, so only the low word is read.
//
// The generator functions (hash32, rng_word, unit) come from rng.wgsl,
// which the host puts in front of this file.

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> a: array<u32>;
@group(0) @binding(3) var<storage, read> b: array<u32>;
@group(0) @binding(4) var<storage, read> c: array<u32>;

fn word(i: u32) -> u32 {
    return P.v[i / 4u][i % 4u];
}

fn flat(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + li;
}

fn f(x: u32) -> f32 {
    return bitcast<f32>(x);
}

fn bits(x: f32) -> u32 {
    return bitcast<u32>(x);
}

// out[dst] = a[src] over a block of up to nine dimensions.
// v[0] = (rank, n, src offset, dst offset); words 4.. dims, 13.. source
// strides, 22.. destination strides (innermost last).
@compute @workgroup_size(256, 1, 1)
fn copy(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let rank = P.v[0].x;
    let n = P.v[0].y;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    var rem = i;
    var src = P.v[0].z;
    var dst = P.v[0].w;
    for (var d = rank; d > 0u; d--) {
        let dim = word(3u + d);
        let coord = rem % dim;
        rem = rem / dim;
        src += coord * word(12u + d);
        dst += coord * word(21u + d);
    }
    out[dst] = a[src];
}

// v[0] = (n, period, word 0, word 1): out[i] = word (i % period).
@compute @workgroup_size(256, 1, 1)
fn fill(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(li, wid, nwg);
    if i < P.v[0].x {
        out[i] = select(P.v[0].z, P.v[0].w, i % P.v[0].y == 1u);
    }
}

// a viewed as [outer, rows, inner words]: out[o, j, w] = a[o, idx[j], w].
// v[0] = (output words, indices, inner words, rows); b = the i64 indices.
@compute @workgroup_size(256, 1, 1)
fn index_select(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = P.v[0].x;
    let m = P.v[0].y;
    let inner = P.v[0].z;
    let rows = P.v[0].w;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let w = i % inner;
    let t = i / inner;
    let j = t % m;
    let o = t / m;
    out[i] = a[(o * rows + b[2u * j]) * inner + w];
}

// torch.gather: out[e] = a[e's coordinates with the axis one replaced by
// idx[e]], for e over the index shape; each element is `per` words.
// v[0] = (rank, output words, axis, per); words 4.. index dims, 12.. strides
// of a (in elements).
@compute @workgroup_size(256, 1, 1)
fn gather(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let rank = P.v[0].x;
    let n = P.v[0].y;
    let axis = P.v[0].z;
    let per = P.v[0].w;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let e = i / per;
    var rem = e;
    var src = 0u;
    for (var d = rank; d > 0u; d--) {
        let dim = word(3u + d);
        let coord = rem % dim;
        rem = rem / dim;
        if d - 1u != axis {
            src += coord * word(11u + d);
        }
    }
    src += b[2u * e] * word(12u + axis);
    out[i] = a[src * per + i % per];
}

// i64 (two words) -> f32, rounded to nearest, ties to even, as Rust's `as`.
fn i64_to_f32(lo: u32, hi: u32) -> f32 {
    let neg = (hi >> 31u) == 1u;
    var l = lo;
    var h = hi;
    if neg {
        // Two's complement negation of the 64-bit value.
        l = ~lo + 1u;
        h = ~hi + select(0u, 1u, l == 0u);
    }
    // |value| = h·2^32 + l (h < 2^31 but for -2^63, where h = 2^31).
    var mag: f32;
    if h == 0u {
        if l < 16777216u {
            mag = f32(l);
        } else {
            mag = round_bits(0u, l);
        }
    } else {
        mag = round_bits(h, l);
    }
    return select(mag, -mag, neg);
}

// The 64-bit magnitude h·2^32 + l (> 2^24) rounded to 24 significant bits.
fn round_bits(h: u32, l: u32) -> f32 {
    // Position of the leading one, counted from bit 0 of the 64-bit value.
    var top: u32;
    if h != 0u {
        top = 63u - countLeadingZeros(h);
    } else {
        top = 31u - countLeadingZeros(l);
    }
    let drop = top - 23u;
    // The 24 kept bits, and whether the dropped ones are above, at or below half.
    var kept: u32;
    var half: u32;
    var rest: bool;
    if drop >= 32u {
        kept = h >> (drop - 32u);
        let dropped_h = select(h & ((1u << (drop - 32u)) - 1u), 0u, drop == 32u);
        let half_bit = drop - 1u;
        if half_bit >= 32u {
            half = (h >> (half_bit - 32u)) & 1u;
            let below = select(dropped_h & ((1u << (half_bit - 32u)) - 1u), 0u, half_bit == 32u);
            rest = below != 0u || l != 0u;
        } else {
            half = (l >> half_bit) & 1u;
            rest = (l & ((1u << half_bit) - 1u)) != 0u;
        }
    } else {
        kept = (h << (32u - drop)) | (l >> drop);
        let half_bit = drop - 1u;
        half = (l >> half_bit) & 1u;
        rest = (l & ((1u << half_bit) - 1u)) != 0u;
    }
    if half == 1u && (rest || (kept & 1u) == 1u) {
        kept += 1u;
    }
    // kept <= 2^24, and scaling by 2^drop is exact.
    return ldexp(f32(kept), i32(drop));
}

// v[0] = (elements, -, -, -); a = i64 words.
@compute @workgroup_size(256, 1, 1)
fn to_f32(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(li, wid, nwg);
    if i < P.v[0].x {
        out[i] = bits(i64_to_f32(a[2u * i], a[2u * i + 1u]));
    }
}

// The reverse of index_select (f32): out[o, r, e] = Σ a[o, j, e] over the
// positions j listed for row r, in order. b is a CSR list: b[r]..b[r + 1] are
// the positions in b of row r's entries. v[0] = (output elements, rows,
// inner, indices).
@compute @workgroup_size(256, 1, 1)
fn index_add(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = P.v[0].x;
    let rows = P.v[0].y;
    let inner = P.v[0].z;
    let m = P.v[0].w;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let e = i % inner;
    let t = i / inner;
    let r = t % rows;
    let o = t / rows;
    var acc = 0.0;
    for (var k = b[r]; k < b[r + 1u]; k++) {
        acc += f(a[(o * m + b[k]) * inner + e]);
    }
    out[i] = bits(acc);
}

// The reverse of gather (f32): out[p] = Σ_j [idx[p with axis = j] == p_axis]
// · a[p with axis = j] over positions inside the index shape, j increasing.
// v[0] = (rank, output elements, axis, -); words 4.. output dims, 12.. index dims.
@compute @workgroup_size(256, 1, 1)
fn scatter_add(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let rank = P.v[0].x;
    let n = P.v[0].y;
    let axis = P.v[0].z;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    // The index-shape offset of i's coordinates (axis coordinate left out),
    // and whether i lies inside the index shape outside the axis.
    var rem = i;
    var base = 0u;
    var stride = 1u;
    var axis_stride = 1u;
    var row_at = 0u;
    var inside = true;
    for (var d = rank; d > 0u; d--) {
        let dim = word(3u + d);
        let idim = word(11u + d);
        let coord = rem % dim;
        rem = rem / dim;
        if d - 1u == axis {
            row_at = coord;
            axis_stride = stride;
        } else {
            inside = inside && coord < idim;
            base += coord * stride;
        }
        stride *= idim;
    }
    var acc = 0.0;
    if inside {
        let len = word(12u + axis);
        for (var j = 0u; j < len; j++) {
            let p = base + j * axis_stride;
            if b[2u * p] == row_at {
                acc += f(a[p]);
            }
        }
    }
    out[i] = bits(acc);
}

// cond != 0 ? x : y, broadcasting. v[0] = (rank, n, -, -); words 4.. output
// dims, 12.. strides of cond (a), 20.. of x (b), 28.. of y (c).
@compute @workgroup_size(256, 1, 1)
fn select_where(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let rank = P.v[0].x;
    let n = P.v[0].y;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    var rem = i;
    var oc = 0u;
    var ox = 0u;
    var oy = 0u;
    for (var d = rank; d > 0u; d--) {
        let dim = word(3u + d);
        let coord = rem % dim;
        rem = rem / dim;
        oc += coord * word(11u + d);
        ox += coord * word(19u + d);
        oy += coord * word(27u + d);
    }
    out[i] = select(c[oy], b[ox], f(a[oc]) != 0.0);
}

// Running sums along [outer, len, inner]: one thread per (outer, inner).
// v[0] = (outer, len, inner, reverse).
@compute @workgroup_size(256, 1, 1)
fn cumsum(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let outer = P.v[0].x;
    let len = P.v[0].y;
    let inner = P.v[0].z;
    let reverse = P.v[0].w == 1u;
    let t = flat(li, wid, nwg);
    if t >= outer * inner {
        return;
    }
    let base = (t / inner) * len * inner + t % inner;
    var acc = 0.0;
    for (var s = 0u; s < len; s++) {
        let j = select(s, len - 1u - s, reverse);
        let at = base + j * inner;
        acc += f(a[at]);
        out[at] = bits(acc);
    }
}

// min(max(x, lo), hi), NaN staying NaN. v[0] = (n, lo bits, hi bits, -).
@compute @workgroup_size(256, 1, 1)
fn clamp_map(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(li, wid, nwg);
    if i >= P.v[0].x {
        return;
    }
    let x = f(a[i]);
    let r = min(max(x, f(P.v[0].y)), f(P.v[0].z));
    out[i] = bits(select(r, x, x != x));
}

// Dropout multipliers: scale where unit(seed, 2i) >= p, else 0.
// v[0] = (n, p bits, seed low, seed high), v[1].x = scale bits.
@compute @workgroup_size(256, 1, 1)
fn dropout(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = flat(li, wid, nwg);
    if i >= P.v[0].x {
        return;
    }
    let u = unit(P.v[0].z, P.v[0].w, i * 2u);
    out[i] = select(0u, P.v[1].x, u >= f(P.v[0].y));
}

// out[e] (+ out[e] when accumulating) += Σ_k a[k · len + e], k increasing.
// v[0] = (len, batches, accumulate, -).
@compute @workgroup_size(256, 1, 1)
fn sum_batches(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let len = P.v[0].x;
    let batches = P.v[0].y;
    let i = flat(li, wid, nwg);
    if i >= len {
        return;
    }
    var acc = select(0.0, f(out[i]), P.v[0].z == 1u);
    for (var k = 0u; k < batches; k++) {
        acc += f(a[k * len + i]);
    }
    out[i] = bits(acc);
}
