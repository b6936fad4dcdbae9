// Ops that move elements without arithmetic: transpose, concatenation, one-hot
// rows. (Row gathering is in gather.wgsl: its second input is u32 indices.)

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

fn flat(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + li;
}

// 16 x 16 tiles through workgroup memory (one padding column avoids bank
// conflicts), so both the read of `a` and the write of `out` are coalesced.
var<workgroup> tile: array<f32, 272>;

// Params: v[0] = (rows, cols, tiles along cols, -).
@compute @workgroup_size(16, 16, 1)
fn transpose(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let rows = P.v[0].x;
    let cols = P.v[0].y;
    let tiles_c = P.v[0].z;
    let t = wid.y * nwg.x + wid.x;
    let r0 = (t / tiles_c) * 16u;
    let c0 = (t % tiles_c) * 16u;
    if r0 >= rows {
        return;
    }
    let r = r0 + lid.y;
    let c = c0 + lid.x;
    if r < rows && c < cols {
        tile[lid.y * 17u + lid.x] = a[r * cols + c];
    }
    workgroupBarrier();
    // out is [cols, rows]: thread (x, y) writes out[c0 + y, r0 + x].
    let orow = c0 + lid.y;
    let ocol = r0 + lid.x;
    if orow < cols && ocol < rows {
        out[orow * rows + ocol] = tile[lid.x * 17u + lid.y];
    }
}

// [outer, a_inner] ++ [outer, b_inner]. Params: v[0] = (a_inner, b_inner, n, -).
@compute @workgroup_size(256, 1, 1)
fn concat(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let ai = P.v[0].x;
    let bi = P.v[0].y;
    let n = P.v[0].z;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let w = ai + bi;
    let o = i / w;
    let j = i % w;
    if j < ai {
        out[i] = a[o * ai + j];
    } else {
        out[i] = b[o * bi + j - ai];
    }
}

// Params: v[0] = (classes, output elements, -, -). A label that is not an
// integer in 0..classes matches no column, so its row stays zero.
@compute @workgroup_size(256, 1, 1)
fn one_hot(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let classes = P.v[0].x;
    let n = P.v[0].y;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    out[i] = select(0.0, 1.0, a[i / classes] == f32(i % classes));
}
