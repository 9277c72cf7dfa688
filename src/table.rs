//! Tables on disk (CSV or Parquet, chosen by extension), read and written with polars.
//!
//! Shared by every stage that reads a manifest, a predictions file or a results table, so
//! that one set of rules (extension dispatch, header required, errors naming the file)
//! applies everywhere.

use std::path::Path;

use polars::prelude::*;

use crate::error::{Error, Result};

/// Table formats medgate reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
}

impl TableFormat {
    /// The format implied by a path's extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase())
        {
            Some(e) if e == "csv" => Ok(TableFormat::Csv),
            Some(e) if e == "parquet" || e == "pq" => Ok(TableFormat::Parquet),
            _ => Err(Error::input_hint(
                format!("{}: unknown table format", path.display()),
                "use a .csv or .parquet file",
            )),
        }
    }
}

fn polars_err(path: &Path, e: PolarsError) -> Error {
    Error::input(format!("{}: {e}", path.display()))
}

/// Reads a CSV (header row required, types inferred) or Parquet file.
pub fn read_table(path: &Path) -> Result<DataFrame> {
    if !path.is_file() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    match TableFormat::from_path(path)? {
        TableFormat::Csv => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(10_000))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| polars_err(path, e)),
        TableFormat::Parquet => {
            let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
            ParquetReader::new(f)
                .finish()
                .map_err(|e| polars_err(path, e))
        }
    }
}

/// Reads a CSV with every column as a string (for manifests, where `007` must stay `007`).
pub fn read_table_as_strings(path: &Path) -> Result<DataFrame> {
    match TableFormat::from_path(path)? {
        TableFormat::Csv => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .try_into_reader_with_file_path(Some(path.to_path_buf()))
            .and_then(|r| r.finish())
            .map_err(|e| polars_err(path, e)),
        TableFormat::Parquet => {
            let df = read_table(path)?;
            let cols = df
                .columns()
                .iter()
                .map(|c| c.cast(&DataType::String))
                .collect::<PolarsResult<Vec<_>>>()
                .map_err(|e| polars_err(path, e))?;
            DataFrame::new(df.height(), cols).map_err(|e| polars_err(path, e))
        }
    }
}

/// Parses `bytes`, the content of the table file `path` (format by its extension, named in
/// errors), with every column as a string, like [`read_table_as_strings`]. For callers that
/// hash the bytes they parse, so a file is read once.
pub fn parse_table_as_strings(path: &Path, bytes: &[u8]) -> Result<DataFrame> {
    let cursor = std::io::Cursor::new(bytes);
    let df = match TableFormat::from_path(path)? {
        TableFormat::Csv => CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .into_reader_with_file_handle(cursor)
            .finish()
            .map_err(|e| polars_err(path, e))?,
        TableFormat::Parquet => ParquetReader::new(cursor)
            .finish()
            .map_err(|e| polars_err(path, e))?,
    };
    let cols = df
        .columns()
        .iter()
        .map(|c| c.cast(&DataType::String))
        .collect::<PolarsResult<Vec<_>>>()
        .map_err(|e| polars_err(path, e))?;
    DataFrame::new(df.height(), cols).map_err(|e| polars_err(path, e))
}

/// Writes a table as CSV or Parquet (by extension). Parquet is written uncompressed-free of
/// timestamps so the same frame always gives the same bytes.
pub fn write_table(path: &Path, df: &mut DataFrame) -> Result<()> {
    let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    match TableFormat::from_path(path)? {
        TableFormat::Csv => CsvWriter::new(f)
            .include_header(true)
            .finish(df)
            .map_err(|e| polars_err(path, e)),
        TableFormat::Parquet => ParquetWriter::new(f)
            .with_statistics(StatisticsOptions::empty())
            .with_key_value_metadata(Some(KeyValueMetadata::Static(vec![
                compatible_arrow_schema(df),
            ])))
            .finish(df)
            .map(|_| ())
            .map_err(|e| polars_err(path, e)),
    }
}

/// The Arrow schema a Parquet file embeds (`ARROW:schema`), at the oldest Arrow
/// compatibility level: strings as `LargeUtf8` instead of polars' default `Utf8View`, which
/// Arrow readers before 15.0 (pyarrow 14, DuckDB of that time, Spark 3.5) cannot read. The
/// Parquet column types (BYTE_ARRAY, logical type String) are the same either way, so only
/// this schema description changes; polars reads both.
fn compatible_arrow_schema(df: &DataFrame) -> polars_parquet::write::KeyValue {
    let arrow = df.schema().to_arrow(CompatLevel::oldest());
    polars_parquet::write::schema_to_metadata_key(&arrow)
}

/// The names of a table's columns.
pub fn column_names(df: &DataFrame) -> Vec<String> {
    df.get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect()
}
