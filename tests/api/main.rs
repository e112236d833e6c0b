//! End to end: the real server on an ephemeral port, real gRPC clients, and every test on its
//! own fresh database, once on SQLite and once on PostgreSQL.

mod helpers;

mod cache;
mod checks;
mod connections;
mod contractor;
mod deadlines;
mod denials;
mod faults;
mod feed;
mod guessing;
mod http;
mod identifiers;
mod identity;
mod keys;
mod legacy;
mod limits;
mod logcheck;
mod merges;
mod newcomer;
mod operations;
mod permission;
mod pki;
mod process;
mod races;
mod secrecy;
mod seed;
mod server;
mod staff;
mod storage;
mod tls;
mod wire;
