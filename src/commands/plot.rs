//! Training curves as PNG or SVG with `plotters`: loss on the left (train
//! solid, validation dashed), validation accuracy on the right, one colour
//! per run. The font is embedded, so plotting needs nothing from the system.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, anyhow, bail};
use plotters::coord::Shift;
use plotters::prelude::*;
use tensorlet_runtime::train::EpochMetrics;

/// DejaVu Sans Mono (Bitstream Vera license; see assets/fonts/).
const FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

const SIZE: (u32, u32) = (1200, 480);

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
            .unwrap_or_else(|_| panic!("the embedded font is a valid TrueType font"));
    });
}

/// Draws the curves of `runs` (id, per-epoch metrics) into `out`; the
/// extension picks the format.
pub fn curves(runs: &[(String, Vec<EpochMetrics>)], out: &Path) -> Result<()> {
    register_font();
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(out, SIZE).into_drawing_area();
            draw(&root, runs)?;
            root.present()
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        Some("svg") => {
            let root = SVGBackend::new(out, SIZE).into_drawing_area();
            draw(&root, runs)?;
            root.present()
                .map_err(|e| anyhow!("{e}"))
                .with_context(|| format!("cannot write {}", out.display()))?;
        }
        _ => bail!(
            "{}: the image format comes from the extension; use .png or .svg",
            out.display()
        ),
    }
    Ok(())
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    runs: &[(String, Vec<EpochMetrics>)],
) -> Result<()> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow!("cannot draw the plot: {e:?}");
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
        .y_desc("cross-entropy")
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(err)?;

    let mut acc = ChartBuilder::on(&right)
        .caption("validation accuracy", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1u32..epochs, 0f32..1.0f32)
        .map_err(err)?;
    acc.configure_mesh()
        .x_desc("epoch")
        .y_desc("accuracy")
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
                .filter_map(|m| m.val_accuracy.map(|a| (m.epoch, a))),
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
