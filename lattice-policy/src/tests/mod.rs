//! Decision tables and parse-error tables.

mod decisions;
mod parse_errors;
