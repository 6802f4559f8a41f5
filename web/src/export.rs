//! Tables as downloads: CSV and XLSX written row by row as the rows arrive, and sent as they are written.
//!
//! What bounds memory: the rows come through a channel of a few rows ([`crate::tables`] waits for the
//! writer); CSV rows are written into the response body one at a time; XLSX rows go to a constant-memory
//! worksheet, which keeps them in a temporary file instead of in memory, and the finished archive is
//! written through [`ChunkWriter`] into the response body in chunks of [`CHUNK`] bytes as it is zipped.
//! So a year of 100 machines exports with memory of a few rows and a few chunks.

use std::io::Write;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use rust_xlsxwriter::{Chart, ChartType, Format as CellFormat, Workbook, XlsxError};
use tokio::sync::mpsc;

use crate::oee_api::{ApiError, bad};
use crate::tables::{Cell, Kind, RowReceiver, Spec};

/// Bytes sent to the client at a time.
const CHUNK: usize = 64 * 1024;

/// The XLSX media type.
pub(crate) const XLSX: &str = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// What a table is answered as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Json,
    Csv,
    Xlsx,
}

impl Format {
    pub(crate) fn parse(s: &str) -> Result<Format, ApiError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "csv" => Ok(Format::Csv),
            "xlsx" => Ok(Format::Xlsx),
            other => Err(bad(format!("`format` must be json, csv or xlsx, not `{other}`"))),
        }
    }

    /// The first of the media types `accept` lists that we answer; JSON when none is.
    pub(crate) fn from_accept(accept: &str) -> Format {
        for part in accept.split(',') {
            let media = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
            match media.as_str() {
                "text/csv" => return Format::Csv,
                XLSX => return Format::Xlsx,
                "application/json" => return Format::Json,
                _ => {}
            }
        }
        Format::Json
    }
}

/// The download of `spec`'s table as CSV or XLSX, its body written while the rows arrive.
pub(crate) fn respond(spec: Spec, rows: RowReceiver, format: Format) -> Response {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let (ctype, ext) = match format {
        Format::Xlsx => (XLSX, "xlsx"),
        _ => ("text/csv; charset=utf-8", "csv"),
    };
    let file = format!("{}.{ext}", spec.file_stem);
    match format {
        Format::Xlsx => {
            tokio::task::spawn_blocking(move || {
                let mut out = ChunkWriter { tx: tx.clone(), buf: Vec::with_capacity(CHUNK) };
                if let Err(e) = write_xlsx(&spec, rows, &mut out).and_then(|()| out.flush().map_err(XlsxError::from)) {
                    tracing::warn!(error = %e, "an XLSX export stopped part-way");
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                }
            });
        }
        _ => {
            tokio::spawn(write_csv(spec, rows, tx));
        }
    }
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let disposition = HeaderValue::from_str(&format!("attachment; filename=\"{file}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(ctype)), (header::CONTENT_DISPOSITION, disposition)],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Writes the header and then each row as it arrives, one chunk of the body per few rows.
async fn write_csv(spec: Spec, mut rows: RowReceiver, tx: mpsc::Sender<Result<Bytes, std::io::Error>>) {
    let fresh = || csv::Writer::from_writer(Vec::with_capacity(CHUNK));
    let drain =
        |w: csv::Writer<Vec<u8>>| w.into_inner().map(Bytes::from).map_err(|e| std::io::Error::other(e.to_string()));
    let mut w = fresh();
    let header: Vec<&str> = spec.columns.iter().map(|c| c.name.as_str()).collect();
    let mut result = w.write_record(&header).map_err(std::io::Error::other);
    while result.is_ok() {
        match rows.recv().await {
            None => break,
            Some(Err(e)) => result = Err(std::io::Error::other(e)),
            Some(Ok(row)) => {
                result = w.write_record(row.iter().map(Cell::text)).map_err(std::io::Error::other);
                // The csv writer buffers a little itself; what it has passed on is at least this much.
                if result.is_ok() && w.get_ref().len() >= CHUNK {
                    let chunk = drain(std::mem::replace(&mut w, fresh()));
                    let failed = chunk.is_err();
                    if tx.send(chunk).await.is_err() || failed {
                        return;
                    }
                }
            }
        }
    }
    let last = result.and_then(|()| drain(w));
    let _ = tx.send(last).await;
}

/// Writes the table into a constant-memory worksheet with typed cells (dates as dates, percentages as
/// fractions shown as percentages), a frozen header and an autofilter; the daily OEE workbook also gets a
/// line chart of the OEE trend, one line per machine.
fn write_xlsx(spec: &Spec, mut rows: RowReceiver, out: &mut ChunkWriter) -> Result<(), XlsxError> {
    let mut wb = Workbook::new();
    let bold = CellFormat::new().set_bold();
    let header_date = CellFormat::new().set_bold().set_num_format("yyyy-mm-dd");
    let percent = CellFormat::new().set_num_format("0.0%");
    let decimal = CellFormat::new().set_num_format("0.0");
    let integer = CellFormat::new().set_num_format("0");
    let time = CellFormat::new().set_num_format("yyyy-mm-dd hh:mm");
    let sheet_name = "Table";
    let ws = wb.add_worksheet_with_constant_memory()?;
    ws.set_name(sheet_name)?;
    for (c, col) in spec.columns.iter().enumerate() {
        let c = c as u16;
        match col.day {
            Some(d) => ws.write_date_with_format(0, c, d, &header_date)?,
            None => ws.write_string_with_format(0, c, &col.name, &bold)?,
        };
        let width: f64 = match col.kind {
            Kind::Text => 24.0,
            Kind::Time => 17.0,
            _ => 12.0,
        };
        ws.set_column_width(c, width.max(col.name.len().min(40) as f64))?;
    }
    ws.set_freeze_panes(1, 0)?;
    let mut r: u32 = 0;
    while let Some(row) = rows.blocking_recv() {
        let row = row.map_err(XlsxError::ParameterError)?;
        r += 1;
        for (c, cell) in row.iter().enumerate() {
            let c = c as u16;
            match cell {
                Cell::Text(s) => ws.write_string(r, c, s)?,
                Cell::Int(n) => ws.write_number_with_format(r, c, *n as f64, &integer)?,
                Cell::Num(x) => ws.write_number_with_format(r, c, *x, &decimal)?,
                Cell::Pct(x) => ws.write_number_with_format(r, c, *x, &percent)?,
                Cell::Time(t) => ws.write_datetime_with_format(r, c, t, &time)?,
                Cell::Empty => ws,
            };
        }
    }
    let last_col = spec.columns.len().saturating_sub(1) as u16;
    ws.autofilter(0, 0, r.max(1), last_col)?;
    if spec.chart && r > 0 && last_col > 0 {
        let mut chart = Chart::new(ChartType::Line);
        chart.title().set_name("OEE by day");
        chart.y_axis().set_name("OEE").set_num_format("0%");
        for row in 1..=r {
            chart
                .add_series()
                .set_name((sheet_name, row, 0))
                .set_categories((sheet_name, 0, 1, 0, last_col))
                .set_values((sheet_name, row, 1, row, last_col));
        }
        let trend = wb.add_worksheet();
        trend.set_name("OEE trend")?;
        trend.insert_chart(0, 0, &chart)?;
    }
    wb.save_to_writer(out)?;
    Ok(())
}

/// Sends what the workbook writes to the response body in chunks, waiting while the client is slow.
struct ChunkWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl ChunkWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}
