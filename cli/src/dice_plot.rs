//! The PNG plot of `eval interactive`: mean Dice against iteration, one colour per model, a solid line for the
//! box start and a dashed one for the point start.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context};
use image::{DynamicImage, RgbImage};
use plotters::prelude::*;
use plotters::style::FontStyle;

/// One line of the plot.
pub struct DiceCurve {
    /// Model label.
    pub model: String,
    /// `box` or `point`.
    pub start: &'static str,
    /// Mean Dice after each iteration (0 = start prompt).
    pub dice: Vec<f64>,
}

const WIDTH: u32 = 960;
const HEIGHT: u32 = 600;
const FONT: &str = "sans-serif";

/// Registers the embedded DejaVu Sans (plotters draws text only with registered fonts; no system fonts are
/// needed on clinic machines).
fn register_font() -> anyhow::Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| anyhow!("the embedded DejaVu Sans font could not be read"));
    });
    result
}

fn palette(index: usize) -> RGBColor {
    const COLOURS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
    ];
    COLOURS[index % COLOURS.len()]
}

/// Draws `curves` (models in order of first appearance) and writes the PNG to `path` atomically.
pub fn write_dice_plot(path: &Path, title: &str, curves: &[DiceCurve]) -> anyhow::Result<()> {
    register_font()?;
    let iterations = curves.iter().map(|c| c.dice.len()).max().unwrap_or(1).max(2);
    let mut models: Vec<&str> = Vec::new();
    for curve in curves {
        if !models.contains(&curve.model.as_str()) {
            models.push(&curve.model);
        }
    }
    let mut buffer = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        let draw_error = |e: DrawingAreaErrorKind<_>| anyhow!("drawing the plot: {e:?}");
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 22))
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..(iterations - 1) as f64, 0f64..1f64)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc("iteration (0 = start prompt, then correction rounds)")
            .y_desc("mean Dice")
            .x_labels(iterations)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style((FONT, 15))
            .axis_desc_style((FONT, 16))
            .draw()
            .map_err(draw_error)?;
        for curve in curves {
            let colour = palette(models.iter().position(|m| *m == curve.model).unwrap_or(0));
            let style = colour.stroke_width(3);
            let points: Vec<(f64, f64)> = curve.dice.iter().enumerate().map(|(i, &d)| (i as f64, d)).collect();
            let label = format!("{} — {} start", curve.model, curve.start);
            let series = if curve.start == "box" {
                chart.draw_series(LineSeries::new(points.clone(), style))
            } else {
                chart.draw_series(DashedLineSeries::new(points.clone(), 10, 6, style))
            }
            .map_err(draw_error)?;
            let dashed = curve.start != "box";
            series.label(label).legend(move |(x, y)| {
                if dashed {
                    PathElement::new(vec![(x, y), (x + 8, y)], colour.stroke_width(3))
                } else {
                    PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(3))
                }
            });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(draw_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(draw_error)?;
        root.present().map_err(draw_error)?;
    }
    let image = RgbImage::from_raw(WIDTH, HEIGHT, buffer).context("plot buffer size")?;
    medico_io::image2d::save_png_atomically(path, &DynamicImage::ImageRgb8(image))
        .with_context(|| format!("{}: cannot write the plot", path.display()))
}
