//! Training curves as a PNG or SVG image with `plotters` (`tensorlet runs
//! plot`): loss on the left (train solid, validation dashed), validation
//! accuracy on the right (R² for regression runs), one colour per run. The font is embedded, so
//! plotting needs nothing from the system.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use tensorlet_runtime::train::EpochMetrics;

/// DejaVu Sans Mono (Bitstream Vera license; see assets/fonts/).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

const SIZE: (u32, u32) = (1200, 480);

/// Why the curves could not be drawn.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// None of the runs completed an epoch.
    #[error("the runs have no completed epochs to plot")]
    NoEpochs,
    /// The file name ends in neither `.png` nor `.svg`.
    #[error("{path}: the image format comes from the extension; use .png or .svg")]
    Format {
        /// The file asked for.
        path: String,
    },
    /// Drawing failed.
    #[error("cannot draw the plot: {0}")]
    Draw(String),
    /// The image could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: String,
        /// Why, as the backend said it.
        #[source]
        cause: Cause,
    },
}

/// What a drawing backend said when it failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Cause(String);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TrueType font"));
    });
}

/// Draws the curves of `runs` (id, per-epoch metrics) into `out`; the
/// extension picks the format.
pub fn curves(runs: &[(String, Vec<EpochMetrics>)], out: &Path) -> Result<(), PlotError> {
    if runs.iter().all(|(_, h)| h.is_empty()) {
        return Err(PlotError::NoEpochs);
    }
    register_font();
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(out, SIZE).into_drawing_area();
            draw(&root, runs)?;
            root.present().map_err(|e| not_written(out, e))?;
        }
        Some("svg") => {
            let root = SVGBackend::new(out, SIZE).into_drawing_area();
            draw(&root, runs)?;
            root.present().map_err(|e| not_written(out, e))?;
        }
        _ => {
            return Err(PlotError::Format {
                path: out.display().to_string(),
            });
        }
    }
    Ok(())
}

fn not_written(out: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Write {
        path: out.display().to_string(),
        cause: Cause(e.to_string()),
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[(String, Vec<EpochMetrics>)],
) -> Result<(), PlotError> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| PlotError::Draw(format!("{e:?}"));
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(SIZE.0 / 2);
    let epochs = runs
        .iter()
        .flat_map(|(_, h)| h.iter().map(|m| m.epoch))
        .max()
        .unwrap_or(1)
        .max(2);
    let losses = runs
        .iter()
        .flat_map(|(_, h)| h.iter().flat_map(|m| [Some(m.train_loss), m.val_loss]))
        .flatten()
        .filter(|l| l.is_finite());
    let max_loss = losses.fold(0.0f32, f32::max).max(1e-3) * 1.05;
    // Regression runs record R² where classification records accuracy.
    let regression = runs
        .iter()
        .flat_map(|(_, h)| h)
        .any(|m| m.val_metrics.contains_key("r2"));
    let score = |m: &EpochMetrics| {
        if regression {
            m.val_metrics.get("r2").copied()
        } else {
            m.val_accuracy
        }
    };
    let (score_title, score_name, loss_name) = if regression {
        ("validation R²", "R²", "mean squared error")
    } else {
        ("validation accuracy", "accuracy", "cross-entropy")
    };
    // R² goes below 0 for a model worse than the mean.
    let low = runs
        .iter()
        .flat_map(|(_, h)| h.iter().filter_map(score))
        .filter(|v| v.is_finite())
        .fold(0.0f32, f32::min);

    let mut loss = ChartBuilder::on(&left)
        .caption(
            "loss (solid: train, dashed: validation)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1u32..epochs, 0f32..max_loss)
        .map_err(err)?;
    loss.configure_mesh()
        .x_desc("epoch")
        .y_desc(loss_name)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;

    let mut acc = ChartBuilder::on(&right)
        .caption(score_title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1u32..epochs, low..1.0f32)
        .map_err(err)?;
    acc.configure_mesh()
        .x_desc("epoch")
        .y_desc(score_name)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;

    for (i, (id, history)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = ShapeStyle::from(&color).stroke_width(2);
        loss.draw_series(LineSeries::new(
            history.iter().map(|m| (m.epoch, m.train_loss)),
            style,
        ))
        .map_err(err)?
        .label(id.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        let val: Vec<(u32, f32)> = history
            .iter()
            .filter_map(|m| m.val_loss.map(|l| (m.epoch, l)))
            .collect();
        loss.draw_series(DashedLineSeries::new(val, 6, 4, style))
            .map_err(err)?;
        acc.draw_series(LineSeries::new(
            history
                .iter()
                .filter_map(|m| score(m).map(|a| (m.epoch, a))),
            style,
        ))
        .map_err(err)?
        .label(id.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
    }
    loss.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    acc.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(losses: &[f32]) -> Vec<EpochMetrics> {
        losses
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let mut m = EpochMetrics::new(i as u32 + 1, l, None, 0.1);
                m.val_loss = Some(l * 1.1);
                m.val_accuracy = Some(1.0 - l / 2.0);
                m
            })
            .collect()
    }

    #[test]
    fn curves_are_drawn_as_svg_and_png_with_a_legend_per_run() {
        let dir = tempfile::tempdir().unwrap();
        let runs = vec![
            ("run-alpha".to_string(), history(&[0.9, 0.5, 0.3])),
            ("run-beta".to_string(), history(&[0.8, 0.6])),
        ];
        let svg = dir.path().join("curves.svg");
        curves(&runs, &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg"), "{}", &text[..80.min(text.len())]);
        for label in [
            "run-alpha",
            "run-beta",
            "validation accuracy",
            "cross-entropy",
        ] {
            assert!(text.contains(label), "{label} is drawn");
        }
        let png = dir.path().join("curves.PNG");
        curves(&runs, &png).unwrap();
        let bytes = std::fs::read(&png).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
    }

    #[test]
    fn regression_runs_plot_their_r2() {
        let dir = tempfile::tempdir().unwrap();
        let history: Vec<EpochMetrics> = [3000.0f32, 2500.0, 2400.0]
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let mut m = EpochMetrics::new(i as u32 + 1, l, None, 0.1);
                m.val_loss = Some(l * 1.1);
                m.val_metrics.insert("r2".into(), -0.2 + 0.2 * i as f32);
                m
            })
            .collect();
        let svg = dir.path().join("r2.svg");
        curves(&[("run-reg".to_string(), history)], &svg).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        for label in ["validation R²", "mean squared error", "run-reg"] {
            assert!(text.contains(label), "{label} is drawn");
        }
        assert!(!text.contains("accuracy"));
    }

    #[test]
    fn no_epochs_an_unknown_format_or_an_unwritable_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = vec![("r".to_string(), Vec::new())];
        let e = curves(&empty, &dir.path().join("a.svg")).unwrap_err();
        assert!(matches!(e, PlotError::NoEpochs), "{e}");
        let runs = vec![("r".to_string(), history(&[0.5]))];
        let e = curves(&runs, &dir.path().join("a.jpg")).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("a.jpg: the image format comes from the extension; use .png or .svg")
        );
        let e = curves(&runs, &dir.path().join("missing/a.svg")).unwrap_err();
        assert!(e.to_string().starts_with("cannot write "), "{e}");
        assert!(std::error::Error::source(&e).is_some());
    }
}
