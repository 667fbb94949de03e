//! owl-report: the daily and performance reports, as data and as Markdown, HTML (with SVG
//! charts) and, with the `pdf` feature, PDF.
//!
//! Pure: the engine reads the store and hands [`Inputs`] to [`build`]; the renderers turn the
//! resulting [`Report`] into bytes. No IO, no clock: the time of writing is an input.

mod build;
mod html;
mod markdown;
#[cfg(feature = "pdf")]
mod pdf;
pub mod sections;
mod svg;

pub use build::*;
pub use html::{charts, render_html};
pub use markdown::render_markdown;
#[cfg(feature = "pdf")]
pub use pdf::render_pdf;
pub use svg::bar_chart;

/// The formats a report can be written in, `pdf` only when built with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Markdown,
    Html,
    Pdf,
    Json,
}

impl Format {
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "md" | "markdown" => Ok(Format::Markdown),
            "html" => Ok(Format::Html),
            "pdf" => Ok(Format::Pdf),
            "json" => Ok(Format::Json),
            other => Err(format!("`{other}` is not a report format; use md, html, pdf or json")),
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Format::Markdown => "md",
            Format::Html => "html",
            Format::Pdf => "pdf",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Markdown => "text/markdown; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
            Format::Pdf => "application/pdf",
            Format::Json => "application/json",
        }
    }

    /// Whether this build can write the format.
    pub fn available(self) -> bool {
        self != Format::Pdf || cfg!(feature = "pdf")
    }
}

/// Renders `report` as `format`.
pub fn render(report: &Report, format: Format) -> Result<Vec<u8>, String> {
    match format {
        Format::Markdown => Ok(render_markdown(report).into_bytes()),
        Format::Html => Ok(render_html(report).into_bytes()),
        Format::Json => Ok(serde_json::to_vec_pretty(report).expect("reports serialize")),
        #[cfg(feature = "pdf")]
        Format::Pdf => render_pdf(report),
        #[cfg(not(feature = "pdf"))]
        Format::Pdf => Err("this owl was built without PDF reports; rebuild with `--features pdf`, or use md or html".into()),
    }
}
