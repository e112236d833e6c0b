//! End to end: the real server on an ephemeral port, real gRPC clients, and every test on its
//! own fresh database, once on SQLite and once on PostgreSQL.

mod helpers;

mod contractor;
mod identity;
mod permission;
mod server;
mod storage;
