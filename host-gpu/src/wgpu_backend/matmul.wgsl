// C[m, n] = A[m, k] x B[k, n], all row-major f32.
//
// `matmul`: each workgroup computes a 64 x 64 tile of C with 16 x 16 threads; each thread
// keeps a 4 x 4 block of C in registers (four vec4 accumulators). The K dimension
// is walked 16 at a time through workgroup memory: A's tile is stored transposed
// (k-major) so that a thread reads its four rows as one vec4, and B's tile
// row-major so that it reads its four columns as one vec4. Edge tiles load zeros
// outside the matrices and skip the stores, so any m, k, n works.

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

// [TK][TILE / 4]: column kk of A's tile, four rows per vec4.
var<workgroup> a_tile: array<vec4<f32>, 256>;
// [TK][TILE / 4]: row kk of B's tile, four columns per vec4.
var<workgroup> b_tile: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16, 1)
fn matmul(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let m = P.v[0].x;
    let k = P.v[0].y;
    let n = P.v[0].z;
    let tiles_n = P.v[0].w;
    let tile = wid.y * nwg.x + wid.x;
    let row0 = (tile / tiles_n) * TILE;
    let col0 = (tile % tiles_n) * TILE;
    if row0 >= m {
        return;
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < k; k0 += TK) {
        // A's tile: 64 rows x 16 columns, four elements per thread; consecutive
        // threads read consecutive k of one row.
        for (var r = 0u; r < 4u; r++) {
            let idx = li + r * 256u;
            let ar = idx / TK;
            let ac = idx % TK;
            var v = 0.0;
            if row0 + ar < m && k0 + ac < k {
                v = a[(row0 + ar) * k + k0 + ac];
            }
            a_tile[ac * 16u + ar / 4u][ar % 4u] = v;
        }
        // B's tile: 16 rows x 64 columns; consecutive threads read consecutive columns.
        for (var r = 0u; r < 4u; r++) {
            let idx = li + r * 256u;
            let br = idx / TILE;
            let bc = idx % TILE;
            var v = 0.0;
            if k0 + br < k && col0 + bc < n {
                v = b[(k0 + br) * n + col0 + bc];
            }
            b_tile[br * 16u + bc / 4u][bc % 4u] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let av = a_tile[kk * 16u + lid.y];
            let bv = b_tile[kk * 16u + lid.x];
            acc0 += av.x * bv;
            acc1 += av.y * bv;
            acc2 += av.z * bv;
            acc3 += av.w * bv;
        }
        workgroupBarrier();
    }

    let r0 = row0 + lid.y * 4u;
    let c0 = col0 + lid.x * 4u;
    store_row(r0, c0, m, n, acc0);
    store_row(r0 + 1u, c0, m, n, acc1);
    store_row(r0 + 2u, c0, m, n, acc2);
    store_row(r0 + 3u, c0, m, n, acc3);
}

fn store_row(r: u32, c0: u32, m: u32, n: u32, v: vec4<f32>) {
    if r >= m {
        return;
    }
    let base = r * n;
    for (var j = 0u; j < 4u; j++) {
        if c0 + j < n {
            c[base + c0 + j] = v[j];
        }
    }
}

// The same product with 128 x 128 tiles and an 8 x 8 block of C per thread,
// for large matrices (more arithmetic per byte of workgroup memory read). A
// thread owns rows {4ty..4ty+3, 64+4ty..64+4ty+3} and the same pattern of
// columns, so that neighbouring threads read neighbouring vec4s.

const BIG: u32 = 128u;
const BK: u32 = 8u;

// [BK][BIG / 4]
var<workgroup> a_big: array<vec4<f32>, 256>;
var<workgroup> b_big: array<vec4<f32>, 256>;

@compute @workgroup_size(16, 16, 1)
fn matmul_large(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let m = P.v[0].x;
    let k = P.v[0].y;
    let n = P.v[0].z;
    let tiles_n = P.v[0].w;
    let tile = wid.y * nwg.x + wid.x;
    let row0 = (tile / tiles_n) * BIG;
    let col0 = (tile % tiles_n) * BIG;
    if row0 >= m {
        return;
    }

    // acc[2 * i + h]: row block i (0..8), column half h.
    var acc: array<vec4<f32>, 16>;
    for (var i = 0u; i < 16u; i++) {
        acc[i] = vec4<f32>(0.0);
    }

    for (var k0 = 0u; k0 < k; k0 += BK) {
        // A: 128 rows x 8 columns; B: 8 rows x 128 columns; four each per thread.
        for (var r = 0u; r < 4u; r++) {
            let idx = li + r * 256u;
            let ar = idx / BK;
            let ac = idx % BK;
            var v = 0.0;
            if row0 + ar < m && k0 + ac < k {
                v = a[(row0 + ar) * k + k0 + ac];
            }
            a_big[ac * 32u + ar / 4u][ar % 4u] = v;
            let br = idx / BIG;
            let bc = idx % BIG;
            var w = 0.0;
            if k0 + br < k && col0 + bc < n {
                w = b[(k0 + br) * n + col0 + bc];
            }
            b_big[br * 32u + bc / 4u][bc % 4u] = w;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let a0 = a_big[kk * 32u + lid.y];
            let a1 = a_big[kk * 32u + 16u + lid.y];
            let b0 = b_big[kk * 32u + lid.x];
            let b1 = b_big[kk * 32u + 16u + lid.x];
            for (var i = 0u; i < 4u; i++) {
                acc[2u * i] += a0[i] * b0;
                acc[2u * i + 1u] += a0[i] * b1;
                acc[2u * (i + 4u)] += a1[i] * b0;
                acc[2u * (i + 4u) + 1u] += a1[i] * b1;
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < 8u; i++) {
        let r = row0 + select(4u * lid.y + i, 64u + 4u * lid.y + i - 4u, i >= 4u);
        store_row(r, col0 + 4u * lid.x, m, n, acc[2u * i]);
        store_row(r, col0 + 64u + 4u * lid.x, m, n, acc[2u * i + 1u]);
    }
}
