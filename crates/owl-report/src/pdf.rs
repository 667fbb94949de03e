//! The report as PDF, typeset by typst as a library: a fixed template reads the sections as
//! JSON (so no report text is ever parsed as markup) and the charts as SVG images, from an
//! in-memory file system; the fonts are typst's bundled ones, embedded in the binary.

use crate::build::Report;
use crate::html::charts;
use crate::sections::{preamble, sections, Body, Cell, Table};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::OnceLock;
use typst::diag::{FileError, FileResult};
use typst::foundations::{Bytes, Datetime, Duration};
use typst::syntax::{FileId, RootedPath, Source, VirtualPath, VirtualRoot};
use typst::text::{Font, FontBook};
use typst::utils::LazyHash;
use typst::{Library, LibraryExt, World};

const TEMPLATE: &str = r##"#let d = json("/data.json")
#set document(title: d.title)
#set page(paper: "a4", margin: (x: 1.4cm, y: 1.6cm), footer: context text(size: 7pt, fill: luma(120))[#d.title #h(1fr) #counter(page).display("1 / 1", both: true)])
#set text(size: 8pt)
#set table(stroke: 0.4pt + luma(200), inset: 3.5pt)
#show heading.where(level: 1): set text(size: 11pt)
#show heading.where(level: 2): set text(size: 9pt)
#show link: set text(fill: rgb("#3b6ea5"))
#text(size: 15pt, weight: "bold")[#d.title]
#for p in d.preamble [ #par(p) ]
#par(strong(d.headline))
#let cell(c) = {
  if c.link != none { link(c.link, c.text) }
  else if c.code { raw(c.text) }
  else if c.alarm { text(fill: rgb("#b00020"), weight: "bold", c.text) }
  else { c.text }
}
#let tbl(t) = table(columns: t.head.len(), table.header(..t.head.map(h => strong(h))), ..t.rows.flatten().map(cell))
#for s in d.sections {
  heading(level: 1, s.title)
  for p in s.paragraphs { par(p) }
  for t in s.tables {
    if t.title != none { heading(level: 2, t.title) }
    tbl(t)
  }
  for img in s.images { block(image(img, width: 100%)) }
}
"##;

fn cell(c: &Cell) -> Value {
    json!({"text": c.text, "link": c.link, "code": c.code, "alarm": c.alarm})
}

fn table(title: Option<&str>, t: &Table) -> Value {
    json!({"title": title, "head": t.head, "rows": t.rows.iter().map(|r| r.iter().map(cell).collect::<Vec<_>>()).collect::<Vec<_>>()})
}

/// The template's input: every text the PDF shows, already formatted.
fn data(r: &Report) -> Value {
    let sections: Vec<Value> = sections(r)
        .iter()
        .map(|s| {
            let (tables, images) = match &s.body {
                Body::None => (vec![], vec![]),
                Body::Table(t) => (vec![table(None, t)], vec![]),
                Body::Tables(ts) => (ts.iter().map(|(title, t)| table(Some(title), t)).collect(), vec![]),
                Body::Charts(_) => (vec![], vec!["/chart-0.svg", "/chart-1.svg"]),
            };
            json!({"title": s.title, "paragraphs": s.paragraphs, "tables": tables, "images": images})
        })
        .collect();
    json!({"title": r.title, "preamble": preamble(r), "headline": format!("{}.", r.headline()), "sections": sections})
}

struct Fonts {
    book: LazyHash<FontBook>,
    fonts: Vec<Font>,
}

/// typst's bundled fonts, parsed once per process.
fn fonts() -> &'static Fonts {
    static FONTS: OnceLock<Fonts> = OnceLock::new();
    FONTS.get_or_init(|| {
        let fonts: Vec<Font> = typst_assets::fonts().flat_map(|data| Font::iter(Bytes::new(data))).collect();
        Fonts { book: LazyHash::new(FontBook::from_fonts(&fonts)), fonts }
    })
}

fn library() -> &'static LazyHash<Library> {
    static LIB: OnceLock<LazyHash<Library>> = OnceLock::new();
    LIB.get_or_init(|| LazyHash::new(Library::default()))
}

fn id(path: &str) -> FileId {
    RootedPath::new(VirtualRoot::Project, VirtualPath::new(path).expect("a fixed path is valid")).intern()
}

struct ReportWorld {
    main: Source,
    files: HashMap<FileId, Bytes>,
}

impl World for ReportWorld {
    fn library(&self) -> &LazyHash<Library> {
        library()
    }
    fn book(&self) -> &LazyHash<FontBook> {
        &fonts().book
    }
    fn main(&self) -> FileId {
        self.main.id()
    }
    fn source(&self, id: FileId) -> FileResult<Source> {
        if id == self.main.id() {
            Ok(self.main.clone())
        } else {
            Err(FileError::NotFound(id.vpath().get_without_slash().into()))
        }
    }
    fn file(&self, id: FileId) -> FileResult<Bytes> {
        self.files.get(&id).cloned().ok_or_else(|| FileError::NotFound(id.vpath().get_without_slash().into()))
    }
    fn font(&self, index: usize) -> Option<Font> {
        fonts().fonts.get(index).cloned()
    }
    fn today(&self, _offset: Option<Duration>) -> Option<Datetime> {
        None
    }
}

/// Typesets `r` as PDF.
pub fn render_pdf(r: &Report) -> Result<Vec<u8>, String> {
    let mut files = HashMap::new();
    files.insert(id("/data.json"), Bytes::new(serde_json::to_vec(&data(r)).expect("report data serializes")));
    for (i, svg) in charts(r).into_iter().enumerate() {
        files.insert(id(&format!("/chart-{i}.svg")), Bytes::new(svg.into_bytes()));
    }
    let world = ReportWorld { main: Source::new(id("/main.typ"), TEMPLATE.to_string()), files };
    let doc: typst_layout::PagedDocument = typst::compile(&world).output.map_err(|errs| {
        format!("typesetting the report failed: {}", errs.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; "))
    })?;
    typst_pdf::pdf(&doc, &typst_pdf::PdfOptions::default())
        .map_err(|errs| format!("writing the PDF failed: {}", errs.iter().map(|e| e.message.as_str()).collect::<Vec<_>>().join("; ")))
}
