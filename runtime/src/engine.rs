//! The one wasmtime engine of a process, its compile cache, and its epoch ticker.

use std::collections::HashMap;
use std::hash::Hasher;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tensorlet_gpu::Device;
use tensorlet_registry::VerifiedComponent;
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::Limits;
use crate::bindings::tensor as wit_tensor;
use crate::bindings_v01::tensor as wit_tensor_v01;
use crate::error::{Result, RuntimeError};
use crate::host::Ctx;
use crate::plugin::{Plugin, Shared};

/// How a [`Runtime`] is set up.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Sandbox limits for every call.
    pub limits: Limits,
    /// The device plugin tensors live on.
    pub device: Device,
    /// Where precompiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    /// Default limits, the CPU device, no disk cache.
    fn default() -> Self {
        RuntimeConfig {
            limits: Limits::default(),
            device: Device::cpu(),
            cache_dir: None,
        }
    }
}

/// Stops the epoch ticker thread when the runtime goes away.
struct Ticker {
    stop: Arc<AtomicBool>,
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The plugin host: one engine, its linkers, a compile cache.
///
/// Create one per process and load every plugin through it.
pub struct Runtime {
    shared: Arc<Shared>,
    /// WASI bound synchronously: for calls made on plain threads.
    linker: Linker<Ctx>,
    /// WASI bound asynchronously: for calls driven by an async executor
    /// (`Plugin::predict_in`), where the sync WASI bindings would try to
    /// start a second tokio runtime inside the executor's.
    linker_async: Linker<Ctx>,
    cache_dir: Option<PathBuf>,
    compiled: Mutex<HashMap<String, Component>>,
    _ticker: Ticker,
}

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// What [`Runtime::inspect`] found in a component.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentInfo {
    /// `sha256:` of the bytes.
    pub digest: String,
    /// Exported interface names (`tensorlet:ml/predict@0.2.0`, …).
    pub exports: Vec<String>,
    /// Imported interface names.
    pub imports: Vec<String>,
    /// Why linking against the host fails, when an import is not provided.
    pub unprovided: Option<String>,
}

/// A `Hasher` over SHA-256, so cache keys are stable across Rust versions.
struct StableHasher(Sha256);

impl Hasher for StableHasher {
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes(d[..8].try_into().expect("8 bytes"))
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Bytes of each pooled linear memory and table kept resident between
/// instances, where the kernel can say which pages a call touched
/// (`PAGEMAP_SCAN`, Linux 6.7+): only those are reset, so a large bound costs
/// nothing when little is used.
const KEEP_RESIDENT_SCANNED: usize = 1 << 20;
/// The same without `PAGEMAP_SCAN`: the whole region is zeroed with memset on
/// every reuse, so it stays small.
const KEEP_RESIDENT_ZEROED: usize = 64 << 10;

/// Resets a freed pool slot in place instead of handing it back to the
/// kernel: the next instance then finds its stack, globals and first heap
/// pages resident, with no page faults and no TLB shootdowns. `tensorlet
/// bench instances` measured 15-16 µs per instance with neither, 8-9 µs
/// zeroing 64 KiB, ~7 µs scanning 1 MiB (and serving on one core: 11k req/s
/// zeroing, 15-20k scanning).
pub(crate) fn keep_resident(pool: &mut PoolingAllocationConfig) {
    let keep = if PoolingAllocationConfig::is_pagemap_scan_available() {
        KEEP_RESIDENT_SCANNED
    } else {
        KEEP_RESIDENT_ZEROED
    };
    pool.linear_memory_keep_resident(keep)
        .table_keep_resident(keep)
        .pagemap_scan(wasmtime::Enabled::Auto);
}

/// The engine's settings. With `compact`, each pooled linear memory reserves
/// only its maximum size (bounds are then checked explicitly) instead of the
/// default 4 GiB, so the pool fits a small virtual address space: arm64
/// kernels built with 39-bit addresses give a process 512 GiB, less than the
/// default pool's ~2 TiB.
fn engine_config(limits: &Limits, compact: bool) -> Config {
    let mut config = Config::new();
    if compact {
        config.memory_reservation(limits.max_memory_bytes as u64);
    }
    config.wasm_component_model(true);
    // Plugins make plain calls (sync or on fibers): without the component
    // model's concurrency machinery (compiled in for the WASI 0.3 export
    // host), a call does not create and tear down a guest task.
    config.concurrency_support(false);
    config.epoch_interruption(true);
    config.max_wasm_stack(limits.max_wasm_stack_bytes);
    if limits.pooling {
        let mut pool = PoolingAllocationConfig::default();
        let n = limits.max_instances;
        pool.total_component_instances(n)
            .total_core_instances(n * 8)
            .total_memories(n * 2)
            .total_tables(n * 4)
            .total_stacks(n)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(8)
            .max_memory_size(limits.max_memory_bytes);
        keep_resident(&mut pool);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

impl Runtime {
    /// Builds the engine, links WASI (granting nothing) and the tensor
    /// interface, and starts the epoch ticker.
    pub fn new(config: RuntimeConfig) -> Result<Self> {
        let engine = match Engine::new(&engine_config(&config.limits, false)) {
            Ok(engine) => engine,
            // The default pool did not fit the address space: reserve less.
            Err(e) if config.limits.pooling => {
                tracing::info!("{e:#}; reserving only each memory's maximum size");
                Engine::new(&engine_config(&config.limits, true))
                    .map_err(|e| RuntimeError::Engine(format!("{e:#}")))?
            }
            Err(e) => return Err(RuntimeError::Engine(format!("{e:#}"))),
        };
        let linker = host_linker(&engine, false)?;
        let linker_async = host_linker(&engine, true)?;
        if let Some(dir) = &config.cache_dir {
            sweep_stale_temporaries(dir, STALE_TEMPORARY_AGE);
        }

        let stop = Arc::new(AtomicBool::new(false));
        {
            let (engine, stop, tick) = (engine.clone(), stop.clone(), config.limits.epoch_tick);
            std::thread::Builder::new()
                .name("tensorlet-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch ticker: {e}")))?;
        }
        Ok(Runtime {
            shared: Arc::new(Shared {
                engine,
                budgets: Arc::new([crate::budget::MemoryBudget::new(
                    "the process",
                    config.limits.max_total_host_tensor_bytes,
                )]),
                limits: config.limits,
                device: config.device,
            }),
            linker,
            linker_async,
            cache_dir: config.cache_dir,
            compiled: Mutex::new(HashMap::new()),
            _ticker: Ticker { stop },
        })
    }

    /// The device plugin tensors live on.
    pub fn device(&self) -> &Device {
        &self.shared.device
    }

    /// The wasmtime engine every plugin is compiled for.
    pub(crate) fn engine(&self) -> &Engine {
        &self.shared.engine
    }

    /// The sandbox limits.
    pub fn limits(&self) -> &Limits {
        &self.shared.limits
    }

    /// Compiles (or fetches from the cache) a component and links it against
    /// the host, so that calls only instantiate.
    ///
    /// This is the only way to a runnable plugin, and it takes a
    /// [`VerifiedComponent`]: something only the registry's verification (or
    /// its loud, audited `allow_unsigned`) can make. The digest is computed
    /// again here, over the bytes that are compiled.
    pub fn load(&self, component: &VerifiedComponent) -> Result<Plugin> {
        let verified = component;
        let (name, bytes) = (component.name(), component.bytes());
        let digest = digest(bytes);
        let component = self.compile(name, &digest, bytes)?;
        let link = |linker: &Linker<Ctx>| {
            linker
                .instantiate_pre(&component)
                .map_err(|e| RuntimeError::Load {
                    plugin: name.to_string(),
                    message: format!(
                        "it needs an import tensorlet does not provide: {e:#}; plugins may \
                         import only tensorlet:ml/tensor (ABI 0.2 or 0.1), wasi:nn and WASI 0.2"
                    ),
                })
        };
        let (pre, pre_async) = (link(&self.linker)?, link(&self.linker_async)?);
        let plugin = Plugin::new(self.shared.clone(), name, digest, pre, pre_async)?;
        if verified.graphs().is_empty() {
            return Ok(plugin);
        }
        let graphs: Vec<(String, Vec<u8>)> = verified
            .graphs()
            .iter()
            .map(|(n, b)| (n.clone(), b.to_vec()))
            .collect();
        plugin.with_graphs(&graphs)
    }

    /// Compiles a component only to describe it: the interfaces it exports
    /// and imports, and whether the host provides every import. Used to check
    /// a component before it is signed and published; it yields no runnable
    /// plugin (the compiled form is cached by digest, which is harmless: only
    /// [`Runtime::load`] of verified bytes with that digest can use it).
    pub fn inspect(&self, name: &str, bytes: &[u8]) -> Result<ComponentInfo> {
        let digest = digest(bytes);
        let component = self.compile(name, &digest, bytes)?;
        let engine = &self.shared.engine;
        let ty = component.component_type();
        let exports = ty.exports(engine).map(|(n, _)| n.to_string()).collect();
        let imports = ty.imports(engine).map(|(n, _)| n.to_string()).collect();
        let unprovided = self
            .linker
            .instantiate_pre(&component)
            .err()
            .map(|e| format!("{e:#}"));
        Ok(ComponentInfo {
            digest,
            exports,
            imports,
            unprovided,
        })
    }

    fn cache_path(&self, digest: &str) -> Option<PathBuf> {
        let dir = self.cache_dir.as_ref()?;
        let mut h = StableHasher(Sha256::new());
        std::hash::Hash::hash(&self.shared.engine.precompile_compatibility_hash(), &mut h);
        let hex = digest.trim_start_matches("sha256:");
        Some(dir.join(format!("{hex}-{:016x}.cwasm", h.finish())))
    }

    fn compile(&self, name: &str, digest: &str, bytes: &[u8]) -> Result<Component> {
        if let Some(c) = self
            .compiled
            .lock()
            .expect("compile cache lock")
            .get(digest)
        {
            return Ok(c.clone());
        }
        let engine = &self.shared.engine;
        let path = self.cache_path(digest);
        let cached = path.as_deref().filter(|p| p.exists()).and_then(|p| {
            // SAFETY: files in the cache directory are written only by
            // `store_precompiled` below, from this engine configuration (the
            // file name carries the engine's compatibility hash). wasmtime
            // also checks the version and configuration in the file header.
            unsafe { Component::deserialize_file(engine, p) }
                .inspect_err(|e| tracing::warn!("ignoring cached {}: {e:#}", p.display()))
                .ok()
        });
        let component = match cached {
            Some(c) => c,
            None => {
                let load_err = |e: wasmtime::Error| RuntimeError::Load {
                    plugin: name.to_string(),
                    message: if wasmparser::Parser::is_core_wasm(bytes)
                        && wasmparser::Validator::new().validate_all(bytes).is_ok()
                    {
                        "it is not a valid WebAssembly component: it is a core module. Build \
                         it as a component: for wasm32-wasip2, or for wasm32-unknown-unknown \
                         with `linker = \"wasm-component-ld\"` (sdk/README.md), or wrap it \
                         with `wasm-tools component new`"
                            .to_string()
                    } else {
                        format!("it is not a valid WebAssembly component: {e:#}")
                    },
                };
                let precompiled = engine.precompile_component(bytes).map_err(load_err)?;
                if let Some(p) = &path
                    && let Err(e) = store_precompiled(p, &precompiled)
                {
                    tracing::warn!("cannot cache {}: {e}", p.display());
                }
                // SAFETY: the bytes were produced just now by this engine.
                unsafe { Component::deserialize(engine, &precompiled) }.map_err(load_err)?
            }
        };
        self.compiled
            .lock()
            .expect("compile cache lock")
            .insert(digest.to_string(), component.clone());
        Ok(component)
    }
}

/// A linker with the host's imports: WASI 0.2 (sync or async bindings), the
/// tensor interface of ABI 0.2 and 0.1, and `wasi:nn`. The tensor and `wasi:nn` functions are
/// synchronous either way; an async call runs them on its fiber.
fn host_linker(engine: &Engine, async_wasi: bool) -> Result<Linker<Ctx>> {
    let err = |e: wasmtime::Error| RuntimeError::Engine(format!("{e:#}"));
    let mut linker = Linker::new(engine);
    if async_wasi {
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(err)?;
    } else {
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(err)?;
    }
    wit_tensor::add_to_linker::<Ctx, HasSelf<Ctx>>(&mut linker, |c| c).map_err(err)?;
    wit_tensor_v01::add_to_linker::<Ctx, HasSelf<Ctx>>(&mut linker, |c| c).map_err(err)?;
    wasmtime_wasi_nn::wit::add_to_linker(&mut linker, |c: &mut Ctx| c.nn_view()).map_err(err)?;
    Ok(linker)
}

/// A cache write's temporary file older than this is removed even when a
/// process with its writer's pid is running (pids are reused); a compile
/// and its write take well under a minute.
const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(3600);

/// Writes atomically: a temporary file `.<name>.<pid>.<n>.tmp` (unique per
/// process and write), renamed into place. A writer killed before the rename
/// leaves its temporary file behind; the next runtime on the directory, or
/// the next write into it, removes it ([`sweep_stale_temporaries`]). Reads
/// open only final `.cwasm` names, so a temporary file is never read.
fn store_precompiled(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("cache path has a parent");
    std::fs::create_dir_all(dir)?;
    sweep_stale_temporaries(dir, STALE_TEMPORARY_AGE);
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("cwasm"),
        std::process::id(),
        WRITES.fetch_add(1, Ordering::Relaxed)
    ));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed
}

/// The writer's pid in the name of a cache write's temporary file
/// (`.<hex>-<hash>.cwasm.<pid>[.<n>].tmp`); `None` for any other name.
fn temporary_writer(name: &str) -> Option<u32> {
    let inner = name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let (_, tail) = inner.split_once(".cwasm.")?;
    tail.split('.').next()?.parse().ok()
}

/// Whether process `pid` may still be writing: `Some(false)` only when it
/// is known to be gone (Linux: no `/proc/<pid>`); `None` where that cannot
/// be told.
fn process_alive(pid: u32) -> Option<bool> {
    if pid == std::process::id() {
        return Some(true);
    }
    let proc = Path::new("/proc");
    proc.join("self")
        .exists()
        .then(|| proc.join(pid.to_string()).exists())
}

/// Removes the temporary files of cache writes in `dir` whose writer is gone
/// (killed mid-write), or that are older than `max_age` whatever their pid
/// says. Best effort: a file that cannot be inspected or removed stays.
fn sweep_stale_temporaries(dir: &Path, max_age: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_writer) else {
            continue;
        };
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > max_age);
        if old || process_alive(pid) == Some(false) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => tracing::info!(
                    "removed {}, left by an interrupted cache write",
                    entry.path().display()
                ),
                Err(e) => tracing::debug!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn temporary_file_names_are_told_from_cache_entries() {
        let hex = "ab".repeat(32);
        let name = |s: &str| s.replace("HEX", &hex);
        assert_eq!(
            temporary_writer(&name(".HEX-00ff.cwasm.4242.tmp")),
            Some(4242)
        );
        assert_eq!(
            temporary_writer(&name(".HEX-00ff.cwasm.4242.7.tmp")),
            Some(4242)
        );
        for other in [
            "HEX-00ff.cwasm",
            ".HEX-00ff.cwasm",
            "HEX-00ff.cwasm.4242.tmp",
            ".HEX-00ff.cwasm.x.tmp",
            ".HEX.4242.tmp",
            ".HEX-00ff.cwasm.4242.tmp.keep",
        ] {
            assert_eq!(temporary_writer(&name(other)), None, "{other}");
        }
    }

    /// What a writer SIGKILLed between create and rename leaves: its
    /// temporary file, named with its pid.
    fn leftover(dir: &Path, pid: u32, n: u32) -> PathBuf {
        let p = dir.join(format!(".{}-00ff.cwasm.{pid}.{n}.tmp", "cd".repeat(32)));
        std::fs::write(&p, b"half a component").unwrap();
        p
    }

    /// Linux only: the sweep tells a live writer from a dead one through /proc.
    #[test]
    #[cfg(target_os = "linux")]
    fn temporary_files_of_dead_writers_are_swept_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut done = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = done.id();
        done.wait().unwrap();
        let mut running = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let dead = leftover(d, dead_pid, 0);
        let live = leftover(d, running.id(), 0);
        let mine = leftover(d, std::process::id(), 1_000_000);
        let old = leftover(d, std::process::id(), 1_000_001);
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        let entry = d.join(format!("{}-00ff.cwasm", "cd".repeat(32)));
        let unrelated = d.join(".notes.tmp");
        std::fs::write(&entry, b"x").unwrap();
        std::fs::write(&unrelated, b"x").unwrap();

        sweep_stale_temporaries(d, STALE_TEMPORARY_AGE);
        assert!(!dead.exists(), "a dead writer's file stays");
        assert!(!old.exists(), "a file older than the limit stays");
        assert!(live.exists(), "a running writer's file was removed");
        assert!(mine.exists(), "this process's own write was removed");
        assert!(entry.exists() && unrelated.exists());

        running.kill().unwrap();
        running.wait().unwrap();
        sweep_stale_temporaries(d, STALE_TEMPORARY_AGE);
        assert!(!live.exists(), "the killed writer's file stays");
        assert!(mine.exists());
    }

    #[test]
    fn a_runtime_sweeps_its_cache_directory_and_writes_unique_temporaries() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("components");
        std::fs::create_dir_all(&d).unwrap();
        let stale = leftover(&d, std::process::id(), 2_000_000);
        std::fs::File::options()
            .write(true)
            .open(&stale)
            .unwrap()
            .set_modified(SystemTime::now() - Duration::from_secs(7200))
            .unwrap();
        let _rt = Runtime::new(RuntimeConfig {
            cache_dir: Some(d.clone()),
            ..RuntimeConfig::default()
        })
        .unwrap();
        assert!(!stale.exists(), "Runtime::new left {}", stale.display());

        // Writes from many threads of one process to one path: each has its
        // own temporary file, the result is whole, and none is left.
        let target = d.join("entry.cwasm");
        let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| store_precompiled(&target, &payload).unwrap());
            }
        });
        assert_eq!(std::fs::read(&target).unwrap(), payload);
        let names: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["entry.cwasm"], "{names:?}");
    }
}
