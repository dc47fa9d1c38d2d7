//! The `granary` binary driven as a user would: flags, help and errors
//! (`basics`), and files through a real cluster (`data`). One test binary.

mod basics;
mod certs;
mod data;
