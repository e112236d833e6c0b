//! Staff's bulk jobs, run from the CLI against the database: the legacy import with its
//! mail-merge file (`legacy`), the benchmark data set (`seed`) with mandate-bench's sample
//! (`sample`), and the one guard on every CSV
//! cell Mandate writes (`spreadsheet`).

pub mod legacy;
pub mod sample;
pub mod seed;
pub mod spreadsheet;
