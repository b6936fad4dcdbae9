//! The csv reader: any bytes give a table or an error naming the file and
//! (where it has them) the line and column, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "tables.rs"]
mod tables;

fuzz_target!(|data: &[u8]| tables::read(data, "csv"));
