//! The wgpu backend's N-D ops: i64 storage and conversions, strided copies,
//! the index-driven gathers and their reverses, select, running sums,
//! dropout masks, batched products, convolution (im2col, batched matmul,
//! col2im) and pooling. Kernels are in `nd.wgsl`, `convert.wgsl`, `bmm.wgsl`
//! and `conv.wgsl`; they bind like the others (binding 0 a 256-byte
//! parameter block, then the read-write buffers, then the read-only ones),
//! compiled once per process on first use and kept in [`NdKernels`].
//!
//! ## i64 on the GPU
//!
//! WGSL has no portable 64-bit integer, so an i64 element is two 32-bit words
//! in the buffer, low word first: every value round-trips bit for bit. Data
//! movement moves words (an i64 tensor is an f32-sized tensor with a trailing
//! dimension of two words), conversions to and from f32 are kernels, and
//! kernels that read indices read the low word only: `Device` has checked
//! every index against its bound first. That check needs the values on the
//! host, so an i64 tensor keeps a host copy when it is made from host data
//! (and, up to [`MIRROR_MAX`] elements, when it is moved from such a tensor);
//! one made on the GPU (by `to-i64`, say) is read back once, when first
//! checked.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use super::pool::{Kind, PooledBuffer};
use super::{Context, GpuStorage, WgpuBackend};
use crate::cpu::CpuBackend;
use crate::nd::strides;
use crate::{Backend, ConvGeometry, CopyPart, DType, MatmulGeometry, PoolGeometry, Storage};

/// Threads per workgroup of the one-dimensional kernels.
const GROUP: usize = 256;
/// Bytes of the parameter block.
const PARAMS_BYTES: u64 = 256;
/// Output tile edge of the batched matmul kernel.
const BMM_TILE: usize = 64;
/// i64 tensors up to this many elements that are moved (sliced, permuted,
/// gathered, …) from tensors with a host copy get one too, computed on the
/// CPU beside the GPU copy, so that using them as indices never waits for
/// the GPU.
pub const MIRROR_MAX: usize = 1 << 20;
/// Most bytes of unfolded input (im2col) a convolution holds at once; larger
/// batches are convolved a few images at a time.
const COLS_BUDGET: u64 = 256 << 20;

/// i64 elements on the GPU: two 32-bit words each, low word first, and
/// (when known) a host copy of the values (see the module documentation).
#[derive(Clone)]
pub struct GpuI64Storage {
    words: GpuStorage,
    host: Arc<OnceLock<Arc<[i64]>>>,
}

impl std::fmt::Debug for GpuI64Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuI64Storage({} elements on {}{})",
            self.len(),
            self.words.ctx.info.name,
            if self.host.get().is_some() {
                ", with a host copy"
            } else {
                ""
            }
        )
    }
}

impl GpuI64Storage {
    /// Number of i64 elements.
    pub fn len(&self) -> usize {
        self.words.len / 2
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements: the host copy, read back from the GPU (waiting for it)
    /// the first time when there is none.
    pub fn to_i64(&self) -> Arc<[i64]> {
        self.host
            .get_or_init(|| {
                let words: Vec<u32> = self.words.to_vec().iter().map(|x| x.to_bits()).collect();
                words
                    .chunks_exact(2)
                    .map(|w| (u64::from(w[0]) | (u64::from(w[1]) << 32)) as i64)
                    .collect()
            })
            .clone()
    }

    fn mirror(&self) -> Option<Arc<[i64]>> {
        self.host.get().cloned()
    }
}

/// The host copy of an i64 storage, when there is one without waiting.
fn mirror_of(s: &Storage) -> Option<Arc<[i64]>> {
    match s {
        Storage::HostI64(v) => Some(v.clone()),
        Storage::GpuI64(g) => g.mirror(),
        _ => None,
    }
}

fn to_words(v: &[i64]) -> Vec<u32> {
    v.iter()
        .flat_map(|&x| [x as u64 as u32, ((x as u64) >> 32) as u32])
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum NdModule {
    Nd,
    Convert,
    Bmm,
    Conv,
}

const ND_MODULES: usize = 4;

impl NdModule {
    fn source(self) -> Cow<'static, str> {
        match self {
            NdModule::Nd => Cow::Owned(format!(
                "{}{}",
                include_str!("rng.wgsl"),
                include_str!("nd.wgsl")
            )),
            NdModule::Convert => Cow::Borrowed(include_str!("convert.wgsl")),
            NdModule::Bmm => Cow::Borrowed(include_str!("bmm.wgsl")),
            NdModule::Conv => Cow::Borrowed(include_str!("conv.wgsl")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NdKernel {
    Copy,
    Fill,
    IndexSelect,
    Gather,
    ToF32,
    IndexAdd,
    ScatterAdd,
    Where,
    Cumsum,
    Clamp,
    Dropout,
    SumBatches,
    ToI64,
    Bmm,
    Im2col,
    Col2im,
    MaxPool,
    MaxPoolGrad,
    AvgPool,
    AvgPoolGrad,
}

const ND_KERNELS: usize = 20;

impl NdKernel {
    /// Module, entry point, read-write buffers, read-only buffers.
    fn spec(self) -> (NdModule, &'static str, usize, usize) {
        use NdModule as M;
        match self {
            NdKernel::Copy => (M::Nd, "copy", 1, 1),
            NdKernel::Fill => (M::Nd, "fill", 1, 0),
            NdKernel::IndexSelect => (M::Nd, "index_select", 1, 2),
            NdKernel::Gather => (M::Nd, "gather", 1, 2),
            NdKernel::ToF32 => (M::Nd, "to_f32", 1, 1),
            NdKernel::IndexAdd => (M::Nd, "index_add", 1, 2),
            NdKernel::ScatterAdd => (M::Nd, "scatter_add", 1, 2),
            NdKernel::Where => (M::Nd, "select_where", 1, 3),
            NdKernel::Cumsum => (M::Nd, "cumsum", 1, 1),
            NdKernel::Clamp => (M::Nd, "clamp_map", 1, 1),
            NdKernel::Dropout => (M::Nd, "dropout", 1, 0),
            NdKernel::SumBatches => (M::Nd, "sum_batches", 1, 1),
            NdKernel::ToI64 => (M::Convert, "to_i64", 2, 1),
            NdKernel::Bmm => (M::Bmm, "bmm", 1, 2),
            NdKernel::Im2col => (M::Conv, "im2col", 1, 1),
            NdKernel::Col2im => (M::Conv, "col2im", 1, 1),
            NdKernel::MaxPool => (M::Conv, "max_pool", 1, 1),
            NdKernel::MaxPoolGrad => (M::Conv, "max_pool_grad", 1, 2),
            NdKernel::AvgPool => (M::Conv, "avg_pool", 1, 1),
            NdKernel::AvgPoolGrad => (M::Conv, "avg_pool_grad", 1, 1),
        }
    }
}

type Layout = (wgpu::BindGroupLayout, wgpu::PipelineLayout);

/// Bind group layouts (by read-write and read-only buffer counts) and the
/// lazily compiled modules and pipelines of the N-D kernels.
#[derive(Default)]
pub(crate) struct NdKernels {
    layouts: [[OnceLock<Layout>; 4]; 3],
    modules: [OnceLock<wgpu::ShaderModule>; ND_MODULES],
    pipelines: [OnceLock<wgpu::ComputePipeline>; ND_KERNELS],
}

fn entry(binding: u32, ty: wgpu::BufferBindingType) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty,
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

impl NdKernels {
    fn layout(&self, device: &wgpu::Device, rw: usize, ro: usize) -> &Layout {
        self.layouts[rw][ro].get_or_init(|| {
            let mut entries = vec![entry(0, wgpu::BufferBindingType::Uniform)];
            for i in 0..rw + ro {
                entries.push(entry(
                    1 + i as u32,
                    wgpu::BufferBindingType::Storage { read_only: i >= rw },
                ));
            }
            let group = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("tensorlet nd kernel bindings"),
                entries: &entries,
            });
            let pipeline = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("tensorlet nd kernel layout"),
                bind_group_layouts: &[Some(&group)],
                immediate_size: 0,
            });
            (group, pipeline)
        })
    }

    fn pipeline(&self, device: &wgpu::Device, k: NdKernel) -> &wgpu::ComputePipeline {
        let (module, entry_point, rw, ro) = k.spec();
        self.pipelines[k as usize].get_or_init(|| {
            let shader = self.modules[module as usize].get_or_init(|| {
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(entry_point),
                    source: wgpu::ShaderSource::Wgsl(module.source()),
                })
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry_point),
                layout: Some(&self.layout(device, rw, ro).1),
                module: shader,
                entry_point: Some(entry_point),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &[],
                    // Every kernel writes its workgroup memory before reading it.
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            })
        })
    }
}

impl Context {
    /// Records `kernel` over `groups` workgroups (spread over x and y) into
    /// the open batch.
    fn nd_dispatch(
        &self,
        kernel: NdKernel,
        params: &[u32],
        rw: &[&wgpu::Buffer],
        ro: &[&wgpu::Buffer],
        groups: usize,
    ) {
        if groups == 0 {
            return;
        }
        let (_, _, n_rw, n_ro) = kernel.spec();
        debug_assert_eq!((n_rw, n_ro), (rw.len(), ro.len()), "{kernel:?} bindings");
        debug_assert!(params.len() * 4 <= PARAMS_BYTES as usize);
        let device = self.device();
        let pipeline = self.nd.pipeline(device, kernel);
        let (layout, _) = self.nd.layout(device, n_rw, n_ro);
        let p = self.buffer(Kind::Uniform, PARAMS_BYTES);
        self.queue
            .write_buffer(p.buffer(), 0, bytemuck::cast_slice(params));
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: p.buffer().as_entire_binding(),
        }];
        for (i, b) in rw.iter().chain(ro).enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 1 + i as u32,
                resource: b.as_entire_binding(),
            });
        }
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout,
            entries: &entries,
        });
        let max = self.max_groups as usize;
        let x = groups.min(max);
        let y = groups.div_ceil(x);
        assert!(
            y <= max,
            "{groups} workgroups exceed the device's dispatch limit"
        );
        self.record(|enc| {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: None,
            });
            pass.set_pipeline(pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(x as u32, y as u32, 1);
        });
    }
}

fn groups(threads: usize) -> usize {
    threads.div_ceil(GROUP)
}

/// Words per element.
fn per(dtype: DType) -> usize {
    match dtype {
        DType::F32 => 1,
        DType::I64 => 2,
    }
}

/// Batch dimensions with size-1 ones dropped and neighbours merged where both
/// operands step across them as one.
fn collapse_batch(g: &MatmulGeometry) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let (mut dims, mut sa, mut sb): (Vec<usize>, Vec<usize>, Vec<usize>) = (vec![], vec![], vec![]);
    for i in 0..g.batch.len() {
        let d = g.batch[i];
        if d == 1 {
            continue;
        }
        let (x, y) = (g.a_strides[i], g.b_strides[i]);
        if let (Some(last), Some(&px), Some(&py)) = (dims.last_mut(), sa.last(), sb.last())
            && px == x * d
            && py == y * d
        {
            *last *= d;
            *sa.last_mut().expect("same length") = x;
            *sb.last_mut().expect("same length") = y;
            continue;
        }
        dims.push(d);
        sa.push(x);
        sb.push(y);
    }
    (dims, sa, sb)
}

/// Where a batched product reads and writes, in elements.
struct Operands<'a> {
    a: &'a wgpu::Buffer,
    a_offset: usize,
    b: &'a wgpu::Buffer,
    b_offset: usize,
    out: &'a wgpu::Buffer,
    out_offset: usize,
}

impl WgpuBackend {
    fn nd_too_big(&self, words: &[usize]) -> bool {
        words
            .iter()
            .any(|&w| (w as u64).saturating_mul(4) > self.max_tensor_bytes)
    }

    fn upload_u32(&self, words: &[u32]) -> PooledBuffer {
        let buf = self.ctx.buffer(Kind::Storage, (words.len() * 4) as u64);
        if !words.is_empty() {
            self.ctx
                .queue
                .write_buffer(buf.buffer(), 0, bytemuck::cast_slice(words));
        }
        buf
    }

    /// The GPU buffer holding `s` as words (one per f32, two per i64),
    /// uploading host (or another context's) storage first.
    fn words_of(&self, s: &Storage) -> Arc<PooledBuffer> {
        match s {
            Storage::Gpu(g) if Arc::ptr_eq(&g.ctx, &self.ctx) => g.buf.clone(),
            Storage::GpuI64(g) if Arc::ptr_eq(&g.words.ctx, &self.ctx) => g.words.buf.clone(),
            Storage::Gpu(g) => Arc::new(
                self.upload_u32(&g.to_vec().iter().map(|x| x.to_bits()).collect::<Vec<_>>()),
            ),
            Storage::GpuI64(g) => Arc::new(self.upload_u32(&to_words(&g.to_i64()))),
            Storage::Host(v) => Arc::new(self.upload_u32(bytemuck::cast_slice(v))),
            Storage::HostI64(v) => Arc::new(self.upload_u32(&to_words(v))),
        }
    }

    fn out_words(&self, words: usize) -> PooledBuffer {
        self.ctx.buffer(Kind::Storage, (words * 4) as u64)
    }

    fn wrap_f32(&self, buf: PooledBuffer, len: usize) -> Storage {
        Storage::Gpu(GpuStorage {
            buf: Arc::new(buf),
            len,
            ctx: self.ctx.clone(),
        })
    }

    fn wrap_i64(&self, buf: PooledBuffer, len: usize, host: Option<Arc<[i64]>>) -> Storage {
        let cell = OnceLock::new();
        if let Some(h) = host {
            debug_assert_eq!(h.len(), len);
            let _ = cell.set(h);
        }
        Storage::GpuI64(GpuI64Storage {
            words: GpuStorage {
                buf: Arc::new(buf),
                len: 2 * len,
                ctx: self.ctx.clone(),
            },
            host: Arc::new(cell),
        })
    }

    fn wrap_typed(
        &self,
        dtype: DType,
        buf: PooledBuffer,
        len: usize,
        host: Option<Arc<[i64]>>,
    ) -> Storage {
        match dtype {
            DType::F32 => self.wrap_f32(buf, len),
            DType::I64 => self.wrap_i64(buf, len, host),
        }
    }

    /// `len` elements of `dtype`, all `value`.
    fn nd_fill(&self, dtype: DType, len: usize, value: f64) -> PooledBuffer {
        let (period, w0, w1) = match dtype {
            DType::F32 => (1, (value as f32).to_bits(), 0),
            DType::I64 => {
                let v = value as i64 as u64;
                (2, v as u32, (v >> 32) as u32)
            }
        };
        let words = len * per(dtype);
        let out = self.out_words(words);
        self.ctx.nd_dispatch(
            NdKernel::Fill,
            &[words as u32, period, w0, w1],
            &[out.buffer()],
            &[],
            groups(words),
        );
        out
    }

    /// The result of `f` on the host copies of `sources`, when they all have
    /// one and the result is small enough to keep one.
    fn mirrored(
        &self,
        len: usize,
        sources: &[&Storage],
        f: impl FnOnce(&[Storage]) -> Storage,
    ) -> Option<Arc<[i64]>> {
        if len > MIRROR_MAX {
            return None;
        }
        let hosts: Option<Vec<Storage>> = sources
            .iter()
            .map(|s| mirror_of(s).map(Storage::HostI64))
            .collect();
        match f(&hosts?) {
            Storage::HostI64(v) => Some(v),
            _ => None,
        }
    }

    pub(super) fn nd_upload_i64(&self, data: &[i64]) -> Storage {
        if self.nd_too_big(&[2 * data.len()]) {
            return CpuBackend.upload_i64(data);
        }
        let buf = self.upload_u32(&to_words(data));
        let host = (data.len() <= MIRROR_MAX).then(|| Arc::from(data));
        self.wrap_i64(buf, data.len(), host)
    }

    pub(super) fn nd_download_i64(&self, s: &Storage, len: usize) -> Arc<[i64]> {
        match s {
            Storage::GpuI64(g) => {
                debug_assert_eq!(g.len(), len);
                g.to_i64()
            }
            other => CpuBackend.download_i64(other, len),
        }
    }

    pub(super) fn nd_i64_to_f32(&self, a: &Storage, len: usize) -> Storage {
        if self.nd_too_big(&[2 * len]) {
            return CpuBackend.i64_to_f32(a, len);
        }
        let ab = self.words_of(a);
        let out = self.out_words(len);
        self.ctx.nd_dispatch(
            NdKernel::ToF32,
            &[len as u32],
            &[out.buffer()],
            &[ab.buffer()],
            groups(len),
        );
        self.wrap_f32(out, len)
    }

    pub(super) fn nd_f32_to_i64(&self, a: &Storage, len: usize) -> Result<Storage, usize> {
        if self.nd_too_big(&[2 * len]) {
            return CpuBackend.f32_to_i64(a, len);
        }
        if len == 0 {
            return Ok(self.wrap_i64(self.out_words(0), 0, Some(Arc::from(Vec::new()))));
        }
        let ab = self.words_of(a);
        let out = self.out_words(2 * len);
        let bad = self.upload_u32(&[u32::MAX]);
        self.ctx.nd_dispatch(
            NdKernel::ToI64,
            &[len as u32],
            &[out.buffer(), bad.buffer()],
            &[ab.buffer()],
            groups(len),
        );
        let first_bad = self.ctx.read(bad.buffer(), 1)[0].to_bits();
        if first_bad != u32::MAX {
            return Err(first_bad as usize);
        }
        Ok(self.wrap_i64(out, len, None))
    }

    pub(super) fn nd_copy(
        &self,
        dtype: DType,
        out_len: usize,
        fill: Option<f64>,
        parts: &[CopyPart<'_>],
    ) -> Storage {
        let w = per(dtype);
        let mut words = vec![out_len * w];
        words.extend(parts.iter().map(|p| p.src_len * w));
        if self.nd_too_big(&words) {
            return CpuBackend.copy_nd(dtype, out_len, fill, parts);
        }
        let out = match fill {
            Some(v) => self.nd_fill(dtype, out_len, v),
            None => self.out_words(out_len * w),
        };
        for p in parts.iter().filter(|p| p.numel() > 0) {
            let src = self.words_of(p.src);
            // The copy in words: strides and offsets scaled, and (for i64)
            // a trailing dimension of two words.
            let mut part = CopyPart {
                src: p.src,
                src_len: p.src_len * w,
                dims: p.dims.clone(),
                src_strides: p.src_strides.iter().map(|s| s * w).collect(),
                src_offset: p.src_offset * w,
                dst_strides: p.dst_strides.iter().map(|s| s * w).collect(),
                dst_offset: p.dst_offset * w,
            };
            if w == 2 {
                part.dims.push(2);
                part.src_strides.push(1);
                part.dst_strides.push(1);
            }
            let (dims, ss, ds) = part.collapsed();
            let n: usize = dims.iter().product();
            let contiguous = dims.len() <= 1 && ss.iter().chain(&ds).all(|&s| s == 1);
            if contiguous {
                self.ctx.record(|enc| {
                    enc.copy_buffer_to_buffer(
                        src.buffer(),
                        (part.src_offset * 4) as u64,
                        out.buffer(),
                        (part.dst_offset * 4) as u64,
                        (n * 4) as u64,
                    );
                });
                continue;
            }
            let mut params = vec![0u32; 31];
            params[0] = dims.len() as u32;
            params[1] = n as u32;
            params[2] = part.src_offset as u32;
            params[3] = part.dst_offset as u32;
            for (d, ((&dim, &s), &t)) in dims.iter().zip(&ss).zip(&ds).enumerate() {
                params[4 + d] = dim as u32;
                params[13 + d] = s as u32;
                params[22 + d] = t as u32;
            }
            self.ctx.nd_dispatch(
                NdKernel::Copy,
                &params,
                &[out.buffer()],
                &[src.buffer()],
                groups(n),
            );
        }
        let host = match dtype {
            DType::I64 => {
                let sources: Vec<&Storage> = parts.iter().map(|p| p.src).collect();
                self.mirrored(out_len, &sources, |hosts| {
                    let local: Vec<CopyPart<'_>> = parts
                        .iter()
                        .zip(hosts)
                        .map(|(p, h)| CopyPart {
                            src: h,
                            ..p.clone()
                        })
                        .collect();
                    CpuBackend.copy_nd(dtype, out_len, fill, &local)
                })
            }
            DType::F32 => None,
        };
        self.wrap_typed(dtype, out, out_len, host)
    }

    #[allow(clippy::too_many_arguments, reason = "the backend method's arguments")]
    pub(super) fn nd_index_select(
        &self,
        dtype: DType,
        a: &Storage,
        outer: usize,
        n: usize,
        inner: usize,
        idx: &Storage,
        m: usize,
    ) -> Storage {
        let w = per(dtype);
        let len = outer * m * inner;
        if self.nd_too_big(&[outer * n * inner * w, len * w, 2 * m]) {
            return CpuBackend.index_select(dtype, a, outer, n, inner, idx, m);
        }
        if len == 0 {
            return self.wrap_typed(dtype, self.out_words(0), 0, Some(Arc::from(Vec::new())));
        }
        let (ab, ib) = (self.words_of(a), self.words_of(idx));
        let out = self.out_words(len * w);
        self.ctx.nd_dispatch(
            NdKernel::IndexSelect,
            &[(len * w) as u32, m as u32, (inner * w) as u32, n as u32],
            &[out.buffer()],
            &[ab.buffer(), ib.buffer()],
            groups(len * w),
        );
        let host = (dtype == DType::I64)
            .then(|| {
                self.mirrored(len, &[a, idx], |h| {
                    CpuBackend.index_select(dtype, &h[0], outer, n, inner, &h[1], m)
                })
            })
            .flatten();
        self.wrap_typed(dtype, out, len, host)
    }

    pub(super) fn nd_gather(
        &self,
        dtype: DType,
        a: &Storage,
        a_dims: &[usize],
        axis: usize,
        idx: &Storage,
        idx_dims: &[usize],
    ) -> Storage {
        let w = per(dtype);
        let (a_len, len): (usize, usize) = (a_dims.iter().product(), idx_dims.iter().product());
        if self.nd_too_big(&[a_len * w, len * w, 2 * len]) {
            return CpuBackend.gather(dtype, a, a_dims, axis, idx, idx_dims);
        }
        if len == 0 {
            return self.wrap_typed(dtype, self.out_words(0), 0, Some(Arc::from(Vec::new())));
        }
        let (ab, ib) = (self.words_of(a), self.words_of(idx));
        let out = self.out_words(len * w);
        let mut params = vec![0u32; 20];
        params[0] = a_dims.len() as u32;
        params[1] = (len * w) as u32;
        params[2] = axis as u32;
        params[3] = w as u32;
        for (d, (&dim, &st)) in idx_dims.iter().zip(&strides(a_dims)).enumerate() {
            params[4 + d] = dim as u32;
            params[12 + d] = st as u32;
        }
        self.ctx.nd_dispatch(
            NdKernel::Gather,
            &params,
            &[out.buffer()],
            &[ab.buffer(), ib.buffer()],
            groups(len * w),
        );
        let host = (dtype == DType::I64)
            .then(|| {
                self.mirrored(len, &[a, idx], |h| {
                    CpuBackend.gather(dtype, &h[0], a_dims, axis, &h[1], idx_dims)
                })
            })
            .flatten();
        self.wrap_typed(dtype, out, len, host)
    }

    pub(super) fn nd_index_add(
        &self,
        g: &Storage,
        outer: usize,
        m: usize,
        inner: usize,
        idx: &[i64],
        n: usize,
    ) -> Storage {
        let len = outer * n * inner;
        // Per output row, the positions of the indices that name it, in
        // order (CSR): row offsets into `csr` itself, then the positions.
        // Each thread sums its element over its row's list, so the order of
        // the additions is fixed and matches the CPU backend's.
        let csr_len = n + 1 + m;
        if self.nd_too_big(&[outer * m * inner, len, csr_len]) {
            return CpuBackend.index_add(g, outer, m, inner, idx, n);
        }
        if len == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        if m == 0 {
            return self.wrap_f32(self.nd_fill(DType::F32, len, 0.0), len);
        }
        let mut csr = vec![0u32; csr_len];
        for &i in idx {
            csr[i as usize + 1] += 1;
        }
        let mut at = (n + 1) as u32;
        for c in &mut csr[..=n] {
            at += *c;
            *c = at;
        }
        let mut next = csr[..n].to_vec();
        for (k, &i) in idx.iter().enumerate() {
            let slot = &mut next[i as usize];
            csr[*slot as usize] = k as u32;
            *slot += 1;
        }
        let gb = self.words_of(g);
        let cb = self.upload_u32(&csr);
        let out = self.out_words(len);
        self.ctx.nd_dispatch(
            NdKernel::IndexAdd,
            &[len as u32, n as u32, inner as u32, m as u32],
            &[out.buffer()],
            &[gb.buffer(), cb.buffer()],
            groups(len),
        );
        self.wrap_f32(out, len)
    }

    pub(super) fn nd_scatter_add(
        &self,
        src: &Storage,
        idx: &Storage,
        idx_dims: &[usize],
        axis: usize,
        out_dims: &[usize],
    ) -> Storage {
        let (n_src, len): (usize, usize) = (idx_dims.iter().product(), out_dims.iter().product());
        if self.nd_too_big(&[n_src * 2, len]) {
            return CpuBackend.scatter_add(src, idx, idx_dims, axis, out_dims);
        }
        if len == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        if n_src == 0 {
            return self.wrap_f32(self.nd_fill(DType::F32, len, 0.0), len);
        }
        let (sb, ib) = (self.words_of(src), self.words_of(idx));
        let out = self.out_words(len);
        let mut params = vec![0u32; 20];
        params[0] = out_dims.len() as u32;
        params[1] = len as u32;
        params[2] = axis as u32;
        for (d, (&o, &i)) in out_dims.iter().zip(idx_dims).enumerate() {
            params[4 + d] = o as u32;
            params[12 + d] = i as u32;
        }
        self.ctx.nd_dispatch(
            NdKernel::ScatterAdd,
            &params,
            &[out.buffer()],
            &[sb.buffer(), ib.buffer()],
            groups(len),
        );
        self.wrap_f32(out, len)
    }

    pub(super) fn nd_clamp(&self, a: &Storage, len: usize, lo: f32, hi: f32) -> Storage {
        if self.nd_too_big(&[len]) {
            return CpuBackend.clamp(a, len, lo, hi);
        }
        let ab = self.words_of(a);
        let out = self.out_words(len);
        self.ctx.nd_dispatch(
            NdKernel::Clamp,
            &[len as u32, lo.to_bits(), hi.to_bits()],
            &[out.buffer()],
            &[ab.buffer()],
            groups(len),
        );
        self.wrap_f32(out, len)
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "three operands with their shapes"
    )]
    pub(super) fn nd_where(
        &self,
        cond: &Storage,
        cs: &[usize],
        a: &Storage,
        as_: &[usize],
        b: &Storage,
        bs: &[usize],
        out_dims: &[usize],
    ) -> Storage {
        let len: usize = out_dims.iter().product();
        let lens = [cs, as_, bs].map(|s| s.iter().product::<usize>());
        if self.nd_too_big(&[len, lens[0], lens[1], lens[2]]) {
            return CpuBackend.where_select(cond, cs, a, as_, b, bs, out_dims);
        }
        if len == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        let bufs = [cond, a, b].map(|s| self.words_of(s));
        let out = self.out_words(len);
        let broadcast = |s: &[usize]| {
            let st = strides(s);
            s.iter()
                .zip(st)
                .map(|(&d, st)| if d == 1 { 0 } else { st })
                .collect::<Vec<_>>()
        };
        let mut params = vec![0u32; 36];
        params[0] = out_dims.len() as u32;
        params[1] = len as u32;
        for (k, s) in [cs, as_, bs].iter().enumerate() {
            for (d, st) in broadcast(s).into_iter().enumerate() {
                params[12 + 8 * k + d] = st as u32;
            }
        }
        for (d, &dim) in out_dims.iter().enumerate() {
            params[4 + d] = dim as u32;
        }
        self.ctx.nd_dispatch(
            NdKernel::Where,
            &params,
            &[out.buffer()],
            &[bufs[0].buffer(), bufs[1].buffer(), bufs[2].buffer()],
            groups(len),
        );
        self.wrap_f32(out, len)
    }

    pub(super) fn nd_cumsum(
        &self,
        a: &Storage,
        outer: usize,
        len: usize,
        inner: usize,
        reverse: bool,
    ) -> Storage {
        let n = outer * len * inner;
        if self.nd_too_big(&[n]) {
            return CpuBackend.cumsum(a, outer, len, inner, reverse);
        }
        if n == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        let ab = self.words_of(a);
        let out = self.out_words(n);
        self.ctx.nd_dispatch(
            NdKernel::Cumsum,
            &[outer as u32, len as u32, inner as u32, u32::from(reverse)],
            &[out.buffer()],
            &[ab.buffer()],
            groups(outer * inner),
        );
        self.wrap_f32(out, n)
    }

    pub(super) fn nd_dropout_mask(&self, len: usize, p: f32, scale: f32, seed: u64) -> Storage {
        if self.nd_too_big(&[len]) {
            return CpuBackend.dropout_mask(len, p, scale, seed);
        }
        let out = self.out_words(len);
        // nd.wgsl's `dropout` draws crate::rng::unit(seed, 2i), word for word.
        self.ctx.nd_dispatch(
            NdKernel::Dropout,
            &[
                len as u32,
                p.to_bits(),
                seed as u32,
                (seed >> 32) as u32,
                scale.to_bits(),
            ],
            &[out.buffer()],
            &[],
            groups(len),
        );
        self.wrap_f32(out, len)
    }

    /// Records the products `g` describes, reading and writing at the
    /// element offsets in `ops`.
    fn bmm_into(&self, g: &MatmulGeometry, ops: &Operands<'_>) {
        let (dims, sa, sb) = collapse_batch(g);
        let products: usize = dims.iter().product();
        let tiles_n = g.n.div_ceil(BMM_TILE);
        let per_product = g.m.div_ceil(BMM_TILE) * tiles_n;
        let mut params = vec![0u32; 30];
        params[..12].copy_from_slice(&[
            g.m as u32,
            g.k as u32,
            g.n as u32,
            u32::from(g.transpose_a) | (u32::from(g.transpose_b) << 1),
            tiles_n as u32,
            per_product as u32,
            dims.len() as u32,
            products as u32,
            ops.a_offset as u32,
            ops.b_offset as u32,
            ops.out_offset as u32,
            0,
        ]);
        for (d, ((&dim, &x), &y)) in dims.iter().zip(&sa).zip(&sb).enumerate() {
            params[12 + d] = dim as u32;
            params[18 + d] = x as u32;
            params[24 + d] = y as u32;
        }
        self.ctx.nd_dispatch(
            NdKernel::Bmm,
            &params,
            &[ops.out],
            &[ops.a, ops.b],
            products * per_product,
        );
    }

    pub(super) fn nd_batched_matmul(
        &self,
        a: &Storage,
        b: &Storage,
        g: &MatmulGeometry,
    ) -> Storage {
        let (la, lb, lc) = g.lens();
        if self.nd_too_big(&[la, lb, lc]) {
            return CpuBackend.batched_matmul(a, b, g);
        }
        if lc == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        if g.k == 0 {
            return self.wrap_f32(self.nd_fill(DType::F32, lc, 0.0), lc);
        }
        let (ab, bb) = (self.words_of(a), self.words_of(b));
        let out = self.out_words(lc);
        self.bmm_into(
            g,
            &Operands {
                a: ab.buffer(),
                a_offset: 0,
                b: bb.buffer(),
                b_offset: 0,
                out: out.buffer(),
                out_offset: 0,
            },
        );
        self.wrap_f32(out, lc)
    }

    /// Images per im2col chunk, or `None` when one image's unfolded input is
    /// more than the device binds (the CPU then convolves).
    fn conv_chunk(&self, g: &ConvGeometry) -> Option<usize> {
        let per_image = (g.c * g.kh * g.kw * g.positions()) as u64 * 4;
        let budget = COLS_BUDGET.min(self.max_tensor_bytes);
        if per_image > budget {
            return None;
        }
        Some(((budget / per_image.max(1)) as usize).clamp(1, g.n.max(1)))
    }

    fn conv_params(g: &ConvGeometry, threads: usize, offset: usize) -> [u32; 16] {
        [
            threads as u32,
            g.c as u32,
            g.h as u32,
            g.w as u32,
            g.kh as u32,
            g.kw as u32,
            g.stride[0] as u32,
            g.stride[1] as u32,
            g.padding[0] as u32,
            g.padding[1] as u32,
            g.dilation[0] as u32,
            g.dilation[1] as u32,
            g.ho as u32,
            g.wo as u32,
            g.groups as u32,
            offset as u32,
        ]
    }

    /// Unfolds images `first..first + count` of `x` into `cols`.
    fn im2col(
        &self,
        g: &ConvGeometry,
        x: &wgpu::Buffer,
        first: usize,
        count: usize,
        cols: &wgpu::Buffer,
    ) {
        let threads = count * g.c * g.kh * g.kw * g.positions();
        let params = Self::conv_params(g, threads, first * g.c * g.h * g.w);
        self.ctx
            .nd_dispatch(NdKernel::Im2col, &params, &[cols], &[x], groups(threads));
    }

    /// The products of one group's weights `[og, patch]` (or their
    /// transpose) with `count` images' unfolded input, batched over
    /// (image, group).
    #[allow(clippy::too_many_arguments, reason = "a product's sizes and layout")]
    fn conv_geometry(
        g: &ConvGeometry,
        count: usize,
        m: usize,
        k: usize,
        n: usize,
        a_strides: [usize; 2],
        b_strides: [usize; 2],
        transpose: (bool, bool),
    ) -> MatmulGeometry {
        MatmulGeometry {
            batch: vec![count, g.groups],
            a_strides: a_strides.to_vec(),
            b_strides: b_strides.to_vec(),
            m,
            k,
            n,
            transpose_a: transpose.0,
            transpose_b: transpose.1,
        }
    }

    pub(super) fn nd_conv2d(&self, x: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
        let (lx, lw, ly) = g.lens();
        let chunk = self.conv_chunk(g);
        if self.nd_too_big(&[lx, lw, ly]) || chunk.is_none() {
            return CpuBackend.conv2d(x, w, g);
        }
        if ly == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        if g.patch() == 0 {
            return self.wrap_f32(self.nd_fill(DType::F32, ly, 0.0), ly);
        }
        let chunk = chunk.expect("checked above");
        let (xb, wb) = (self.words_of(x), self.words_of(w));
        let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
        let out = self.out_words(ly);
        let cols = self.out_words(chunk * g.groups * kk * p);
        for first in (0..g.n).step_by(chunk) {
            let count = chunk.min(g.n - first);
            self.im2col(g, xb.buffer(), first, count, cols.buffer());
            // y[image, group] = w[group] · cols[image, group].
            let mg = Self::conv_geometry(
                g,
                count,
                og,
                kk,
                p,
                [0, og * kk],
                [g.groups * kk * p, kk * p],
                (false, false),
            );
            self.bmm_into(
                &mg,
                &Operands {
                    a: wb.buffer(),
                    a_offset: 0,
                    b: cols.buffer(),
                    b_offset: 0,
                    out: out.buffer(),
                    out_offset: first * g.o * p,
                },
            );
        }
        self.wrap_f32(out, ly)
    }

    pub(super) fn nd_conv2d_grad_input(
        &self,
        dy: &Storage,
        w: &Storage,
        g: &ConvGeometry,
    ) -> Storage {
        let (lx, lw, ly) = g.lens();
        let chunk = self.conv_chunk(g);
        if self.nd_too_big(&[lx, lw, ly]) || chunk.is_none() {
            return CpuBackend.conv2d_grad_input(dy, w, g);
        }
        if lx == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        if g.o == 0 {
            return self.wrap_f32(self.nd_fill(DType::F32, lx, 0.0), lx);
        }
        let chunk = chunk.expect("checked above");
        let (dyb, wb) = (self.words_of(dy), self.words_of(w));
        let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
        let dx = self.out_words(lx);
        let cols = self.out_words(chunk * g.groups * kk * p);
        for first in (0..g.n).step_by(chunk) {
            let count = chunk.min(g.n - first);
            // cols[image, group] = w[group]ᵀ · dy[image, group].
            let mg = Self::conv_geometry(
                g,
                count,
                kk,
                og,
                p,
                [0, og * kk],
                [g.o * p, og * p],
                (true, false),
            );
            self.bmm_into(
                &mg,
                &Operands {
                    a: wb.buffer(),
                    a_offset: 0,
                    b: dyb.buffer(),
                    b_offset: first * g.o * p,
                    out: cols.buffer(),
                    out_offset: 0,
                },
            );
            let threads = count * g.c * g.h * g.w;
            let params = Self::conv_params(g, threads, first * g.c * g.h * g.w);
            self.ctx.nd_dispatch(
                NdKernel::Col2im,
                &params,
                &[dx.buffer()],
                &[cols.buffer()],
                groups(threads),
            );
        }
        self.wrap_f32(dx, lx)
    }

    pub(super) fn nd_conv2d_grad_weight(
        &self,
        x: &Storage,
        dy: &Storage,
        g: &ConvGeometry,
    ) -> Storage {
        let (lx, lw, ly) = g.lens();
        let chunk = self.conv_chunk(g);
        if self.nd_too_big(&[lx, lw, ly, lw * chunk.unwrap_or(1)]) || chunk.is_none() {
            return CpuBackend.conv2d_grad_weight(x, dy, g);
        }
        if lw == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        if g.n == 0 {
            return self.wrap_f32(self.nd_fill(DType::F32, lw, 0.0), lw);
        }
        let chunk = chunk.expect("checked above");
        let (xb, dyb) = (self.words_of(x), self.words_of(dy));
        let (kk, p, og) = (g.patch(), g.positions(), g.o / g.groups);
        let dw = self.out_words(lw);
        let cols = self.out_words(chunk * g.groups * kk * p);
        let partial = self.out_words(chunk * lw);
        for (c, first) in (0..g.n).step_by(chunk).enumerate() {
            let count = chunk.min(g.n - first);
            self.im2col(g, xb.buffer(), first, count, cols.buffer());
            // partial[image, group] = dy[image, group] · cols[image, group]ᵀ.
            let mg = Self::conv_geometry(
                g,
                count,
                og,
                p,
                kk,
                [g.o * p, og * p],
                [g.groups * kk * p, kk * p],
                (false, true),
            );
            self.bmm_into(
                &mg,
                &Operands {
                    a: dyb.buffer(),
                    a_offset: first * g.o * p,
                    b: cols.buffer(),
                    b_offset: 0,
                    out: partial.buffer(),
                    out_offset: 0,
                },
            );
            // dw (+)= Σ over the chunk's images, in image order.
            self.ctx.nd_dispatch(
                NdKernel::SumBatches,
                &[lw as u32, count as u32, u32::from(c > 0)],
                &[dw.buffer()],
                &[partial.buffer()],
                groups(lw),
            );
        }
        self.wrap_f32(dw, lw)
    }

    fn pool_params(g: &PoolGeometry, threads: usize, mode: u32) -> [u32; 12] {
        [
            threads as u32,
            mode,
            g.h as u32,
            g.w as u32,
            g.kernel[0] as u32,
            g.kernel[1] as u32,
            g.stride[0] as u32,
            g.stride[1] as u32,
            g.padding[0] as u32,
            g.padding[1] as u32,
            g.ho as u32,
            g.wo as u32,
        ]
    }

    pub(super) fn nd_max_pool2d(&self, x: &Storage, g: &PoolGeometry) -> (Storage, Storage) {
        let (lx, ly) = g.lens();
        if self.nd_too_big(&[lx, 2 * ly]) {
            return CpuBackend.max_pool2d(x, g);
        }
        if ly == 0 {
            return (
                self.wrap_f32(self.out_words(0), 0),
                self.wrap_i64(self.out_words(0), 0, Some(Arc::from(Vec::new()))),
            );
        }
        let xb = self.words_of(x);
        let (vals, idx) = (self.out_words(ly), self.out_words(2 * ly));
        for (mode, out, threads) in [(0, &vals, ly), (1, &idx, 2 * ly)] {
            self.ctx.nd_dispatch(
                NdKernel::MaxPool,
                &Self::pool_params(g, threads, mode),
                &[out.buffer()],
                &[xb.buffer()],
                groups(threads),
            );
        }
        (self.wrap_f32(vals, ly), self.wrap_i64(idx, ly, None))
    }

    pub(super) fn nd_max_pool2d_grad(
        &self,
        dy: &Storage,
        idx: &Storage,
        g: &PoolGeometry,
    ) -> Storage {
        let (lx, ly) = g.lens();
        if self.nd_too_big(&[lx, 2 * ly]) {
            return CpuBackend.max_pool2d_grad(dy, idx, g);
        }
        if lx == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        let (db, ib) = (self.words_of(dy), self.words_of(idx));
        let out = self.out_words(lx);
        self.ctx.nd_dispatch(
            NdKernel::MaxPoolGrad,
            &Self::pool_params(g, lx, 0),
            &[out.buffer()],
            &[db.buffer(), ib.buffer()],
            groups(lx),
        );
        self.wrap_f32(out, lx)
    }

    pub(super) fn nd_avg_pool2d(&self, x: &Storage, g: &PoolGeometry) -> Storage {
        let (lx, ly) = g.lens();
        if self.nd_too_big(&[lx, ly]) {
            return CpuBackend.avg_pool2d(x, g);
        }
        if ly == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        let xb = self.words_of(x);
        let out = self.out_words(ly);
        self.ctx.nd_dispatch(
            NdKernel::AvgPool,
            &Self::pool_params(g, ly, 0),
            &[out.buffer()],
            &[xb.buffer()],
            groups(ly),
        );
        self.wrap_f32(out, ly)
    }

    pub(super) fn nd_avg_pool2d_grad(&self, dy: &Storage, g: &PoolGeometry) -> Storage {
        let (lx, ly) = g.lens();
        if self.nd_too_big(&[lx, ly]) {
            return CpuBackend.avg_pool2d_grad(dy, g);
        }
        if lx == 0 {
            return self.wrap_f32(self.out_words(0), 0);
        }
        let db = self.words_of(dy);
        let out = self.out_words(lx);
        self.ctx.nd_dispatch(
            NdKernel::AvgPoolGrad,
            &Self::pool_params(g, lx, 0),
            &[out.buffer()],
            &[db.buffer()],
            groups(lx),
        );
        self.wrap_f32(out, lx)
    }
}

#[cfg(test)]
mod tests {
    use super::{collapse_batch, to_words};
    use crate::MatmulGeometry;

    #[test]
    fn i64_words_are_low_then_high() {
        assert_eq!(
            to_words(&[1, -1, 1 << 32, i64::MIN]),
            vec![1, 0, u32::MAX, u32::MAX, 0, 1, 0, 1 << 31]
        );
    }

    #[test]
    fn batch_dims_collapse() {
        let g = MatmulGeometry {
            batch: vec![2, 1, 3],
            a_strides: vec![3 * 12, 0, 12],
            b_strides: vec![0, 0, 0],
            m: 3,
            k: 4,
            n: 5,
            transpose_a: false,
            transpose_b: false,
        };
        // The size-1 dimension goes; a's two remaining dimensions merge, b
        // is broadcast along both, so they merge too.
        assert_eq!(collapse_batch(&g), (vec![6], vec![12], vec![0]));
        let h = MatmulGeometry {
            batch: vec![2, 3],
            a_strides: vec![0, 12],
            b_strides: vec![20, 0],
            ..g
        };
        assert_eq!(collapse_batch(&h), (vec![2, 3], vec![0, 12], vec![20, 0]));
    }
}
