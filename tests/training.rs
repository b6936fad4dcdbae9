//! Training through the library: determinism and accuracy on the bundled data.

mod common;

use common::*;
use tensorlet_runtime::model::{self, Model};
use tensorlet_runtime::pipeline::PluginSource;
use tensorlet_runtime::train::PipelinePlugins;
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
    // `digits-cnn` trains on digits.csv.
    let file = name.split('-').next().unwrap();
    let data = data::load_labeled(
        &data(&format!("{file}.csv")),
        pipeline.data.label.as_ref().map(|l| l.first()),
    )
    .unwrap();
    let plugins = PipelinePlugins::load(&pipeline, rt, &unsigned_resolver(resolve)).unwrap();
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

/// The bundled CNN (`digits-cnn`: the digits as 1×8×8 images, two conv
/// layers) reaches 0.985 validation accuracy with the pipeline's seed, more
/// than the bundled MLP on the same split, and trains to the same bytes twice.
#[test]
fn the_digits_cnn_beats_the_mlp_and_trains_deterministically() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let seed = Pipeline::load(&pipeline("digits-cnn"))
        .unwrap()
        .training
        .seed;
    assert_eq!(
        seed,
        Pipeline::load(&pipeline("digits")).unwrap().training.seed
    );
    let (a, cnn) = train_into(&rt, "digits-cnn", seed, &dir.path().join("a"));
    let (b, _) = train_into(&rt, "digits-cnn", seed, &dir.path().join("b"));
    let (_, mlp) = train_into(&rt, "digits", seed, &dir.path().join("mlp"));
    assert!(cnn >= 0.985, "cnn validation accuracy {cnn}");
    assert!(cnn > mlp, "cnn {cnn} is not above the mlp's {mlp}");
    assert_eq!(a, b, "same seed, different params");
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
        rt.device()
            .to_vec(&p.transform("{}", &state, &x).unwrap())
            .unwrap()
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

/// Stops after `stop_after` epochs and keeps every checkpoint, like the
/// CLI's run recorder.
struct Checkpoints {
    stop_after: u32,
    state: Option<Vec<u8>>,
    params: Vec<(u32, Vec<u8>)>,
    history: Vec<train::EpochMetrics>,
    dev: tensorlet_runtime::gpu::Device,
}

impl train::Observer for Checkpoints {
    fn fitted(&mut self, state: &tensorlet_runtime::NamedTensors) -> tensorlet_runtime::Result<()> {
        self.state = Some(model::to_safetensors(&self.dev, state).unwrap());
        Ok(())
    }
    fn checkpoint(
        &mut self,
        m: &train::EpochMetrics,
        params: &tensorlet_runtime::NamedTensors,
    ) -> tensorlet_runtime::Result<()> {
        self.params
            .push((m.epoch, model::to_safetensors(&self.dev, params).unwrap()));
        self.history.push(m.clone());
        Ok(())
    }
    fn interrupted(&self) -> bool {
        self.params.len() as u32 >= self.stop_after
    }
}

#[test]
fn a_resumed_run_ends_with_the_params_of_an_uninterrupted_one() {
    let rt = Runtime::new(RuntimeConfig::default()).unwrap();
    let dev = rt.device().clone();
    for (name, keep) in [("iris", "best"), ("digits", "last")] {
        let mut pipeline = Pipeline::load(&pipeline(name)).unwrap();
        pipeline.training.epochs = 12;
        pipeline.training.keep = keep.parse().unwrap();
        let ds = data::load_labeled(
            &data(&format!("{name}.csv")),
            pipeline.data.label.as_ref().map(|l| l.first()),
        )
        .unwrap();
        let plugins = PipelinePlugins::load(&pipeline, &rt, &unsigned_resolver(resolve)).unwrap();
        let run = |obs: &mut Checkpoints, resume| {
            train::train_from(
                &dev,
                &plugins,
                &ds,
                &pipeline.training,
                ds.classes(),
                obs,
                resume,
            )
        };
        let observer = |stop_after| Checkpoints {
            stop_after,
            state: None,
            params: Vec::new(),
            history: Vec::new(),
            dev: dev.clone(),
        };
        let mut whole = observer(u32::MAX);
        let uninterrupted = run(&mut whole, None).unwrap();
        assert_eq!(whole.params.len(), 12);

        let mut first = observer(5);
        let e = run(&mut first, None).unwrap_err();
        assert!(
            matches!(e, tensorlet_runtime::RuntimeError::Interrupted),
            "{e}"
        );
        assert_eq!(first.params.len(), 5);
        // The checkpoints so far are those of the uninterrupted run.
        assert_eq!(first.params, whole.params[..5]);

        let from = |bytes: &[u8]| model::from_safetensors(&dev, bytes).unwrap();
        let best = train::best_epoch(&first.history)
            .filter(|&e| e != 5)
            .map(|e| (e, from(&first.params[e as usize - 1].1)));
        let resume = train::Resume {
            state: from(first.state.as_ref().unwrap()),
            params: from(&first.params[4].1),
            history: first.history.clone(),
            best,
        };
        let mut second = observer(u32::MAX);
        let resumed = run(&mut second, Some(resume)).unwrap();
        assert_eq!(
            second.params,
            whole.params[5..],
            "{name}: checkpoints differ"
        );
        assert!(second.state.is_none(), "a resumed run does not fit again");
        assert_eq!(resumed.epoch, uninterrupted.epoch, "{name}: kept epoch");
        assert_eq!(
            model::to_safetensors(&dev, &resumed.params).unwrap(),
            model::to_safetensors(&dev, &uninterrupted.params).unwrap(),
            "{name}: kept params differ"
        );
        assert_eq!(
            model::to_safetensors(&dev, &resumed.last_params).unwrap(),
            whole.params[11].1,
            "{name}: final params differ"
        );
        let losses = |h: &[train::EpochMetrics]| -> Vec<_> {
            h.iter()
                .map(|m| (m.epoch, m.train_loss, m.val_loss, m.val_accuracy))
                .collect()
        };
        assert_eq!(losses(&resumed.history), losses(&uninterrupted.history));
        if keep == "last" {
            assert_eq!(resumed.epoch, 12);
        } else {
            assert_eq!(
                Some(resumed.epoch),
                train::best_epoch(&uninterrupted.history)
            );
        }
    }
}
