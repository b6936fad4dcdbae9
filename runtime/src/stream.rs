//! Training on data larger than memory (`[training] stream = true`): every
//! epoch reads the table from disk in chunks ([`tensorlet_formats::data::Stream`]),
//! so memory is bounded by a chunk, the shuffle window and the model, not by
//! the file.
//!
//! What differs from training in memory, all from the seed and so the same on
//! every run and after a resume:
//! - the split: each row is drawn into the test, validation or training split
//!   by a hash of the seed and its row number, with the configured
//!   probabilities (not stratified, sizes are close to but not exactly the
//!   fractions);
//! - the shuffle: training rows are taken in file order in windows of
//!   `shuffle_rows` rows (a whole number of batches) and shuffled within each
//!   window, a new order every epoch — rows far apart in the file never share
//!   a batch, so a file sorted by label needs shuffling once beforehand;
//! - fitting: the preprocessing chain fits in one streaming pass per stage
//!   ([`Chain::fit_in_passes`]); a stage whose plugin cannot fit in chunks is
//!   fitted on a seeded sample of at most `fit_sample_rows` training rows;
//! - validation: the first epoch's pass keeps the preprocessed validation
//!   rows in memory when they take at most [`VALIDATION_CACHE_BYTES`], so an
//!   epoch reads the file once; a larger validation split, and the test
//!   split, are read again and scored chunk by chunk, keeping only the
//!   predictions and labels for the metrics.

use tensorlet_formats::data::{Chunk, Stream};
use tensorlet_gpu::rng::mix;
use tensorlet_gpu::{Device, Tensor};

use crate::chain::Passes;
use crate::error::{Result, RuntimeError};
use crate::model::FeatureStat;
use crate::pipeline::TrainingConfig;
use crate::plugin::{NamedTensors, Task};
use crate::train::{
    Batches, Evaluation, Labels, Observer, PipelinePlugins, Resume, Shape, TestScores,
    TrainedModel, check_finite_features, epoch_stream, label_width, permutation, predicted,
    run_epochs, score,
};

/// Rows read from the file at a time.
pub const CHUNK_ROWS: usize = 16_384;

/// Which split a row is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The held-out test split.
    Test,
    /// The validation split.
    Validation,
    /// The training split.
    Train,
}

const SPLIT_STREAM: u64 = 0x5b11_7000_0000_0001;
const SAMPLE_STREAM: u64 = 0x5a3b_1e00_0000_0001;

/// A number in [0, 1) drawn for row `row` from `seed` and `stream`.
fn draw(seed: u64, stream: u64, row: u64) -> f64 {
    (mix(seed ^ stream, row) >> 11) as f64 / (1u64 << 53) as f64
}

/// The split row `row` is in.
pub fn part_of(cfg: &TrainingConfig, row: usize) -> Part {
    let u = draw(cfg.seed, SPLIT_STREAM, row as u64);
    let test = f64::from(cfg.test_fraction);
    if u < test {
        Part::Test
    } else if u < test + f64::from(cfg.validation_fraction) {
        Part::Validation
    } else {
        Part::Train
    }
}

/// Trains a pipeline on a table read from disk in chunks, from scratch or
/// after the completed epochs of `resume` (see the module docs).
pub fn train_streamed(
    device: &Device,
    plugins: &PipelinePlugins,
    stream: &Stream,
    cfg: &TrainingConfig,
    classes: u32,
    observer: &mut dyn Observer,
    resume: Option<Resume>,
) -> Result<TrainedModel> {
    let data = stream.dataset();
    let data_err = |message: String| RuntimeError::Data {
        path: data.path.clone(),
        line: None,
        column: None,
        message,
    };
    cfg.validate().map_err(data_err)?;
    if plugins.trainer.is_none() {
        return Err(data_err(
            "[training] stream needs a trainer or a model to train; a pipeline whose predictor \
             brings its own weights is evaluated in memory: remove stream = true"
                .into(),
        ));
    }
    let pre = &plugins.preprocessors;
    let names = &data.feature_names;
    pre.check_columns(names)?;
    crate::train::check_encodable(data, pre)?;
    let rows = stream.rows();
    let (mut train_n, mut val_n) = (0usize, 0usize);
    for r in 0..rows {
        match part_of(cfg, r) {
            Part::Train => train_n += 1,
            Part::Validation => val_n += 1,
            Part::Test => {}
        }
    }
    if train_n == 0 {
        return Err(data_err(format!(
            "{rows} rows are too few to hold out {val_n} for validation and still train"
        )));
    }
    let feats = data.features();
    let split = Split {
        stream,
        cfg,
        feats,
        task: data.task,
        width: label_width(data.task, classes),
    };
    let (state, resumed) = match resume {
        Some(r) => (r.state.clone(), Some(r)),
        None => {
            observer.note(&format!(
                "fitting `{}` in {} pass{} over the {train_n} training rows",
                pre.describe(),
                pre.stages.len(),
                if pre.stages.len() == 1 { "" } else { "es" }
            ));
            let fraction = f64::from(cfg.fit_sample_rows) / train_n as f64;
            let sampled = |row: u64| draw(cfg.seed, SAMPLE_STREAM, row) < fraction;
            let mut notes = Vec::new();
            let state = pre.fit_in_passes(
                device,
                names,
                Passes {
                    scan: &mut |f| {
                        split.scan(Part::Train, &mut |x, _| {
                            f(&device
                                .from_vec(&[(x.len() / feats) as u32, feats as u32], x.to_vec())?)
                        })
                    },
                    sampled: &sampled,
                    sampling: &mut |section, plugin| {
                        let sample = cfg.fit_sample_rows as usize;
                        notes.push(if sample >= train_n {
                            format!(
                                "[{section}] `{plugin}` cannot fit in chunks: fitted on all \
                                 {train_n} training rows at once (fewer than [training] \
                                 fit_sample_rows = {sample})"
                            )
                        } else {
                            format!(
                                "[{section}] `{plugin}` cannot fit in chunks: fitted on a seeded \
                                 sample of about {sample} of the {train_n} training rows \
                                 ([training] fit_sample_rows)"
                            )
                        });
                    },
                },
            )?;
            for n in notes {
                observer.note(&n);
            }
            observer.fitted(&state)?;
            (state, None)
        }
    };
    let mut batches = Streamed {
        device,
        plugins,
        split: &split,
        state: &state,
        classes,
        checked: false,
        validation: ValidationCache::Filling(Vec::new(), 0),
    };
    let features = match batches.preprocessed_width()? {
        Some(w) => w,
        None => return Err(data_err("the training split has no rows".into())),
    };
    let shape = Shape {
        features,
        classes,
        task: data.task,
        split: (train_n, val_n),
    };
    let mut trained = run_epochs(
        device,
        plugins,
        cfg,
        shape,
        (state.clone(), resumed),
        observer,
        &mut batches,
        &data.path,
    )?;
    observer.note("computing the features' statistics for the model in one pass");
    trained.feature_stats = Some(feature_stats(stream)?);
    Ok(trained)
}

/// What [`Split::scan`] calls with the features and label values of rows.
type RowsFn<'c> = dyn FnMut(&[f32], &[f32]) -> Result<()> + 'c;

/// What [`Split::for_rows`] calls with each row's split, features and label
/// values.
type RowFn<'c> = dyn FnMut(Part, &[f32], &[f32]) -> Result<()> + 'c;

/// The rows of one split, read from the file.
struct Split<'a> {
    stream: &'a Stream,
    cfg: &'a TrainingConfig,
    feats: usize,
    task: Task,
    /// Label values per row.
    width: usize,
}

impl Split<'_> {
    /// Calls `f` with the features and label values (row-major) of the rows
    /// of `part` in each chunk of the file that has any.
    fn scan(&self, part: Part, f: &mut RowsFn<'_>) -> Result<()> {
        let (feats, width) = (self.feats, self.width);
        let (mut x, mut y) = (Vec::new(), Vec::new());
        self.stream
            .for_each_chunk(CHUNK_ROWS, &mut |c: &Chunk<'_>| {
                x.clear();
                y.clear();
                for r in 0..c.rows(feats) {
                    if part_of(self.cfg, c.first + r) == part {
                        x.extend_from_slice(&c.x[r * feats..(r + 1) * feats]);
                        y.extend_from_slice(&c.labels[r * width..(r + 1) * width]);
                    }
                }
                if x.is_empty() {
                    return Ok(());
                }
                f(&x, &y)
            })
    }
}

impl Split<'_> {
    /// Calls `f` with the split, features and label values of each row, in
    /// file order.
    fn for_rows(&self, f: &mut RowFn<'_>) -> Result<()> {
        let (feats, width) = (self.feats, self.width);
        self.stream
            .for_each_chunk(CHUNK_ROWS, &mut |c: &Chunk<'_>| {
                for r in 0..c.rows(feats) {
                    f(
                        part_of(self.cfg, c.first + r),
                        &c.x[r * feats..(r + 1) * feats],
                        &c.labels[r * width..(r + 1) * width],
                    )?;
                }
                Ok(())
            })
    }
}

/// The most bytes of preprocessed validation rows a streamed run keeps in
/// memory, so that validating after each epoch needs no second pass over
/// the file; a larger validation split is read from the file again after
/// every epoch.
pub const VALIDATION_CACHE_BYTES: usize = 256 << 20;

/// The validation rows kept in memory: preprocessed features and label
/// values, chunk by chunk.
enum ValidationCache {
    /// Filled during the first epoch's pass; these bytes so far.
    Filling(Vec<(Tensor, Vec<f32>)>, usize),
    /// Complete.
    Ready(Vec<(Tensor, Vec<f32>)>),
    /// Too large: validation reads the file.
    Off,
}

/// The batches of a streamed run.
struct Streamed<'a> {
    device: &'a Device,
    plugins: &'a PipelinePlugins,
    split: &'a Split<'a>,
    state: &'a NamedTensors,
    classes: u32,
    /// Whether the preprocessed training rows were checked to be finite.
    checked: bool,
    validation: ValidationCache,
}

impl Streamed<'_> {
    /// Rows through the fitted chain.
    fn preprocess(&self, x: Vec<f32>) -> Result<Tensor> {
        let feats = self.split.feats;
        let t = self
            .device
            .from_vec(&[(x.len() / feats) as u32, feats as u32], x)?;
        let names = &self.split.stream.dataset().feature_names;
        self.plugins
            .preprocessors
            .transform(self.device, names, self.state, &t)
    }

    /// The width of the preprocessed rows, from the first training chunk.
    fn preprocessed_width(&self) -> Result<Option<u32>> {
        let mut width = None;
        let found = self.split.scan(Part::Train, &mut |x, _| {
            let feats = self.split.feats;
            let one = x[..feats.min(x.len())].to_vec();
            width = Some(self.preprocess(one)?.shape().dims()[1] as u32);
            // One row is enough: stop reading (the error goes no further).
            Err(RuntimeError::Interrupted)
        });
        match found {
            Ok(()) | Err(RuntimeError::Interrupted) => Ok(width),
            Err(e) => Err(e),
        }
    }

    /// The label tensor of `n` rows.
    fn labels(&self, y: Vec<f32>, n: usize) -> Result<Tensor> {
        Ok(match self.split.task {
            Task::Classification => self.device.from_vec(&[n as u32], y)?,
            Task::Regression => self
                .device
                .from_vec(&[n as u32, self.split.width as u32], y)?,
        })
    }

    /// The predictor's scores on the rows of `part`: from the validation
    /// cache when it is complete, else read from the file.
    fn evaluate(&self, part: Part, params: &NamedTensors) -> Result<Option<(usize, Evaluation)>> {
        let task = self.split.task;
        let (mut p, mut labels) = (Vec::new(), Vec::new());
        let mut add = |xt: &Tensor, y: &[f32]| -> Result<()> {
            let out = predicted(
                self.device,
                &self.plugins.predictor,
                params,
                xt,
                task,
                self.classes,
            )?;
            p.extend_from_slice(&out);
            labels.extend_from_slice(y);
            Ok(())
        };
        match (&self.validation, part) {
            (ValidationCache::Ready(cached), Part::Validation) => {
                for (xt, y) in cached {
                    add(xt, y)?;
                }
            }
            _ => self
                .split
                .scan(part, &mut |x, y| add(&self.preprocess(x.to_vec())?, y))?,
        }
        if labels.is_empty() {
            return Ok(None);
        }
        let rows = labels.len() / self.split.width;
        let all: Vec<u32> = (0..rows as u32).collect();
        let y = Labels::pick(task, &labels, self.split.width, &all);
        Ok(Some((rows, score(&p, &y, self.classes))))
    }

    /// Preprocesses validation rows into the cache, or turns the cache off
    /// when they pass [`VALIDATION_CACHE_BYTES`].
    fn cache_validation(&mut self, x: &mut Vec<f32>, y: &mut Vec<f32>) -> Result<()> {
        if x.is_empty() || !matches!(self.validation, ValidationCache::Filling(..)) {
            return Ok(());
        }
        let xt = self.preprocess(std::mem::take(x))?;
        let bytes = xt.shape().dims().iter().product::<usize>() * 4 + y.len() * 4;
        if let ValidationCache::Filling(cached, held) = &mut self.validation {
            *held += bytes;
            if *held > VALIDATION_CACHE_BYTES {
                self.validation = ValidationCache::Off;
            } else {
                cached.push((xt, std::mem::take(y)));
            }
        }
        y.clear();
        Ok(())
    }

    /// Takes the steps of one shuffle window.
    fn window(
        &mut self,
        epoch: u32,
        index: u64,
        (x, y): (&mut Vec<f32>, &mut Vec<f32>),
        step: &mut dyn FnMut(&Tensor, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let n = x.len() / self.split.feats;
        if n == 0 {
            return Ok(());
        }
        let capacity = x.capacity();
        let xt = self.preprocess(std::mem::replace(x, Vec::with_capacity(capacity)))?;
        if !self.checked {
            let data = self.split.stream.dataset();
            check_finite_features(self.device, &self.plugins.preprocessors, data, &xt)?;
        }
        let yt = self.labels(std::mem::take(y), n)?;
        let order = permutation(n, mix(epoch_stream(self.split.cfg.seed, epoch), index));
        for batch in order.chunks(self.split.cfg.batch_size as usize) {
            let xb = self.device.gather_rows(&xt, batch)?;
            let yb = self.device.gather_rows(&yt, batch)?;
            step(&xb, &yb)?;
        }
        Ok(())
    }
}

impl Batches for Streamed<'_> {
    fn epoch(
        &mut self,
        epoch: u32,
        step: &mut dyn FnMut(&Tensor, &Tensor) -> Result<()>,
    ) -> Result<()> {
        let bs = self.split.cfg.batch_size as usize;
        let window = (self.split.cfg.shuffle_rows as usize).max(bs).div_ceil(bs) * bs;
        let feats = self.split.feats;
        let (mut x, mut y) = (Vec::with_capacity(window * feats), Vec::new());
        let mut index = 0u64;
        let split = self.split;
        let (mut vx, mut vy) = (Vec::new(), Vec::new());
        split.for_rows(&mut |part, rx, ry| {
            match part {
                Part::Train => {
                    x.extend_from_slice(rx);
                    y.extend_from_slice(ry);
                    if x.len() == window * feats {
                        self.window(epoch, index, (&mut x, &mut y), step)?;
                        index += 1;
                    }
                }
                Part::Validation if matches!(self.validation, ValidationCache::Filling(..)) => {
                    vx.extend_from_slice(rx);
                    vy.extend_from_slice(ry);
                    if vx.len() == CHUNK_ROWS * feats {
                        self.cache_validation(&mut vx, &mut vy)?;
                    }
                }
                _ => {}
            }
            Ok(())
        })?;
        self.window(epoch, index, (&mut x, &mut y), step)?;
        self.cache_validation(&mut vx, &mut vy)?;
        if let ValidationCache::Filling(cached, _) = &mut self.validation {
            self.validation = ValidationCache::Ready(std::mem::take(cached));
        }
        self.checked = true;
        Ok(())
    }

    fn validate(&mut self, params: &NamedTensors) -> Result<Option<Evaluation>> {
        Ok(self.evaluate(Part::Validation, params)?.map(|(_, e)| e))
    }

    fn test(&mut self, params: &NamedTensors) -> Result<Option<TestScores>> {
        Ok(self
            .evaluate(Part::Test, params)?
            .map(|(rows, e)| TestScores::new(self.split.task, rows, e)))
    }
}

/// Per-feature mean and standard deviation of the present values of every
/// row, as [`crate::model::feature_stats`] computes them in memory, in one
/// pass (Chan's merge of per-chunk moments, in f64).
fn feature_stats(stream: &Stream) -> Result<Vec<FeatureStat>> {
    let feats = stream.dataset().features();
    // (count, mean, m2) per feature.
    let mut acc = vec![(0f64, 0f64, 0f64); feats];
    stream.for_each_chunk(CHUNK_ROWS, &mut |c| -> Result<()> {
        for (j, a) in acc.iter_mut().enumerate() {
            let col =
                c.x.iter()
                    .skip(j)
                    .step_by(feats.max(1))
                    .filter(|v| !v.is_nan());
            let (mut n, mut sum) = (0f64, 0f64);
            for &v in col.clone() {
                n += 1.0;
                sum += f64::from(v);
            }
            if n == 0.0 {
                continue;
            }
            let mean = sum / n;
            let m2: f64 = col.map(|&v| (f64::from(v) - mean).powi(2)).sum();
            let total = a.0 + n;
            let delta = mean - a.1;
            a.2 += m2 + delta * delta * a.0 * n / total;
            a.1 += delta * n / total;
            a.0 = total;
        }
        Ok(())
    })?;
    Ok(acc
        .into_iter()
        .map(|(n, mean, m2)| FeatureStat {
            mean: mean as f32,
            std: if n > 0.0 { (m2 / n).sqrt() as f32 } else { 0.0 },
        })
        .collect())
}
