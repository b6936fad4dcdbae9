//! Training through the library: determinism and accuracy on the bundled data.

mod common;

use common::*;
use tensorlet_runtime::model::{self, Model};
use tensorlet_runtime::pipeline::PluginSource;
use tensorlet_runtime::{Pipeline, Runtime, RuntimeConfig, data, train};

fn resolve(s: &PluginSource) -> tensorlet_runtime::Result<(String, Vec<u8>)> {
    let stem = match s {
        PluginSource::Bundled(name) => name.replace('-', "_"),
        PluginSource::Path(p) => p.file_stem().unwrap().to_string_lossy().into_owned(),
        PluginSource::Registry(r) => panic!("these tests use local plugins, not {r}"),
    };
    Ok((stem.clone(), plugin_bytes(&stem)))
}

/// Trains a bundled pipeline into `out` and returns the params file's bytes.
fn train_into(rt: &Runtime, name: &str, seed: u64, out: &std::path::Path) -> (Vec<u8>, f32) {
    let mut pipeline = Pipeline::load(&pipeline(name)).unwrap();
    pipeline.training.seed = seed;
    let data = data::load_labeled(
        &data(&format!("{name}.csv")),
        pipeline.data.label.as_deref(),
    )
    .unwrap();
    let plugins = pipeline
        .load_plugins(rt, &unsigned_resolver(resolve))
        .unwrap();
    let trained = train::train(
        rt.device(),
        &plugins,
        &data,
        &pipeline.training,
        data.classes(),
        &mut (),
    )
    .unwrap();
    let meta = model::save(out, rt.device(), &pipeline, &plugins, &data, &trained).unwrap();
    let bytes = std::fs::read(out.join("params.safetensors")).unwrap();
    assert_eq!(tensorlet_runtime::digest(&bytes), meta.params_digest);
    (bytes, meta.val_accuracy().unwrap())
}

#[test]
fn same_inputs_give_byte_identical_params_and_a_new_seed_does_not() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["iris", "digits"] {
        let (a, _) = train_into(&rt, name, 5, &dir.path().join(format!("{name}-a")));
        let (b, _) = train_into(&rt, name, 5, &dir.path().join(format!("{name}-b")));
        let (c, _) = train_into(&rt, name, 6, &dir.path().join(format!("{name}-c")));
        assert_eq!(a, b, "{name}: same seed, different params");
        assert_ne!(a, c, "{name}: different seed, same params");
    }
}

#[test]
fn bundled_pipelines_reach_their_accuracy_and_saved_models_agree() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["iris", "digits"] {
        let out = dir.path().join(name);
        let seed = Pipeline::load(&pipeline(name)).unwrap().training.seed;
        let (_, acc) = train_into(&rt, name, seed, &out);
        assert!(acc >= 0.95, "{name}: validation accuracy {acc}");

        // The saved model predicts the training file with high accuracy too.
        let model = Model::load(&rt, &out, &unsigned_component).unwrap();
        let ds =
            data::load_labeled(&data(&format!("{name}.csv")), Some(&model.meta.label)).unwrap();
        let p = model.predict(rt.device(), ds.x.clone(), ds.rows()).unwrap();
        let correct = p.labels.iter().zip(&ds.y).filter(|(a, b)| a == b).count();
        assert!(
            correct as f64 / ds.rows() as f64 >= 0.95,
            "{name}: {correct}/{}",
            ds.rows()
        );
        for row in &p.probabilities {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        }
    }
}

#[test]
fn a_tampered_model_is_refused() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("iris");
    train_into(&rt, "iris", 1, &out);
    let params = out.join("params.safetensors");
    let mut bytes = std::fs::read(&params).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&params, bytes).unwrap();
    let e = Model::load(&rt, &out, &unsigned_component)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("params.safetensors has digest sha256:"), "{e}");
    assert!(e.contains("the file was modified"), "{e}");
}

#[test]
fn the_compile_cache_is_used_and_survives_corruption() {
    let cache = tempfile::tempdir().unwrap();
    let config = || RuntimeConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..RuntimeConfig::default()
    };
    let bytes = plugin_bytes("standardize");
    let dev = tensorlet_runtime::gpu::Device::cpu();
    let x = tensor(&dev, &[2, 2], vec![1.0, 2.0, 3.0, 6.0]);
    let run = |rt: &Runtime| {
        let p = load_bytes(rt, "standardize", bytes.clone()).unwrap();
        let state = p.fit("{}", &x).unwrap();
        rt.device().to_vec(&p.transform("{}", &state, &x).unwrap())
    };
    let want = vec![-1.0, -1.0, 1.0, 1.0];
    assert_eq!(run(&Runtime::new(config()).unwrap()), want);
    let files: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    let hex = tensorlet_runtime::digest(&bytes)
        .trim_start_matches("sha256:")
        .to_string();
    assert!(name.starts_with(&hex) && name.ends_with(".cwasm"), "{name}");
    // A second runtime loads the precompiled file.
    assert_eq!(run(&Runtime::new(config()).unwrap()), want);
    // A corrupted cache entry is ignored and replaced, not trusted.
    std::fs::write(&files[0], b"not a precompiled component").unwrap();
    assert_eq!(run(&Runtime::new(config()).unwrap()), want);
    assert!(std::fs::read(&files[0]).unwrap().len() > 1000);
}
