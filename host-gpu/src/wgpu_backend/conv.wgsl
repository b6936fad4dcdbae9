// Convolution's unfold and fold (im2col, col2im) and 2-D pooling, over NCHW
// f32 tensors bound as array<u32> (read through bitcast).
//
// Convolution params: v[0] = (threads, channels, height, width),
// v[1] = (kh, kw, stride h, stride w), v[2] = (pad h, pad w, dilation h,
// dilation w), v[3] = (ho, wo, groups, element offset into x or dx).
// Pooling params: v[0] = (threads, mode or -, height, width),
// v[1] = (kh, kw, stride h, stride w), v[2] = (pad h, pad w, ho, wo).

struct Params {
    v: array<vec4<u32>, 16>,
}

@group(0) @binding(0) var<uniform> P: Params;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<storage, read> a: array<u32>;
@group(0) @binding(3) var<storage, read> b: array<u32>;

fn flat(li: u32, wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return (wid.y * nwg.x + wid.x) * 256u + li;
}

fn f(x: u32) -> f32 {
    return bitcast<f32>(x);
}

// Unfolds images into cols [images, groups, taps, positions]: row
// (ci, ki, kj) of a group, column (ho, wo) holds the input tap that kernel
// element (ki, kj) of channel ci meets there (zero in padding).
@compute @workgroup_size(256, 1, 1)
fn im2col(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = P.v[0].x;
    let ch = P.v[0].y;
    let h = P.v[0].z;
    let w = P.v[0].w;
    let kh = P.v[1].x;
    let kw = P.v[1].y;
    let ho_n = P.v[3].x;
    let wo_n = P.v[3].y;
    let groups = P.v[3].z;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let cg = ch / groups;
    let taps = cg * kh * kw;
    let positions = ho_n * wo_n;
    let p = i % positions;
    let t = i / positions;
    let r = t % taps;
    let t2 = t / taps;
    let g = t2 % groups;
    let img = t2 / groups;
    let kj = r % kw;
    let ki = (r / kw) % kh;
    let ci = r / (kw * kh);
    let hh = i32((p / wo_n) * P.v[1].z + ki * P.v[2].z) - i32(P.v[2].x);
    let ww = i32((p % wo_n) * P.v[1].w + kj * P.v[2].w) - i32(P.v[2].y);
    var v = 0u;
    if hh >= 0 && u32(hh) < h && ww >= 0 && u32(ww) < w {
        v = a[P.v[3].w + ((img * ch + g * cg + ci) * h + u32(hh)) * w + u32(ww)];
    }
    out[i] = v;
}

// Folds cols back: each input element sums the taps that read it, kernel
// element (ki, kj) in increasing order.
@compute @workgroup_size(256, 1, 1)
fn col2im(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = P.v[0].x;
    let ch = P.v[0].y;
    let h = P.v[0].z;
    let w = P.v[0].w;
    let kh = P.v[1].x;
    let kw = P.v[1].y;
    let sh = P.v[1].z;
    let sw = P.v[1].w;
    let ph = P.v[2].x;
    let pw = P.v[2].y;
    let dh = P.v[2].z;
    let dw = P.v[2].w;
    let ho_n = P.v[3].x;
    let wo_n = P.v[3].y;
    let groups = P.v[3].z;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let x = i % w;
    let y = (i / w) % h;
    let c = (i / (w * h)) % ch;
    let img = i / (w * h * ch);
    let cg = ch / groups;
    let g = c / cg;
    let ci = c % cg;
    let taps = cg * kh * kw;
    let positions = ho_n * wo_n;
    var acc = 0.0;
    for (var ki = 0u; ki < kh; ki++) {
        let hp = i32(y + ph) - i32(ki * dh);
        if hp < 0 || u32(hp) % sh != 0u || u32(hp) / sh >= ho_n {
            continue;
        }
        let ho = u32(hp) / sh;
        for (var kj = 0u; kj < kw; kj++) {
            let wp = i32(x + pw) - i32(kj * dw);
            if wp < 0 || u32(wp) % sw != 0u || u32(wp) / sw >= wo_n {
                continue;
            }
            let wo = u32(wp) / sw;
            let r = (ci * kh + ki) * kw + kj;
            acc += f(a[((img * groups + g) * taps + r) * positions + ho * wo_n + wo]);
        }
    }
    out[P.v[3].w + i] = bitcast<u32>(acc);
}

// Max pooling. Mode 0 writes the maxima (one word each); mode 1 the position
// of each (row · width + column in its plane) as i64 words. The first
// element of a window in row-major order wins ties.
@compute @workgroup_size(256, 1, 1)
fn max_pool(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = P.v[0].x;
    let mode = P.v[0].y;
    let h = P.v[0].z;
    let w = P.v[0].w;
    let ho_n = P.v[2].z;
    let wo_n = P.v[2].w;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let e = select(i, i / 2u, mode == 1u);
    let plane = e / (ho_n * wo_n);
    let q = e % (ho_n * wo_n);
    let oh = q / wo_n;
    let ow = q % wo_n;
    var found = false;
    var best = 0.0;
    var at = 0u;
    for (var ki = 0u; ki < P.v[1].x; ki++) {
        let hh = i32(oh * P.v[1].z + ki) - i32(P.v[2].x);
        if hh < 0 || u32(hh) >= h {
            continue;
        }
        for (var kj = 0u; kj < P.v[1].y; kj++) {
            let ww = i32(ow * P.v[1].w + kj) - i32(P.v[2].y);
            if ww < 0 || u32(ww) >= w {
                continue;
            }
            let pos = u32(hh) * w + u32(ww);
            let v = f(a[plane * h * w + pos]);
            if !found || v > best {
                found = true;
                best = v;
                at = pos;
            }
        }
    }
    if mode == 0u {
        out[i] = bitcast<u32>(best);
    } else {
        out[i] = select(at, 0u, i % 2u == 1u);
    }
}

// Output positions lo..hi along one axis whose window contains `at`.
fn windows(at: u32, kernel: u32, stride: u32, pad: u32, outputs: u32) -> vec2<u32> {
    let top = at + pad;
    var lo = 0u;
    if top + 1u > kernel {
        lo = (top + 1u - kernel + stride - 1u) / stride;
    }
    let hi = min(top / stride + 1u, outputs);
    return vec2<u32>(lo, max(hi, lo));
}

// The gradient of max pooling: each input element sums the output gradients
// (a) of the windows whose maximum it is (positions in b), in output order.
@compute @workgroup_size(256, 1, 1)
fn max_pool_grad(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = P.v[0].x;
    let h = P.v[0].z;
    let w = P.v[0].w;
    let ho_n = P.v[2].z;
    let wo_n = P.v[2].w;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let plane = i / (h * w);
    let pos = i % (h * w);
    let rows = windows(pos / w, P.v[1].x, P.v[1].z, P.v[2].x, ho_n);
    let cols = windows(pos % w, P.v[1].y, P.v[1].w, P.v[2].y, wo_n);
    var acc = 0.0;
    for (var oh = rows.x; oh < rows.y; oh++) {
        for (var ow = cols.x; ow < cols.y; ow++) {
            let k = (plane * ho_n + oh) * wo_n + ow;
            if b[2u * k] == pos {
                acc += f(a[k]);
            }
        }
    }
    out[i] = bitcast<u32>(acc);
}

// Average pooling; padding counts as zeros (divide by kh · kw).
@compute @workgroup_size(256, 1, 1)
fn avg_pool(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = P.v[0].x;
    let h = P.v[0].z;
    let w = P.v[0].w;
    let ho_n = P.v[2].z;
    let wo_n = P.v[2].w;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let plane = i / (ho_n * wo_n);
    let oh = (i / wo_n) % ho_n;
    let ow = i % wo_n;
    var acc = 0.0;
    for (var ki = 0u; ki < P.v[1].x; ki++) {
        let hh = i32(oh * P.v[1].z + ki) - i32(P.v[2].x);
        if hh < 0 || u32(hh) >= h {
            continue;
        }
        for (var kj = 0u; kj < P.v[1].y; kj++) {
            let ww = i32(ow * P.v[1].w + kj) - i32(P.v[2].y);
            if ww >= 0 && u32(ww) < w {
                acc += f(a[(plane * h + u32(hh)) * w + u32(ww)]);
            }
        }
    }
    out[i] = bitcast<u32>(acc / f32(P.v[1].x * P.v[1].y));
}

// The gradient of average pooling: each input element sums the output
// gradients of the windows that contain it, over kh · kw.
@compute @workgroup_size(256, 1, 1)
fn avg_pool_grad(
    @builtin(local_invocation_index) li: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) nwg: vec3<u32>,
) {
    let n = P.v[0].x;
    let h = P.v[0].z;
    let w = P.v[0].w;
    let ho_n = P.v[2].z;
    let wo_n = P.v[2].w;
    let i = flat(li, wid, nwg);
    if i >= n {
        return;
    }
    let plane = i / (h * w);
    let pos = i % (h * w);
    let rows = windows(pos / w, P.v[1].x, P.v[1].z, P.v[2].x, ho_n);
    let cols = windows(pos % w, P.v[1].y, P.v[1].w, P.v[2].y, wo_n);
    var acc = 0.0;
    for (var oh = rows.x; oh < rows.y; oh++) {
        for (var ow = cols.x; ow < cols.y; ow++) {
            acc += f(a[(plane * ho_n + oh) * wo_n + ow]);
        }
    }
    out[i] = bitcast<u32>(acc / f32(P.v[1].x * P.v[1].y));
}
