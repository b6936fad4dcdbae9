//! A training run resolved once, before any work: a new run of a pipeline
//! on data with the options given, or a recorded run to resume with what it
//! recorded; either way with everything about its model checked.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::{Result, bail};
use tensorlet_registry::{Registry, RegistryError, RunRecord, VerifiedArtifact};

use super::data::DataSource;
use super::overrides::Overrides;
use super::publish::{PublishAs, PublishRequest};
use super::resume::{Recorded, check_resumable};
use super::{Outcome, Progress, Run};
use crate::pipeline::Pipeline;
use crate::source::Sources;
use crate::{LimitOverrides, Limits, Runtime, RuntimeError};

/// What a command asked for.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// The pipeline: a registry reference or a pipeline file (new runs).
    pub pipeline: Option<String>,
    /// The data: a file or a registered dataset (new runs).
    pub data: Option<String>,
    /// The run to resume.
    pub resume: Option<String>,
    /// `[training]` options for a new run.
    pub overrides: Overrides,
    /// Where the model goes.
    pub publish: PublishRequest,
    /// Accept unverified components (development only).
    pub allow_unsigned: bool,
}

/// A run to make.
pub struct Plan {
    /// The pipeline as named.
    origin: String,
    /// The pipeline, with the options of this run.
    pub pipeline: Pipeline,
    artifact: Option<VerifiedArtifact>,
    data: DataSource,
    out: Option<PathBuf>,
    publish: Option<PublishAs>,
    sources: Sources,
    resume: Option<RunRecord>,
}

impl Plan {
    /// Resolves `request` against the registry; `sources` (asked for only
    /// once the request is known to make sense) says where artifacts come from.
    pub fn resolve(
        reg: &Registry,
        request: Request,
        sources: impl FnOnce() -> Result<Sources>,
    ) -> Result<Plan> {
        match &request.resume {
            Some(id) => Plan::resumed(reg, &request, id, sources),
            None => Plan::fresh(reg, &request, sources),
        }
    }

    fn fresh(
        reg: &Registry,
        request: &Request,
        sources: impl FnOnce() -> Result<Sources>,
    ) -> Result<Plan> {
        let (Some(origin), Some(data)) = (&request.pipeline, &request.data) else {
            bail!("pass a pipeline and --data, or --resume <run>");
        };
        let sources = sources()?.allow_unsigned(request.allow_unsigned);
        let (mut pipeline, artifact) = sources.pipeline(reg, origin)?;
        request.overrides.apply(&mut pipeline.training)?;
        let publish = request
            .publish
            .check(reg, &sources, &pipeline, artifact.as_ref())?;
        Ok(Plan {
            origin: origin.clone(),
            data: DataSource::open(reg, data)?,
            pipeline,
            artifact,
            out: request.publish.out.clone(),
            publish,
            sources,
            resume: None,
        })
    }

    fn resumed(
        reg: &Registry,
        request: &Request,
        id: &str,
        sources: impl FnOnce() -> Result<Sources>,
    ) -> Result<Plan> {
        let (record, sources) = match reg.runs().get(id) {
            Ok(record) => {
                check_resumable(&record)?;
                request.overrides.refuse_on_resume()?;
                (record, sources()?)
            }
            Err(RegistryError::NotFound(e)) => {
                // Not in this home: a run recorded on the remote registry
                // (central run tracking) resumes here from its checkpoints.
                request.overrides.refuse_on_resume()?;
                let sources = sources()?;
                let Some(remote) = sources.remote() else {
                    bail!("{e}; a run recorded on a remote registry resumes with --registry <url>");
                };
                let record = super::track::fetch(reg, remote, id)?;
                check_resumable(&record)?;
                (record, sources)
            }
            Err(e) => return Err(e.into()),
        };
        let recorded = Recorded::of(reg, &sources, &record)?;
        let sources = sources.allow_unsigned(request.allow_unsigned || recorded.allow_unsigned);
        let publish = request.publish.clone().or_recorded(&record.record);
        let publish_as = publish.check(
            reg,
            &sources,
            &recorded.pipeline,
            recorded.artifact.as_ref(),
        )?;
        Ok(Plan {
            origin: recorded.origin,
            data: DataSource::from_record(reg, &record.record.dataset)?,
            pipeline: recorded.pipeline,
            artifact: recorded.artifact,
            out: publish.out,
            publish: publish_as,
            sources,
            resume: Some(record),
        })
    }

    /// The sandbox limits of the run: the pipeline's `[limits]` over the
    /// defaults, and `given` over those.
    pub fn limits(&self, given: &LimitOverrides) -> Result<Limits> {
        limits_of(&self.pipeline, given)
    }

    /// Trains as a recorded run on `rt` (see [`Run::record`]), telling
    /// `progress`; `stop` stops it at the next step.
    pub fn run(
        &self,
        rt: &Runtime,
        reg: &Registry,
        progress: &mut dyn Progress,
        stop: Arc<AtomicBool>,
    ) -> Result<Outcome> {
        let run = Run {
            rt,
            reg,
            sources: &self.sources,
            origin: &self.origin,
            artifact: self.artifact.as_ref(),
            stop: Some(stop),
        };
        run.record(
            &self.pipeline,
            &self.data,
            self.out.as_deref(),
            self.publish.as_ref(),
            progress,
            self.resume.as_ref(),
        )
    }
}

/// Whether a run failed because it was stopped (Ctrl-C, SIGTERM).
pub fn interrupted(error: &anyhow::Error) -> bool {
    error.chain().any(|c| {
        matches!(
            c.downcast_ref::<RuntimeError>(),
            Some(RuntimeError::Interrupted)
        )
    })
}

/// `error` with a line saying how to raise the sandbox limit it hit, when it
/// hit one.
pub fn with_limit_hint(error: anyhow::Error) -> anyhow::Error {
    let hint = error.chain().find_map(|c| {
        c.downcast_ref::<RuntimeError>()
            .and_then(|e| e.limit_hint())
    });
    match hint {
        Some(h) => anyhow::anyhow!("{error:#}\n{h}"),
        None => error,
    }
}

fn limits_of(pipeline: &Pipeline, given: &LimitOverrides) -> Result<Limits> {
    let mut limits = Limits::default();
    pipeline
        .limits
        .apply(&mut limits)
        .map_err(anyhow::Error::msg)?;
    given.apply(&mut limits);
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn unused() -> Result<Sources> {
        panic!("sources are not asked for a request that cannot run")
    }

    #[test]
    fn a_new_run_needs_a_pipeline_and_data() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let request = Request {
            pipeline: Some("p.toml".into()),
            ..Request::default()
        };
        let e = Plan::resolve(&reg, request, unused).err().unwrap();
        assert_eq!(
            e.to_string(),
            "pass a pipeline and --data, or --resume <run>"
        );
    }

    #[test]
    fn only_a_recorded_run_resumes() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let request = Request {
            resume: Some("r-missing".into()),
            ..Request::default()
        };
        let e = Plan::resolve(&reg, request, || Ok(Sources::default()))
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "no run `r-missing`; `tensorlet runs list` shows the runs; a run recorded on a \
             remote registry resumes with --registry <url>"
        );
    }

    #[test]
    fn limits_are_the_pipeline_ones_under_the_given_ones() {
        let pipeline = Pipeline::parse(
            r#"
            [pipeline]
            name = "iris"
            [preprocessor]
            bundled = "standardize"
            [trainer]
            bundled = "softmax-regression"
            [predictor]
            bundled = "softmax-regression"
            [limits]
            deadline = "2m"
            max_tensor_memory = "512 MiB"
            "#,
            Path::new("."),
            Path::new("p.toml"),
        )
        .unwrap();
        let l = limits_of(&pipeline, &LimitOverrides::default()).unwrap();
        assert_eq!(l.deadline, Duration::from_secs(120));
        assert_eq!(l.max_host_tensor_bytes, 512 << 20);
        let given = LimitOverrides {
            deadline: Some(Duration::from_secs(5)),
            ..LimitOverrides::default()
        };
        let l = limits_of(&pipeline, &given).unwrap();
        assert_eq!(l.deadline, Duration::from_secs(5));
        assert_eq!(l.max_host_tensor_bytes, 512 << 20);
    }

    #[test]
    fn a_failure_says_whether_it_was_a_stop_and_which_limit_it_hit() {
        use anyhow::Context;
        let stopped = Err::<(), _>(RuntimeError::Interrupted).context("epoch 3");
        assert!(interrupted(&stopped.unwrap_err()));
        let hit = RuntimeError::Plugin {
            plugin: "mlp".into(),
            call: "step",
            failure: crate::PluginFailure::Deadline(Duration::from_secs(30)),
        };
        let e = with_limit_hint(anyhow::Error::new(hit).context("training failed"));
        assert!(!interrupted(&e));
        let text = e.to_string();
        assert!(text.starts_with("training failed: "), "{text}");
        assert!(
            text.ends_with("\n--deadline (or the pipeline's [limits] deadline) raises the limit"),
            "{text}"
        );
        let plain = with_limit_hint(anyhow::anyhow!("no such file"));
        assert_eq!(plain.to_string(), "no such file");
    }
}
