// f32 -> i64 (two words, low then high), for elements that are integers in
// the range of i64. `bad[0]` starts at 0xffffffff and ends as the smallest
// position of an element that is not (NaN, an infinity, a fraction, or a
// magnitude of 2^63 or more), so the host can report it.

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read_write> bad: array<atomic<u32>>;
@group(0) @binding(3) var<storage, read> a: array<f32>;

// v[0] = (elements, -, -, -).
@compute @workgroup_size(256, 1, 1)
fn to_i64(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let i = (wid.y * nwg.x + wid.x) * 256u + li;
    if i >= P.v[0].x {
        return;
    }
    let x = a[i];
    // -2^63 is exact in f32; 2^63 is the first magnitude out of range.
    let ok = x == x && x == floor(x) && x >= -9.223372e18 && x < 9.223372e18;
    if !ok {
        atomicMin(&bad[0], i);
        out[2u * i] = 0u;
        out[2u * i + 1u] = 0u;
        return;
    }
    let m = abs(x);
    // m = hi·2^32 + lo, both parts exact (m is an integer below 2^63).
    let hi_f = floor(m * (1.0 / 4294967296.0));
    var hi = u32(hi_f);
    var lo = u32(m - hi_f * 4294967296.0);
    if x < 0.0 {
        lo = ~lo + 1u;
        hi = ~hi + select(0u, 1u, lo == 0u);
    }
    out[2u * i] = lo;
    out[2u * i + 1u] = hi;
}
