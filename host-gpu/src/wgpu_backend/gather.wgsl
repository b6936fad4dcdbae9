// Rows of a [rows, row_len] tensor picked by u32 indices, in their order, and
// the reverse: rows summed into the rows their indices name.

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> idx: array<u32>;

fn flat(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + li;
}

// Params: v[0] = (row length, output elements, -, -).
@compute @workgroup_size(256, 1, 1)
fn gather(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row_len = P.v[0].x;
    let n = P.v[0].y;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let r = i / row_len;
    out[i] = a[idx[r] * row_len + i % row_len];
}

// Params: v[0] = (row length, output elements, -, -). `idx` is a CSR list:
// idx[r]..idx[r + 1] are the positions in `idx` of the rows of `a` that add
// into output row r, in the order the additions must happen.
@compute @workgroup_size(256, 1, 1)
fn scatter_add(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let row_len = P.v[0].x;
    let n = P.v[0].y;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let r = i / row_len;
    let c = i % row_len;
    var acc = 0.0;
    for (var k = idx[r]; k < idx[r + 1u]; k++) {
        acc += a[idx[k] * row_len + c];
    }
    out[i] = acc;
}
