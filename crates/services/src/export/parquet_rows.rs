//! Rows files as Parquet: one row group of UTF-8 columns, compressed with zstd.
//!
//! Identifiers and times (`id`, `_xact_id`, `created`, the object and span ids) are plain
//! text; `input`, `output`, `expected`, `error`, `scores`, `metrics`, `metadata`, `tags`,
//! `span_parents` and `span_attributes` are JSON text (so `input` `"hi"` is stored as `"hi"`
//! with its quotes, and a field that is `null` as `null`, as JSON Lines has them); every other
//! field of the row (and an identifier that is not a text) is in `extra`, a JSON object. A
//! column is NULL where the row does not have the field. Nothing of the row is lost: the JSON
//! Lines export of the same row is these columns put back together.

use crate::{Result, ServiceError};
use serde_json::{Map, Value};

/// Columns holding a field's text as is.
const TEXT: [&str; 9] = [
    "id",
    "_xact_id",
    "created",
    "project_id",
    "experiment_id",
    "dataset_id",
    "log_id",
    "root_span_id",
    "span_id",
];
/// Columns holding a field as JSON text.
const JSON: [&str; 10] = [
    "span_parents",
    "input",
    "output",
    "expected",
    "error",
    "scores",
    "metrics",
    "metadata",
    "tags",
    "span_attributes",
];
/// The column holding every other field, as a JSON object.
#[cfg(feature = "parquet")]
const EXTRA: &str = "extra";

/// The rows of one file, column by column.
#[derive(Debug, Default)]
pub(super) struct Table {
    /// One per column, in schema order: `TEXT`, then `JSON`, then `EXTRA`.
    columns: Vec<Vec<Option<String>>>,
    rows: usize,
}

fn json_text(v: &Value) -> Result<String> {
    serde_json::to_string(v).map_err(|e| ServiceError::Internal(format!("encoding a row: {e}")))
}

impl Table {
    pub(super) fn new() -> Self {
        Self {
            columns: vec![Vec::new(); TEXT.len() + JSON.len() + 1],
            rows: 0,
        }
    }

    /// Adds a row (a JSON object, as `fetch` returns it); returns about how many bytes of
    /// text it holds.
    pub(super) fn push(&mut self, row: Value) -> Result<usize> {
        let mut rest: Map<String, Value> = match row {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        let mut bytes = 0;
        let mut cells = Vec::with_capacity(self.columns.len());
        for name in TEXT {
            // Only a text is held as itself; anything else (null included) stays in `extra`.
            let cell = match rest.remove(name) {
                Some(Value::String(s)) => Some(s),
                Some(other) => {
                    rest.insert(name.to_owned(), other);
                    None
                }
                None => None,
            };
            cells.push(cell);
        }
        for name in JSON {
            let cell = rest.remove(name).map(|v| json_text(&v)).transpose()?;
            cells.push(cell);
        }
        cells.push(
            (!rest.is_empty())
                .then(|| json_text(&Value::Object(rest)))
                .transpose()?,
        );
        for (column, cell) in self.columns.iter_mut().zip(cells) {
            bytes += cell.as_ref().map_or(0, String::len);
            column.push(cell);
        }
        self.rows += 1;
        Ok(bytes)
    }

    /// The Parquet file.
    #[cfg(feature = "parquet")]
    pub(super) fn encode(self) -> Result<Vec<u8>> {
        use parquet::basic::{Compression, ZstdLevel};
        use parquet::data_type::{ByteArray, ByteArrayType};
        use parquet::file::properties::WriterProperties;
        use parquet::file::writer::SerializedFileWriter;
        use std::sync::Arc;
        let err = |e: parquet::errors::ParquetError| {
            ServiceError::Internal(format!("writing a Parquet file: {e}"))
        };
        let fields: String = TEXT
            .iter()
            .chain(JSON.iter())
            .chain(std::iter::once(&EXTRA))
            .map(|name| format!("OPTIONAL BYTE_ARRAY {name} (UTF8); "))
            .collect();
        let schema = parquet::schema::parser::parse_message_type(&format!(
            "message holdfast_row {{ {fields}}}"
        ))
        .map_err(err)?;
        let level = ZstdLevel::try_new(3).map_err(err)?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(level))
            .set_created_by("holdfast".into())
            .build();
        let mut out = Vec::new();
        let mut writer =
            SerializedFileWriter::new(&mut out, Arc::new(schema), Arc::new(props)).map_err(err)?;
        let mut group = writer.next_row_group().map_err(err)?;
        let mut columns = self.columns.into_iter();
        while let Some(mut column) = group.next_column().map_err(err)? {
            let cells = columns.next().unwrap_or_default();
            let levels: Vec<i16> = cells.iter().map(|c| i16::from(c.is_some())).collect();
            let values: Vec<ByteArray> = cells
                .into_iter()
                .flatten()
                .map(|s| ByteArray::from(s.into_bytes()))
                .collect();
            column
                .typed::<ByteArrayType>()
                .write_batch(&values, Some(&levels), None)
                .map_err(err)?;
            column.close().map_err(err)?;
        }
        group.close().map_err(err)?;
        writer.close().map_err(err)?;
        Ok(out)
    }

    #[cfg(not(feature = "parquet"))]
    pub(super) fn encode(self) -> Result<Vec<u8>> {
        Err(unsupported())
    }
}

#[cfg(not(feature = "parquet"))]
fn unsupported() -> ServiceError {
    ServiceError::bad("this build has no Parquet support (the `parquet` feature)")
}

/// How many rows a Parquet file holds, from its footer.
#[cfg(feature = "parquet")]
pub(super) fn rows_in(bytes: bytes::Bytes) -> Result<u64> {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let reader = SerializedFileReader::new(bytes)
        .map_err(|e| ServiceError::bad(format!("not a readable Parquet file: {e}")))?;
    u64::try_from(reader.metadata().file_metadata().num_rows())
        .map_err(|_| ServiceError::bad("a Parquet file says it has fewer than no rows"))
}

#[cfg(not(feature = "parquet"))]
pub(super) fn rows_in(_bytes: bytes::Bytes) -> Result<u64> {
    Err(unsupported())
}
