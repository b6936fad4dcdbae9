//! `tensorlet devices`: the GPU adapters wgpu finds, and what `--device auto` picks.

use anyhow::Result;
use tensorlet_gpu::Device;

/// List the GPU adapters (name, backend, device type) and which one `auto` picks.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One row of the listing.
#[derive(Debug, serde::Serialize)]
struct Row {
    name: String,
    backend: String,
    device_type: String,
    driver: String,
    software: bool,
}

#[cfg(feature = "gpu")]
fn adapters() -> (Vec<Row>, Option<usize>) {
    let (list, auto) = tensorlet_gpu::wgpu_backend::adapters();
    let rows = list
        .into_iter()
        .map(|a| Row {
            name: a.name,
            backend: a.backend,
            device_type: a.device_type,
            driver: a.driver,
            software: a.software,
        })
        .collect();
    (rows, auto)
}

#[cfg(not(feature = "gpu"))]
fn adapters() -> (Vec<Row>, Option<usize>) {
    (Vec::new(), None)
}

/// What `--device gpu` answers when the listing found no adapter, without
/// probing the drivers a second time.
#[cfg(feature = "gpu")]
fn no_adapter() -> String {
    tensorlet_gpu::wgpu_backend::GpuError::NoAdapter {
        software: Vec::new(),
    }
    .to_string()
}

#[cfg(not(feature = "gpu"))]
fn no_adapter() -> String {
    tensorlet_gpu::OpenError::NoGpuBackend.to_string()
}

pub fn execute(args: Args) -> Result<()> {
    let (rows, auto) = adapters();
    let gpu_backend = cfg!(feature = "gpu");
    // What `--device auto` would open; it never opens a software adapter.
    let auto_pick = match auto {
        Some(i) => format!("gpu: {}", rows[i].name),
        None => format!("cpu: {}", Device::cpu().info().name),
    };
    let gpu_pick = rows.first().map(|r| r.name.clone());
    if args.json {
        let json = serde_json::json!({
            "gpu_backend": gpu_backend,
            "adapters": rows,
            "auto": auto_pick,
            "auto_adapter": auto,
            "gpu": gpu_pick,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
        return Ok(());
    }
    if !gpu_backend {
        println!("this build has no GPU backend (built without the `gpu` feature)");
    } else if rows.is_empty() {
        println!("no GPU adapters found");
    } else {
        println!(
            "{:<3} {:<44} {:<8} {:<11} driver",
            "#", "adapter", "backend", "type"
        );
        for (i, r) in rows.iter().enumerate() {
            let kind = if r.software {
                format!("{} (software)", r.device_type)
            } else {
                r.device_type.clone()
            };
            let mark = if Some(i) == auto { "  <- auto" } else { "" };
            println!(
                "{i:<3} {:<44} {:<8} {:<11} {}{mark}",
                r.name, r.backend, kind, r.driver
            );
        }
    }
    println!();
    println!("--device auto -> {auto_pick}");
    match gpu_pick {
        Some(name) => println!("--device gpu  -> {name}"),
        None => println!("--device gpu  -> unavailable: {}", no_adapter()),
    }
    println!("--device cpu  -> {}", Device::cpu().info().name);
    Ok(())
}
