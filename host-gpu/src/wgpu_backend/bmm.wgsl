// Batched products C[b] = op(A[b]) x op(B[b]), op(X) = X or Xᵀ, all f32.
//
// The tiling is matmul.wgsl's 64 x 64 kernel (16 x 16 threads, a 4 x 4 block
// of C per thread, K walked 16 at a time through workgroup memory). Each
// workgroup owns one tile of one product; the product's A and B offsets come
// from its batch coordinates (strides 0 where an operand is broadcast), and
// C is written contiguously after `out offset`. A transposed operand is
// loaded so that neighbouring threads still read neighbouring addresses.
//
// Params: v[0] = (m, k, n, flags: 1 = transpose A, 2 = transpose B),
// v[1] = (tiles along n, tiles per product, batch rank, products),
// v[2] = (A offset, B offset, out offset, -), words 12.. batch dims,
// 18.. A batch strides, 24.. B batch strides (six each, innermost last).

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> c: array<f32>;
@group(0) @binding(2) var<storage, read> a: array<f32>;
@group(0) @binding(3) var<storage, read> b: array<f32>;

const TILE: u32 = 64u;
const TK: u32 = 16u;

var<workgroup> a_tile: array<vec4<f32>, 256>;
var<workgroup> b_tile: array<vec4<f32>, 256>;

fn word(i: u32) -> u32 {
    return P.v[i / 4u][i % 4u];
}

fn store_row(r: u32, c0: u32, m: u32, n: u32, base: u32, v: vec4<f32>) {
    if r >= m {
        return;
    }
    for (var j = 0u; j < 4u; j++) {
        if c0 + j < n {
            c[base + r * n + c0 + j] = v[j];
        }
    }
}

@compute @workgroup_size(16, 16, 1)
fn bmm(
    @builtin(local_invocation_id) lid: vec3<u32>,
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let m = P.v[0].x;
    let k = P.v[0].y;
    let n = P.v[0].z;
    let ta = (P.v[0].w & 1u) == 1u;
    let tb = (P.v[0].w & 2u) == 2u;
    let tiles_n = P.v[1].x;
    let per_product = P.v[1].y;
    let rank = P.v[1].z;
    let products = P.v[1].w;
    let g = wid.y * nwg.x + wid.x;
    let product = g / per_product;
    // Uniform per workgroup: the barriers below stay in uniform control flow.
    if product >= products {
        return;
    }
    let tile = g % per_product;
    let row0 = (tile / tiles_n) * TILE;
    let col0 = (tile % tiles_n) * TILE;

    var rem = product;
    var a_base = P.v[2].x;
    var b_base = P.v[2].y;
    for (var d = rank; d > 0u; d--) {
        let dim = word(11u + d);
        let coord = rem % dim;
        rem = rem / dim;
        a_base += coord * word(17u + d);
        b_base += coord * word(23u + d);
    }

    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);

    for (var k0 = 0u; k0 < k; k0 += TK) {
        // op(A)'s tile: 64 rows x 16 depth. Plain A: neighbours read along k;
        // transposed (stored [k, m]): neighbours read along m.
        for (var r = 0u; r < 4u; r++) {
            let idx = li + r * 256u;
            var ar: u32;
            var ac: u32;
            if ta {
                ar = idx % TILE;
                ac = idx / TILE;
            } else {
                ar = idx / TK;
                ac = idx % TK;
            }
            var v = 0.0;
            if row0 + ar < m && k0 + ac < k {
                if ta {
                    v = a[a_base + (k0 + ac) * m + row0 + ar];
                } else {
                    v = a[a_base + (row0 + ar) * k + k0 + ac];
                }
            }
            a_tile[ac * 16u + ar / 4u][ar % 4u] = v;
        }
        // op(B)'s tile: 16 depth x 64 columns. Plain B: neighbours read along
        // n; transposed (stored [n, k]): neighbours read along k.
        for (var r = 0u; r < 4u; r++) {
            let idx = li + r * 256u;
            var br: u32;
            var bc: u32;
            if tb {
                br = idx % TK;
                bc = idx / TK;
            } else {
                br = idx / TILE;
                bc = idx % TILE;
            }
            var v = 0.0;
            if k0 + br < k && col0 + bc < n {
                if tb {
                    v = b[b_base + (col0 + bc) * k + k0 + br];
                } else {
                    v = b[b_base + (k0 + br) * n + col0 + bc];
                }
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

    let base = P.v[2].z + product * m * n;
    let r0 = row0 + lid.y * 4u;
    let c0 = col0 + lid.x * 4u;
    store_row(r0, c0, m, n, base, acc0);
    store_row(r0 + 1u, c0, m, n, base, acc1);
    store_row(r0 + 2u, c0, m, n, base, acc2);
    store_row(r0 + 3u, c0, m, n, base, acc3);
}
