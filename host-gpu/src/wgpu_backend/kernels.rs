//! The compute pipelines, and the `Backend` implementation that dispatches them.
//!
//! Every kernel binds the same way: binding 0 is a 256-byte uniform block of
//! parameters, binding 1 the output, bindings 2 and 3 the inputs. Pipelines are
//! compiled once per process, on first use, and cached in [`Kernels`].

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use super::pool::{Kind, PooledBuffer};
use super::{Context, GpuStorage, WgpuBackend};
use crate::cpu::CpuBackend;
use crate::{
    Backend, BinaryOp, ConvGeometry, CopyPart, DType, DeviceInfo, Distribution, MatmulGeometry,
    PoolGeometry, ReduceOp, ScalarOp, Storage, UnaryOp,
};

/// Threads per workgroup of the one-dimensional kernels.
const GROUP: u32 = 256;
/// Output tile edge of the matmul kernel (4 x 4 outputs per thread).
const MATMUL_TILE: usize = 64;
/// Output tile edge of the large-matrix matmul kernel (8 x 8 outputs per thread).
const MATMUL_LARGE_TILE: usize = 128;
/// Tiles of 128 x 128 from which the large kernel is used: with fewer, the
/// 64 x 64 kernel's four times as many workgroups keep more of a big GPU busy.
const MATMUL_LARGE_MIN_TILES: usize = 128;
/// Tile edge of the transpose kernel.
const TRANSPOSE_TILE: usize = 16;
/// Axis length from which a row (inner = 1) is reduced by a whole workgroup.
const WIDE_AXIS: usize = 256;
/// Bytes of the parameter block; the shaders read it as `array<vec4<u32>, 16>`.
const PARAMS_BYTES: u64 = 256;

#[derive(Clone, Copy, Debug)]
enum Module {
    Matmul,
    Elementwise,
    Map,
    Reduce,
    Layout,
    Gather,
}

const MODULES: usize = 6;

impl Module {
    fn source(self) -> &'static str {
        match self {
            Module::Matmul => include_str!("matmul.wgsl"),
            Module::Elementwise => include_str!("elementwise.wgsl"),
            Module::Map => include_str!("map.wgsl"),
            Module::Reduce => include_str!("reduce.wgsl"),
            Module::Layout => include_str!("layout.wgsl"),
            Module::Gather => include_str!("gather.wgsl"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    Matmul,
    MatmulLarge,
    Binary,
    Unary,
    Fill,
    Random,
    Reduce,
    ReduceWide,
    Softmax,
    SoftmaxWide,
    Transpose,
    Concat,
    OneHot,
    Gather,
    ScatterAdd,
}

const KERNELS: usize = 15;

impl Kernel {
    /// Module, entry point and number of inputs.
    fn spec(self) -> (Module, &'static str, usize) {
        match self {
            Kernel::Matmul => (Module::Matmul, "matmul", 2),
            Kernel::MatmulLarge => (Module::Matmul, "matmul_large", 2),
            Kernel::Binary => (Module::Elementwise, "binary", 2),
            Kernel::Unary => (Module::Map, "unary", 1),
            Kernel::Fill => (Module::Map, "fill", 0),
            Kernel::Random => (Module::Map, "random", 0),
            Kernel::Reduce => (Module::Reduce, "reduce", 1),
            Kernel::ReduceWide => (Module::Reduce, "reduce_wide", 1),
            Kernel::Softmax => (Module::Reduce, "softmax", 1),
            Kernel::SoftmaxWide => (Module::Reduce, "softmax_wide", 1),
            Kernel::Transpose => (Module::Layout, "transpose", 1),
            Kernel::Concat => (Module::Layout, "concat", 2),
            Kernel::OneHot => (Module::Layout, "one_hot", 1),
            Kernel::Gather => (Module::Gather, "gather", 2),
            Kernel::ScatterAdd => (Module::Gather, "scatter_add", 2),
        }
    }
}

/// Bind group layouts (by number of inputs) and the lazily compiled pipelines.
pub(crate) struct Kernels {
    layouts: [wgpu::BindGroupLayout; 3],
    pipeline_layouts: [wgpu::PipelineLayout; 3],
    modules: [OnceLock<wgpu::ShaderModule>; MODULES],
    pipelines: [OnceLock<wgpu::ComputePipeline>; KERNELS],
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

impl Kernels {
    pub(crate) fn new(device: &wgpu::Device) -> Self {
        let layouts = [0usize, 1, 2].map(|inputs| {
            let mut entries = vec![
                entry(0, wgpu::BufferBindingType::Uniform),
                entry(1, wgpu::BufferBindingType::Storage { read_only: false }),
            ];
            for i in 0..inputs {
                entries.push(entry(
                    2 + i as u32,
                    wgpu::BufferBindingType::Storage { read_only: true },
                ));
            }
            device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("tensorlet kernel bindings"),
                entries: &entries,
            })
        });
        let pipeline_layouts = [0, 1, 2].map(|i| {
            device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some("tensorlet kernel layout"),
                bind_group_layouts: &[Some(&layouts[i])],
                immediate_size: 0,
            })
        });
        Kernels {
            layouts,
            pipeline_layouts,
            modules: Default::default(),
            pipelines: Default::default(),
        }
    }

    fn pipeline(&self, device: &wgpu::Device, k: Kernel) -> &wgpu::ComputePipeline {
        let (module, entry_point, inputs) = k.spec();
        self.pipelines[k as usize].get_or_init(|| {
            let module = self.modules[module as usize].get_or_init(|| {
                device.create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(entry_point),
                    source: wgpu::ShaderSource::Wgsl(Cow::Borrowed(module.source())),
                })
            });
            device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry_point),
                layout: Some(&self.pipeline_layouts[inputs]),
                module,
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
    /// Host data into a pooled storage buffer.
    fn upload_words(&self, bytes: &[u8]) -> PooledBuffer {
        let buf = self.buffer(Kind::Storage, bytes.len() as u64);
        if !bytes.is_empty() {
            self.queue.write_buffer(buf.buffer(), 0, bytes);
        }
        buf
    }

    /// Reads `len` f32 from the start of `buf` through a pooled staging buffer.
    pub(super) fn read(&self, buf: &wgpu::Buffer, len: usize) -> Vec<f32> {
        if len == 0 {
            return Vec::new();
        }
        let bytes = (len * 4) as u64;
        let staging = self.buffer(Kind::Staging, bytes);
        self.record(|enc| enc.copy_buffer_to_buffer(buf, 0, staging.buffer(), 0, bytes));
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        staging
            .buffer()
            .map_async(wgpu::MapMode::Read, 0..bytes, move |r| {
                let _ = tx.send(r);
            });
        self.wait();
        rx.recv()
            .expect("map_async callback ran")
            .expect("mapping a staging buffer");
        let out = {
            let view = staging
                .buffer()
                .get_mapped_range(0..bytes)
                .expect("mapped range");
            bytemuck::pod_collect_to_vec::<u8, f32>(&view)
        };
        staging.buffer().unmap();
        out
    }

    /// Records `kernel` over `groups` workgroups (spread over x and y when
    /// there are more than one dimension allows) into the open batch.
    fn dispatch(
        &self,
        kernel: Kernel,
        params: &[u32],
        out: &wgpu::Buffer,
        inputs: &[&wgpu::Buffer],
        groups: usize,
    ) {
        if groups == 0 {
            return;
        }
        let (_, _, n_inputs) = kernel.spec();
        debug_assert_eq!(n_inputs, inputs.len());
        let device = self.device();
        let pipeline = self.kernels.pipeline(device, kernel);
        let p = self.buffer(Kind::Uniform, PARAMS_BYTES);
        self.queue
            .write_buffer(p.buffer(), 0, bytemuck::cast_slice(params));
        let mut entries = vec![
            wgpu::BindGroupEntry {
                binding: 0,
                resource: p.buffer().as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: out.as_entire_binding(),
            },
        ];
        for (i, b) in inputs.iter().enumerate() {
            entries.push(wgpu::BindGroupEntry {
                binding: 2 + i as u32,
                resource: b.as_entire_binding(),
            });
        }
        let bind = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &self.kernels.layouts[n_inputs],
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
        // `p` goes back to the pool now; it is reused only after this batch
        // is submitted.
    }
}

fn groups_for(n: usize) -> usize {
    n.div_ceil(GROUP as usize)
}

/// Output dims and both broadcast strides, with size-1 dimensions dropped and
/// neighbours that broadcast alike merged; at most [`crate::MAX_DIMS`] long.
fn collapse(out: &[usize], a: &[usize], b: &[usize]) -> (Vec<usize>, Vec<usize>, Vec<usize>) {
    let strides = |s: &[usize]| {
        let mut st = vec![0; s.len()];
        let mut acc = 1;
        for i in (0..s.len()).rev() {
            st[i] = if s[i] == 1 { 0 } else { acc };
            acc *= s[i];
        }
        st
    };
    let (sa, sb) = (strides(a), strides(b));
    let (mut dims, mut ra, mut rb): (Vec<usize>, Vec<usize>, Vec<usize>) = (vec![], vec![], vec![]);
    for i in 0..out.len() {
        if out[i] == 1 {
            continue;
        }
        if let (Some(&d), Some(&pa), Some(&pb)) = (dims.last(), ra.last(), rb.last())
            && pa == sa[i] * out[i]
            && pb == sb[i] * out[i]
        {
            let last = dims.len() - 1;
            dims[last] = d * out[i];
            ra[last] = sa[i];
            rb[last] = sb[i];
            continue;
        }
        dims.push(out[i]);
        ra.push(sa[i]);
        rb.push(sb[i]);
    }
    (dims, ra, rb)
}

fn unary_code(op: UnaryOp) -> u32 {
    match op {
        UnaryOp::Relu => 0,
        UnaryOp::Sigmoid => 1,
        UnaryOp::Tanh => 2,
        UnaryOp::Exp => 3,
        UnaryOp::Log => 4,
        UnaryOp::Sqrt => 5,
        UnaryOp::Neg => 6,
        UnaryOp::Abs => 7,
        UnaryOp::Square => 8,
        UnaryOp::ReluMask => 9,
        UnaryOp::Gelu => 20,
        UnaryOp::GeluTanh => 21,
        UnaryOp::Silu => 22,
        UnaryOp::Softplus => 23,
        UnaryOp::GeluGrad => 24,
        UnaryOp::GeluTanhGrad => 25,
        UnaryOp::SiluGrad => 26,
    }
}

fn scalar_code(op: ScalarOp) -> u32 {
    match op {
        ScalarOp::Add => 10,
        ScalarOp::Mul => 11,
        ScalarOp::Pow => 12,
        ScalarOp::Max => 13,
        ScalarOp::Min => 14,
        ScalarOp::LeakyRelu => 15,
    }
}

fn reduce_code(op: ReduceOp) -> u32 {
    match op {
        ReduceOp::Sum => 0,
        ReduceOp::Mean => 1,
        ReduceOp::Max => 2,
        ReduceOp::Min => 3,
        ReduceOp::ArgMax => 4,
    }
}

impl WgpuBackend {
    /// Whether an op touching tensors of these element counts must go to the CPU.
    fn too_big(&self, lens: &[usize]) -> bool {
        lens.iter()
            .any(|&l| (l as u64).saturating_mul(4) > self.max_tensor_bytes)
    }

    /// The GPU buffer holding `s`, uploading host (or foreign) storage first.
    fn resident(&self, s: &Storage, len: usize) -> Arc<PooledBuffer> {
        match s {
            Storage::Gpu(g) if Arc::ptr_eq(&g.ctx, &self.ctx) => g.buf.clone(),
            Storage::Gpu(g) => Arc::new(self.ctx.upload_words(bytemuck::cast_slice(&g.to_vec()))),
            Storage::Host(v) => {
                debug_assert_eq!(v.len(), len);
                Arc::new(self.ctx.upload_words(bytemuck::cast_slice(v)))
            }
            // `Device` passes f32 storage only; an i64 one is converted.
            other => {
                let v: Vec<f32> = CpuBackend
                    .download_i64(other, len)
                    .iter()
                    .map(|&x| x as f32)
                    .collect();
                Arc::new(self.ctx.upload_words(bytemuck::cast_slice(&v)))
            }
        }
    }

    fn output(&self, len: usize) -> PooledBuffer {
        self.ctx.buffer(Kind::Storage, (len * 4) as u64)
    }

    fn wrap(&self, buf: PooledBuffer, len: usize) -> Storage {
        Storage::Gpu(GpuStorage {
            buf: Arc::new(buf),
            len,
            ctx: self.ctx.clone(),
        })
    }

    /// Runs a one-thread-per-element kernel writing `len` outputs.
    fn map_kernel(
        &self,
        kernel: Kernel,
        params: &[u32],
        inputs: &[&wgpu::Buffer],
        len: usize,
    ) -> Storage {
        let out = self.output(len);
        self.ctx
            .dispatch(kernel, params, out.buffer(), inputs, groups_for(len));
        self.wrap(out, len)
    }

    fn fill_value(&self, len: usize, value: f32) -> Storage {
        self.map_kernel(Kernel::Fill, &[0, len as u32, value.to_bits(), 0], &[], len)
    }

    fn copy_ranges(&self, parts: &[(&wgpu::Buffer, u64, u64)], len: usize) -> Storage {
        let out = self.output(len);
        self.ctx.record(|enc| {
            let mut at = 0;
            for &(src, offset, bytes) in parts {
                if bytes > 0 {
                    enc.copy_buffer_to_buffer(src, offset, out.buffer(), at, bytes);
                }
                at += bytes;
            }
        });
        self.wrap(out, len)
    }
}

impl Backend for WgpuBackend {
    fn info(&self) -> DeviceInfo {
        WgpuBackend::info(self)
    }

    fn upload(&self, data: &[f32]) -> Storage {
        if self.too_big(&[data.len()]) {
            return CpuBackend.upload(data);
        }
        let buf = self.ctx.upload_words(bytemuck::cast_slice(data));
        self.wrap(buf, data.len())
    }

    fn download(&self, s: &Storage, len: usize) -> Vec<f32> {
        match s {
            Storage::Gpu(g) => {
                debug_assert_eq!(g.len, len);
                g.to_vec()
            }
            Storage::Host(v) => v.to_vec(),
            other => CpuBackend.download(other, len),
        }
    }

    fn synchronize(&self) {
        self.ctx.wait();
    }

    fn is_software(&self) -> bool {
        self.ctx.adapter().software
    }

    fn fill(&self, len: usize, value: f32) -> Storage {
        if self.too_big(&[len]) {
            return CpuBackend.fill(len, value);
        }
        self.fill_value(len, value)
    }

    fn random(&self, len: usize, dist: Distribution, seed: u64) -> Storage {
        if self.too_big(&[len]) {
            return CpuBackend.random(len, dist, seed);
        }
        let (code, p0, p1) = match dist {
            Distribution::Uniform { low, high } => (0, low, high),
            Distribution::Normal { mean, std } => (1, mean, std),
        };
        // map.wgsl's `random` is crate::rng::sample, word for word.
        let params = [
            code,
            len as u32,
            seed as u32,
            (seed >> 32) as u32,
            p0.to_bits(),
            p1.to_bits(),
        ];
        self.map_kernel(Kernel::Random, &params, &[], len)
    }

    fn matmul(&self, a: &Storage, b: &Storage, m: usize, k: usize, n: usize) -> Storage {
        if self.too_big(&[m * k, k * n, m * n]) {
            return CpuBackend.matmul(a, b, m, k, n);
        }
        if m * n == 0 || k == 0 {
            return self.fill_value(m * n, 0.0);
        }
        let (ab, bb) = (self.resident(a, m * k), self.resident(b, k * n));
        let large =
            m.div_ceil(MATMUL_LARGE_TILE) * n.div_ceil(MATMUL_LARGE_TILE) >= MATMUL_LARGE_MIN_TILES;
        let (kernel, tile) = if large {
            (Kernel::MatmulLarge, MATMUL_LARGE_TILE)
        } else {
            (Kernel::Matmul, MATMUL_TILE)
        };
        let tiles_n = n.div_ceil(tile);
        let groups = m.div_ceil(tile) * tiles_n;
        let out = self.output(m * n);
        self.ctx.dispatch(
            kernel,
            &[m as u32, k as u32, n as u32, tiles_n as u32],
            out.buffer(),
            &[ab.buffer(), bb.buffer()],
            groups,
        );
        self.wrap(out, m * n)
    }

    fn transpose(&self, a: &Storage, rows: usize, cols: usize) -> Storage {
        let len = rows * cols;
        if self.too_big(&[len]) {
            return CpuBackend.transpose(a, rows, cols);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        let ab = self.resident(a, len);
        let tiles_c = cols.div_ceil(TRANSPOSE_TILE);
        let groups = rows.div_ceil(TRANSPOSE_TILE) * tiles_c;
        let out = self.output(len);
        self.ctx.dispatch(
            Kernel::Transpose,
            &[rows as u32, cols as u32, tiles_c as u32, 0],
            out.buffer(),
            &[ab.buffer()],
            groups,
        );
        self.wrap(out, len)
    }

    fn binary(
        &self,
        op: BinaryOp,
        a: &Storage,
        a_shape: &[usize],
        b: &Storage,
        b_shape: &[usize],
        out_shape: &[usize],
    ) -> Storage {
        let (na, nb): (usize, usize) = (a_shape.iter().product(), b_shape.iter().product());
        let n: usize = out_shape.iter().product();
        if self.too_big(&[na, nb, n]) {
            return CpuBackend.binary(op, a, a_shape, b, b_shape, out_shape);
        }
        if n == 0 {
            return self.wrap(self.output(0), 0);
        }
        let (ab, bb) = (self.resident(a, na), self.resident(b, nb));
        let (dims, sa, sb) = collapse(out_shape, a_shape, b_shape);
        let code = match op {
            BinaryOp::Add => 0,
            BinaryOp::Sub => 1,
            BinaryOp::Mul => 2,
            BinaryOp::Div => 3,
            BinaryOp::Maximum => 4,
            BinaryOp::Minimum => 5,
            BinaryOp::Pow => 6,
            BinaryOp::Eq => 7,
            BinaryOp::Ne => 8,
            BinaryOp::Lt => 9,
            BinaryOp::Le => 10,
            BinaryOp::Gt => 11,
            BinaryOp::Ge => 12,
        };
        let mut params = vec![0u32; 28];
        params[0] = code;
        params[1] = n as u32;
        params[2] = dims.len() as u32;
        for (d, ((&dim, &x), &y)) in dims.iter().zip(&sa).zip(&sb).enumerate() {
            params[4 + d] = dim as u32;
            params[12 + d] = x as u32;
            params[20 + d] = y as u32;
        }
        self.map_kernel(Kernel::Binary, &params, &[ab.buffer(), bb.buffer()], n)
    }

    fn scalar(&self, op: ScalarOp, a: &Storage, len: usize, value: f32) -> Storage {
        if self.too_big(&[len]) {
            return CpuBackend.scalar(op, a, len, value);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        let ab = self.resident(a, len);
        let code = scalar_code(op);
        self.map_kernel(
            Kernel::Unary,
            &[code, len as u32, value.to_bits(), 0],
            &[ab.buffer()],
            len,
        )
    }

    fn unary(&self, op: UnaryOp, a: &Storage, len: usize) -> Storage {
        if self.too_big(&[len]) {
            return CpuBackend.unary(op, a, len);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        let ab = self.resident(a, len);
        self.map_kernel(
            Kernel::Unary,
            &[unary_code(op), len as u32, 0, 0],
            &[ab.buffer()],
            len,
        )
    }

    fn reduce(
        &self,
        op: ReduceOp,
        a: &Storage,
        outer: usize,
        axis: usize,
        inner: usize,
    ) -> Storage {
        let (len, out_len) = (outer * axis * inner, outer * inner);
        if self.too_big(&[len]) {
            return CpuBackend.reduce(op, a, outer, axis, inner);
        }
        if out_len == 0 {
            return self.wrap(self.output(0), 0);
        }
        if axis == 0 {
            // Only Sum reaches here with an empty axis (Device checks).
            return self.fill_value(out_len, 0.0);
        }
        let ab = self.resident(a, len);
        let params = [reduce_code(op), outer as u32, axis as u32, inner as u32];
        if inner == 1 && axis >= WIDE_AXIS {
            let out = self.output(out_len);
            self.ctx.dispatch(
                Kernel::ReduceWide,
                &params,
                out.buffer(),
                &[ab.buffer()],
                outer,
            );
            self.wrap(out, out_len)
        } else {
            self.map_kernel(Kernel::Reduce, &params, &[ab.buffer()], out_len)
        }
    }

    fn softmax(&self, a: &Storage, outer: usize, axis: usize, inner: usize, log: bool) -> Storage {
        let len = outer * axis * inner;
        if self.too_big(&[len]) {
            return CpuBackend.softmax(a, outer, axis, inner, log);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        let ab = self.resident(a, len);
        let params = [u32::from(log), outer as u32, axis as u32, inner as u32];
        let out = self.output(len);
        if inner == 1 && axis >= WIDE_AXIS {
            self.ctx.dispatch(
                Kernel::SoftmaxWide,
                &params,
                out.buffer(),
                &[ab.buffer()],
                outer,
            );
        } else {
            self.ctx.dispatch(
                Kernel::Softmax,
                &params,
                out.buffer(),
                &[ab.buffer()],
                groups_for(outer * inner),
            );
        }
        self.wrap(out, len)
    }

    fn one_hot(&self, a: &Storage, n: usize, classes: usize) -> Storage {
        let len = n * classes;
        if self.too_big(&[len]) {
            return CpuBackend.one_hot(a, n, classes);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        let ab = self.resident(a, n);
        self.map_kernel(
            Kernel::OneHot,
            &[classes as u32, len as u32, 0, 0],
            &[ab.buffer()],
            len,
        )
    }

    fn gather_rows(&self, a: &Storage, row_len: usize, indices: &[u32]) -> Storage {
        let rows = indices.iter().map(|&i| i as usize + 1).max().unwrap_or(0);
        let len = indices.len() * row_len;
        let a_len = match a {
            Storage::Gpu(g) => g.len,
            Storage::Host(v) => v.len(),
            Storage::HostI64(v) => v.len(),
            Storage::GpuI64(g) => g.len(),
        };
        if self.too_big(&[a_len, len, indices.len()]) {
            return CpuBackend.gather_rows(a, row_len, indices);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        debug_assert!(rows * row_len <= a_len);
        let ab = self.resident(a, a_len);
        let ib = self.ctx.upload_words(bytemuck::cast_slice(indices));
        self.map_kernel(
            Kernel::Gather,
            &[row_len as u32, len as u32, 0, 0],
            &[ab.buffer(), ib.buffer()],
            len,
        )
    }

    fn scatter_add_rows(
        &self,
        g: &Storage,
        row_len: usize,
        indices: &[u32],
        rows: usize,
    ) -> Storage {
        let (g_len, len) = (indices.len() * row_len, rows * row_len);
        // Per output row, the positions in `indices` that point at it, in
        // order (CSR): offsets into `csr` itself, then the positions. Each
        // thread sums its element over its row's list, so the order of the
        // additions is fixed and matches the CPU backend's.
        let csr_len = rows + 1 + indices.len();
        if self.too_big(&[g_len, len, csr_len]) {
            return CpuBackend.scatter_add_rows(g, row_len, indices, rows);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        if g_len == 0 {
            return self.fill_value(len, 0.0);
        }
        let mut csr = vec![0u32; csr_len];
        for &i in indices {
            csr[i as usize + 1] += 1;
        }
        // csr[r + 1] holds row r's count: an inclusive scan from the first
        // position turns the counts into start offsets.
        let mut at = (rows + 1) as u32;
        for c in &mut csr[..=rows] {
            at += *c;
            *c = at;
        }
        let mut next = csr[..rows].to_vec();
        for (k, &i) in indices.iter().enumerate() {
            let slot = &mut next[i as usize];
            csr[*slot as usize] = k as u32;
            *slot += 1;
        }
        let gb = self.resident(g, g_len);
        let cb = self.ctx.upload_words(bytemuck::cast_slice(&csr));
        self.map_kernel(
            Kernel::ScatterAdd,
            &[row_len as u32, len as u32, 0, 0],
            &[gb.buffer(), cb.buffer()],
            len,
        )
    }

    fn slice_rows(&self, a: &Storage, row_len: usize, start: usize, end: usize) -> Storage {
        let a_len = match a {
            Storage::Gpu(g) => g.len,
            Storage::Host(v) => v.len(),
            Storage::HostI64(v) => v.len(),
            Storage::GpuI64(g) => g.len(),
        };
        let len = (end - start) * row_len;
        if self.too_big(&[a_len]) {
            return CpuBackend.slice_rows(a, row_len, start, end);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        let ab = self.resident(a, a_len);
        self.copy_ranges(
            &[(ab.buffer(), (start * row_len * 4) as u64, (len * 4) as u64)],
            len,
        )
    }

    fn concat(
        &self,
        a: &Storage,
        b: &Storage,
        outer: usize,
        a_inner: usize,
        b_inner: usize,
    ) -> Storage {
        let (na, nb) = (outer * a_inner, outer * b_inner);
        let len = na + nb;
        if self.too_big(&[len]) {
            return CpuBackend.concat(a, b, outer, a_inner, b_inner);
        }
        if len == 0 {
            return self.wrap(self.output(0), 0);
        }
        let (ab, bb) = (self.resident(a, na), self.resident(b, nb));
        if outer == 1 || na == 0 || nb == 0 {
            // Whole blocks one after the other: two copies, no kernel.
            return self.copy_ranges(
                &[
                    (ab.buffer(), 0, (na * 4) as u64),
                    (bb.buffer(), 0, (nb * 4) as u64),
                ],
                len,
            );
        }
        self.map_kernel(
            Kernel::Concat,
            &[a_inner as u32, b_inner as u32, len as u32, 0],
            &[ab.buffer(), bb.buffer()],
            len,
        )
    }

    // The N-D ops live in nd.rs.

    fn upload_i64(&self, data: &[i64]) -> Storage {
        self.nd_upload_i64(data)
    }

    fn download_i64(&self, s: &Storage, len: usize) -> Arc<[i64]> {
        self.nd_download_i64(s, len)
    }

    fn i64_to_f32(&self, a: &Storage, len: usize) -> Storage {
        self.nd_i64_to_f32(a, len)
    }

    fn f32_to_i64(&self, a: &Storage, len: usize) -> Result<Storage, usize> {
        self.nd_f32_to_i64(a, len)
    }

    fn copy_nd(
        &self,
        dtype: DType,
        out_len: usize,
        fill: Option<f64>,
        parts: &[CopyPart<'_>],
    ) -> Storage {
        self.nd_copy(dtype, out_len, fill, parts)
    }

    fn index_select(
        &self,
        dtype: DType,
        a: &Storage,
        outer: usize,
        n: usize,
        inner: usize,
        idx: &Storage,
        m: usize,
    ) -> Storage {
        self.nd_index_select(dtype, a, outer, n, inner, idx, m)
    }

    fn gather(
        &self,
        dtype: DType,
        a: &Storage,
        a_dims: &[usize],
        axis: usize,
        idx: &Storage,
        idx_dims: &[usize],
    ) -> Storage {
        self.nd_gather(dtype, a, a_dims, axis, idx, idx_dims)
    }

    fn index_add(
        &self,
        g: &Storage,
        outer: usize,
        m: usize,
        inner: usize,
        idx: &[i64],
        n: usize,
    ) -> Storage {
        self.nd_index_add(g, outer, m, inner, idx, n)
    }

    fn scatter_add(
        &self,
        src: &Storage,
        idx: &Storage,
        idx_dims: &[usize],
        axis: usize,
        out_dims: &[usize],
    ) -> Storage {
        self.nd_scatter_add(src, idx, idx_dims, axis, out_dims)
    }

    fn clamp(&self, a: &Storage, len: usize, lo: f32, hi: f32) -> Storage {
        self.nd_clamp(a, len, lo, hi)
    }

    fn where_select(
        &self,
        cond: &Storage,
        cond_shape: &[usize],
        a: &Storage,
        a_shape: &[usize],
        b: &Storage,
        b_shape: &[usize],
        out: &[usize],
    ) -> Storage {
        self.nd_where(cond, cond_shape, a, a_shape, b, b_shape, out)
    }

    fn cumsum(
        &self,
        a: &Storage,
        outer: usize,
        len: usize,
        inner: usize,
        reverse: bool,
    ) -> Storage {
        self.nd_cumsum(a, outer, len, inner, reverse)
    }

    fn dropout_mask(&self, len: usize, p: f32, scale: f32, seed: u64) -> Storage {
        self.nd_dropout_mask(len, p, scale, seed)
    }

    fn batched_matmul(&self, a: &Storage, b: &Storage, g: &MatmulGeometry) -> Storage {
        self.nd_batched_matmul(a, b, g)
    }

    fn conv2d(&self, x: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
        self.nd_conv2d(x, w, g)
    }

    fn conv2d_grad_input(&self, dy: &Storage, w: &Storage, g: &ConvGeometry) -> Storage {
        self.nd_conv2d_grad_input(dy, w, g)
    }

    fn conv2d_grad_weight(&self, x: &Storage, dy: &Storage, g: &ConvGeometry) -> Storage {
        self.nd_conv2d_grad_weight(x, dy, g)
    }

    fn max_pool2d(&self, x: &Storage, g: &PoolGeometry) -> (Storage, Storage) {
        self.nd_max_pool2d(x, g)
    }

    fn max_pool2d_grad(&self, dy: &Storage, idx: &Storage, g: &PoolGeometry) -> Storage {
        self.nd_max_pool2d_grad(dy, idx, g)
    }

    fn avg_pool2d(&self, x: &Storage, g: &PoolGeometry) -> Storage {
        self.nd_avg_pool2d(x, g)
    }

    fn avg_pool2d_grad(&self, dy: &Storage, g: &PoolGeometry) -> Storage {
        self.nd_avg_pool2d_grad(dy, g)
    }
}

#[cfg(test)]
mod tests {
    use super::collapse;

    #[test]
    fn broadcast_dims_collapse() {
        // Same shapes: one flat dimension.
        assert_eq!(
            collapse(&[2, 3, 4], &[2, 3, 4], &[2, 3, 4]),
            (vec![24], vec![1], vec![1])
        );
        // Row vector broadcast over rows.
        assert_eq!(
            collapse(&[4, 3], &[4, 3], &[1, 3]),
            (vec![4, 3], vec![3, 1], vec![0, 1])
        );
        // Size-1 dims vanish; scalars have rank 0.
        assert_eq!(
            collapse(&[1, 5, 1], &[1, 5, 1], &[1, 1, 1]),
            (vec![5], vec![1], vec![0])
        );
        assert_eq!(
            collapse(&[1, 1], &[1, 1], &[1, 1]),
            (vec![], vec![], vec![])
        );
        // Column broadcast: [4, 1] x [1, 5].
        assert_eq!(
            collapse(&[4, 5], &[4, 1], &[1, 5]),
            (vec![4, 5], vec![1, 0], vec![0, 1])
        );
    }
}
